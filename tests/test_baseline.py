"""Tests of the feature-histogram baseline on real video files → real clip records."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from sports1m_tf.baseline import descriptors, extract, histograms, main
from sports1m_tf.baseline.fit_settings import FitSettings
from sports1m_tf.baseline.vocabulary import Vocabulary, soft_assign
from tfrecord_tools import clip_encoding
from tfrecord_tools.convert import convert

SETTINGS = descriptors.DescriptorSettings(frame_size=64, patch_size=16, frames_per_clip=4)
SIZES = {"hog": 24, "colour": 16, "motion": 16}
CLASSES = ["red_still", "blue_still", "red_moving", "blue_moving"]


def _scene(rng: np.random.Generator, name: str, frames: int = 36, size: int = 64) -> np.ndarray:
    """A textured scene; the class sets its hue (red/blue) and whether the texture scrolls.

    Texture, saturation, brightness and the scroll speed/direction are random, so
    neither colour nor motion alone names the class.
    """
    hue = (0 if name.startswith("red") else 115) + rng.uniform(-8, 8)
    tex = cv2.resize(rng.random((8, 8), dtype=np.float32), (2 * size, 2 * size),
                     interpolation=cv2.INTER_CUBIC)
    hsv = np.stack([np.full_like(tex, hue % 180), np.full_like(tex, rng.uniform(120, 250)),
                    np.clip(60 + 180 * tex, 0, 255)], -1).astype(np.uint8)
    big = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    speed = rng.uniform(1.5, 3.0) * rng.choice([-1, 1]) if name.endswith("moving") else 0.0
    out = []
    for t in range(frames):
        shift = int(round(speed * t))
        out.append(np.roll(big, (shift, shift // 2), axis=(0, 1))[:size, :size])
    return np.stack(out)


@pytest.fixture(scope="module")
def records(tmp_path_factory, write_video):
    """Real videos (mp4/avi) → converter → clip shards for train/val/test."""
    root = tmp_path_factory.mktemp("baseline_data")
    counts = {"train": 8, "val": 3, "test": 3}
    for split, n in counts.items():
        with open(root / f"{split}.csv", "w") as f:
            for c, name in enumerate(CLASSES):
                for i in range(n):
                    rng = np.random.default_rng([c, i, len(split)])
                    ext, fourcc = (".mp4", "mp4v") if i % 2 else (".avi", "MJPG")
                    path = write_video(str(root / "videos" / f"{split}_{name}_{i}{ext}"),
                                       _scene(rng, name), 24.0, fourcc)
                    f.write(f"{path},{name}\n")
    with open(root / "classes.txt", "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    out = root / "records"
    for split in counts:
        convert(str(root / f"{split}.csv"), output_dir=str(out), split=split,
                labels=str(root / "classes.txt"), num_shards=1, workers=1,
                clips_per_video=2, frame_size=64, progress=False)
    return {s: str(out / f"{s}-00000-of-00001.tfrecord") for s in counts} | {"root": root}


@pytest.fixture(scope="module")
def fitted(records, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("baseline_model"))
    settings = FitSettings(
        frame_size=SETTINGS.frame_size, patch_size=SETTINGS.patch_size,
        frames_per_clip=SETTINGS.frames_per_clip,
        vocabulary_sizes=[f"{t}={n}" for t, n in SIZES.items()], hidden=["64"],
        dropout=["0.2"], learning_rate=["3e-3", "1e-2"], vocabulary_clips=64,
        vocabulary_samples=4000, clips_per_video=4, workers=1, epochs=100, patience=20)
    config = main.fit([records["train"]], [records["val"]], model_dir, settings,
                      cache_dir=os.path.join(model_dir, "cache"))
    return model_dir, config


def test_baseline_learns_colour_and_motion_classes(records, fitted, tmp_path):
    model_dir, config = fitted
    assert config["classes"] == CLASSES
    assert config["train_videos"] == 32 and config["val_videos"] == 12
    assert sum(bool(r.get("chosen")) for r in config["search"]) == 1 and len(config["search"]) == 2
    out = str(tmp_path / "eval")
    result = main.evaluate([records["test"]], model_dir, out, workers=1)
    with open(os.path.join(out, "metrics.json")) as f:
        written = json.load(f)
    assert written["video_hit_at_1"] == result["video_hit_at_1"]
    assert written["videos"] == 12 and written["clips"] == 24 and written["skipped_records"] == 0
    # Chance is 0.25; colour alone or motion alone gives at most 0.5.
    assert written["video_hit_at_1"] >= 0.75, written
    assert written["video_hit_at_5"] == 1.0  # 4 classes
    assert written["mAP"] > 0.7
    with open(os.path.join(out, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["labels"] for r in rows} == set(CLASSES)


def test_vector_dimension_matches_settings(fitted):
    model_dir, config = fitted
    model, vocabulary, _ = main.load(model_dir)
    dim = 5 * sum(SIZES.values())
    assert histograms.vector_dimension(vocabulary.sizes) == dim == config["dimension"]
    assert model.input_shape == (None, dim) and model.output_shape == (None, len(CLASSES))
    cached = [f for f in os.listdir(os.path.join(model_dir, "cache")) if f.endswith(".npz")]
    assert len(cached) == 2  # train and val
    features = extract._load(os.path.join(model_dir, "cache", cached[0]))
    assert features.vectors.shape[1] == dim


def test_every_pyramid_block_sums_to_one(records, fitted):
    model_dir, _ = fitted
    vocabulary = Vocabulary.load(os.path.join(model_dir, main.VOCABULARY_FILE))
    features = extract.extract_features(records["val"], vocabulary, SETTINGS, workers=1)
    blocks = histograms.block_slices(vocabulary.sizes)
    assert len(blocks) == 15 and blocks[-1][2].stop == features.vectors.shape[1]
    for _, _, sl in blocks:
        np.testing.assert_allclose(features.vectors[:, sl].sum(1), 1.0, rtol=1e-5)
    # The whole-frame block is the sum of the quadrant blocks (before normalisation),
    # so it is a convex combination of them: each entry lies within their range.
    for t in descriptors.FEATURE_TYPES:
        whole, *quads = [features.vectors[:, sl] for tt, _, sl in blocks if tt == t]
        assert np.all(whole <= np.max(quads, 0) + 1e-6) and np.all(whole >= np.min(quads, 0) - 1e-6)


def test_soft_assignment_rows_sum_to_one():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 8)).astype(np.float32)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    w = soft_assign(x, centres, sigma2=1.0, neighbours=3)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    assert ((w > 0).sum(1) <= 3).all()
    hard = soft_assign(x, centres, sigma2=1.0, neighbours=1)
    d2 = ((x[:, None] - centres[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(hard.argmax(1), d2.argmin(1))


def test_descriptors_see_edges_colour_and_motion_direction():
    s = descriptors.DescriptorSettings(frame_size=64, patch_size=16)
    n = len(descriptors.patch_origins(s))
    assert n == 49 and np.bincount(descriptors.patch_quadrants(s)).sum() == n
    stripes = np.tile((np.arange(64) // 4 % 2 * 255).astype(np.float32), (64, 1))  # vertical edges
    h = descriptors.hog(stripes, s)
    assert h.shape == (n, 324)
    cells = h.reshape(n, 9, 4, 9).sum((0, 1, 2))  # votes per orientation bin
    assert cells.argmax() in (0, 8)  # horizontal gradient: 0° / 180°
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 2] = 220
    c = descriptors.colour(red, s)
    np.testing.assert_allclose((c ** 2).sum(1), 1.0, rtol=1e-5)  # sqrt of an L1-normalised hist
    rng = np.random.default_rng(0)
    tex = cv2.resize(rng.random((16, 16)).astype(np.float32), (64, 64)) * 255
    tex = tex.astype(np.uint8)
    down = descriptors.motion(tex, np.roll(tex, 2, axis=0), s).reshape(n, 4, 9)
    up = descriptors.motion(tex, np.roll(tex, -2, axis=0), s).reshape(n, 4, 9)
    # Bins of 45° centred at 22.5°, 67.5°, ...: image-down (90°) is bins 1-2, up (270°) 5-6.
    assert down[..., 1:3].sum() > 5 * down[..., 5:7].sum()
    assert up[..., 5:7].sum() > 5 * up[..., 1:3].sum()


def test_bad_records_and_files_are_skipped_and_reported(records, fitted, tmp_path):
    model_dir, _ = fitted
    vocabulary = Vocabulary.load(os.path.join(model_dir, main.VOCABULARY_FILE))
    import tensorflow as tf

    good = [r.numpy() for r in tf.data.TFRecordDataset(records["val"]).take(2)]
    jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()

    def clip(media_id, frames):
        return clip_encoding.encode_clip(
            media_id=media_id, label_indices=[0], label_strings=["red_still"],
            encoded_frames=frames, frame_timestamps_us=list(range(len(frames))),
            frame_rate=24.0, height=64, width=64)

    mixed = str(tmp_path / "mixed.tfrecord")
    with tf.io.TFRecordWriter(mixed) as w:
        w.write(good[0])
        w.write(b"this is not a protobuf \xff\xff")
        w.write(clip("broken_video", [b"not a jpeg"] * 16))
        w.write(clip("short_video", [jpeg]))
        w.write(good[1])
    truncated = str(tmp_path / "truncated.tfrecord")
    shutil.copy(records["test"], truncated)
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) - 100)
    not_records = str(tmp_path / "notes.tfrecord")
    with open(not_records, "w") as f:
        f.write("a stray text file that a glob matched\n")

    # Two spawned workers: failures must come back through the pool too.
    features = extract.extract_features([not_records, mixed, truncated], vocabulary, SETTINGS,
                                        workers=2)
    reasons = {p["source"]: p["reason"] for p in features.problems}
    assert f"{mixed}#1" in reasons and "SequenceExample" in reasons[f"{mixed}#1"]
    assert f"{mixed}#2" in reasons and "decodable" in reasons[f"{mixed}#2"]
    assert f"{mixed}#3" in reasons and "frames" in reasons[f"{mixed}#3"]
    assert "video broken_video" in reasons  # its only clip failed
    assert truncated in reasons and not_records in reasons
    # Good clips (two from `mixed`, all but the cut one of `truncated`) still count.
    assert "broken_video" not in features.ids and "short_video" not in features.ids
    assert len(features.ids) >= 10 and features.clips.sum() >= 2 + 20
    assert np.isfinite(features.vectors).all()


def test_predict_command(records, fitted, tmp_path):
    model_dir, _ = fitted
    out = tmp_path / "pred"
    proc = subprocess.run(
        [sys.executable, "-m", "sports1m_tf.baseline.main", "--mode=predict",
         f"--eval_files={records['test']}", f"--model_dir={model_dir}", f"--output_dir={out}",
         "--workers=1", "--cache_dir=none"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and all(r["top1"] in CLASSES for r in rows)
    assert not (out / "metrics.json").exists()
