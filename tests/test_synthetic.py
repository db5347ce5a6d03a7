"""Tests of the synthetic video generator: real files, determinism, and that
motion classes are invisible in a single frame but visible in frame pairs."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sports1m_tf import synthetic


def _decode(path: str) -> np.ndarray:
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames) if frames else np.zeros((0,))


def test_files_decode_with_expected_frames_and_size(synthetic_dataset):
    settings = synthetic_dataset["settings"]
    all_videos = [v for vs in synthetic_dataset["videos"].values() for v in vs]
    assert {os.path.splitext(p)[1] for p, _ in all_videos} == {".mp4", ".avi"}
    for path, _ in all_videos:
        frames = _decode(path)
        assert frames.shape == (settings["num_frames"], settings["size"], settings["size"], 3), path
        cap = cv2.VideoCapture(path)
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == settings["num_frames"]
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(settings["fps"], rel=1e-3)
        cap.release()


def test_manifests_and_classes_parse(synthetic_dataset):
    root = synthetic_dataset["output_dir"]
    with open(synthetic_dataset["classes_file"]) as f:
        classes = f.read().splitlines()
    assert classes == synthetic_dataset["classes"] == list(synthetic.CLASS_SETS["mixed"])
    assert set(synthetic_dataset["motion_classes"]) | set(
        synthetic_dataset["appearance_classes"]) == set(classes)
    counts = synthetic_dataset["settings"]["splits"]
    seen = set()
    for split, manifest in synthetic_dataset["manifests"].items():
        assert os.path.dirname(manifest) == root
        with open(manifest) as f:
            rows = [line.rstrip("\n").split(",") for line in f]
        assert len(rows) == counts[split] * len(classes)
        for rel, label in rows:
            assert not os.path.isabs(rel)
            assert os.path.isfile(os.path.join(root, rel)), rel
            assert label in classes and f"/{label}/" in rel
            seen.add(rel)
        per_class = {c: sum(1 for _, l in rows if l == c) for c in classes}
        assert set(per_class.values()) == {counts[split]}
    assert len(seen) == sum(counts.values()) * len(classes)  # no video in two splits


def test_same_seed_same_video_other_seed_different(tmp_path):
    kw = dict(classes=["move_up", "red_square"], splits={"train": 2}, num_frames=12, size=32)
    a = synthetic.make_dataset(str(tmp_path / "a"), seed=3, **kw)
    b = synthetic.make_dataset(str(tmp_path / "b"), seed=3, **kw)
    c = synthetic.make_dataset(str(tmp_path / "c"), seed=4, **kw)
    for (pa, _), (pb, _), (pc, _) in zip(a["videos"]["train"], b["videos"]["train"],
                                          c["videos"]["train"]):
        fa, fb, fc = _decode(pa), _decode(pb), _decode(pc)
        np.testing.assert_array_equal(fa, fb)
        assert np.abs(fa.astype(int) - fc.astype(int)).mean() > 5
    # A class's videos do not depend on which other classes are generated.
    d = synthetic.make_dataset(str(tmp_path / "d"), seed=3, classes=["move_up"],
                               splits={"train": 2}, num_frames=12, size=32)
    np.testing.assert_array_equal(_decode(a["videos"]["train"][0][0]),
                                  _decode(d["videos"]["train"][0][0]))


def test_split_counts():
    assert synthetic.split_counts(8, {"train": 0.6, "val": 0.2, "test": 0.2}) == {
        "train": 5, "val": 2, "test": 1}
    assert synthetic.split_counts(3, {"train": 0.8, "val": 0.1, "test": 0.1}) == {
        "train": 1, "val": 1, "test": 1}
    assert synthetic.split_counts(99, {"train": 3, "test": 2}) == {"train": 3, "test": 2}
    with pytest.raises(ValueError, match="unknown classes"):
        synthetic.resolve_classes(["move_up", "spin_left"])


def _render_many(classes, n, num_frames=32, size=64, centre_bias=True):
    out = []
    for c in classes:
        for i in range(n):
            rng = np.random.default_rng([1000 + i] + list(c.encode()))
            frames, params = synthetic.render_video(c, num_frames=num_frames, size=size,
                                                    centre_bias=centre_bias, rng=rng)
            out.append((c, frames, params))
    return out


@pytest.fixture(scope="module")
def motion_videos():
    return _render_many(synthetic.MOTION_CLASSES, 36)


@pytest.mark.parametrize("frame", [0, 16, 31])
def test_motion_classes_share_per_frame_object_distribution(motion_videos, frame):
    # At ANY fixed frame, the object's position and size must be drawn from the
    # same distribution for every motion class (uniform phases by design).
    by_class = {}
    for c, _, p in motion_videos:
        by_class.setdefault(c, []).append((p["cx"][frame], p["cy"][frame], p["diameter"][frame]))
    pooled = np.concatenate([np.array(v) for v in by_class.values()])
    for c, values in by_class.items():
        values = np.array(values)
        for k, name in enumerate(["cx", "cy", "diameter"]):
            p_value = stats.ks_2samp(values[:, k], pooled[:, k]).pvalue
            assert p_value > 1e-3, (c, name, frame, p_value)


def _single_frame_features(frames):
    mid = frames[len(frames) // 2]
    small = cv2.resize(mid, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    hsv = cv2.cvtColor(mid, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [8, 4], [0, 180, 0, 256]).ravel()
    return np.concatenate([small / 255.0, hist / hist.sum()])


def _flow_features(frames):
    # Global motion statistics from Farneback flow over the middle 12 frames.
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames[10:22]]
    feats = []
    for a, b in zip(gray[:-1], gray[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 3, 5, 1.1, 0)
        fx, fy = flow[..., 0], flow[..., 1]
        mag = np.hypot(fx, fy)
        w = mag / (mag.sum() + 1e-6)  # weight by motion: the object, not the jitter
        div = np.gradient(fx, axis=1) + np.gradient(fy, axis=0)
        feats.append([(w * fx).sum(), (w * fy).sum(), (w * np.abs(fx)).sum(),
                      (w * np.abs(fy)).sum(), (w * div).sum(), mag.mean()])
    feats = np.array(feats)
    # Sign of the vertical motion per step, averaged: +-1 for up/down, ~0 for oscillations
    # over many videos, and the mean divergence for zoom.
    return np.concatenate([feats.mean(0), np.median(feats, 0), np.abs(feats).mean(0)])


def test_single_frame_uninformative_but_motion_informative(motion_videos):
    labels = np.array([c for c, _, _ in motion_videos])
    chance = 1.0 / len(synthetic.MOTION_CLASSES)

    def accuracy(features):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        return cross_val_score(model, features, labels, cv=4).mean()

    single = accuracy(np.stack([_single_frame_features(f) for _, f, _ in motion_videos]))
    motion = accuracy(np.stack([_flow_features(f) for _, f, _ in motion_videos]))
    assert single < chance + 0.12, single
    assert motion > 0.6, motion


def test_per_class_mean_middle_frame_is_close(motion_videos):
    # Between-class distance of the mean middle frame is no larger than the
    # split-half distance within a class (sampling noise).
    means, halves = {}, []
    for c in synthetic.MOTION_CLASSES:
        mids = np.stack([f[len(f) // 2] for k, f, _ in motion_videos if k == c]).astype(np.float32)
        means[c] = mids.mean(0)
        halves.append(np.abs(mids[::2].mean(0) - mids[1::2].mean(0)).mean())
    between = [np.abs(means[a] - means[b]).mean()
               for i, a in enumerate(means) for b in list(means)[i + 1:]]
    assert np.mean(between) < 1.0 * np.mean(halves), (np.mean(between), np.mean(halves))
    # ... while the frame-difference energy separates still from moving objects.
    diff = {c: np.mean([np.abs(np.diff(f.astype(np.float32), axis=0)).mean()
                        for k, f, _ in motion_videos if k == c]) for c in means}
    assert diff["still"] < 0.9 * min(v for c, v in diff.items() if c != "still"), diff


def test_appearance_classes_differ_in_a_single_frame():
    # The colour of the saturated (object) pixels of ONE frame names the class.
    videos = _render_many(synthetic.APPEARANCE_CLASSES, 12)
    base = {c: h for c, (_, h) in synthetic.APPEARANCES.items()}
    for c, frames, _ in videos:
        hsv = cv2.cvtColor(frames[len(frames) // 2], cv2.COLOR_BGR2HSV)
        hue = hsv[..., 0][hsv[..., 1] > 128].astype(np.float64) * (2 * np.pi / 180)
        assert hue.size > 10, c
        mean = np.angle(np.exp(1j * hue).mean()) * 180 / (2 * np.pi) % 180
        nearest = min(base, key=lambda k: min(abs(mean - base[k]), 180 - abs(mean - base[k])))
        assert nearest == c, (c, mean)
    assert {p["motion"] for _, _, p in videos} == set(synthetic.MOTION_CLASSES)


def test_command_writes_dataset(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "cmd"
    subprocess.run([sys.executable, "-m", "sports1m_tf.synthetic", f"--output_dir={out}",
                    "--classes=still,blue_cross", "--splits=train=1,test=1", "--num_frames=8",
                    "--size=32", "--formats=avi", "--nocentre_bias"], check=True,
                   capture_output=True)
    with open(out / "test.csv") as f:
        rows = f.read().splitlines()
    assert rows == ["videos/still/still_001.avi,still", "videos/blue_cross/blue_cross_001.avi,blue_cross"]
    assert _decode(str(out / "videos/still/still_000.avi")).shape == (8, 32, 32, 3)
