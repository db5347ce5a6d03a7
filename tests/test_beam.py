"""The Beam pipeline (DirectRunner, 2 worker processes) against the local path."""
from __future__ import annotations

import glob
import json
import os

import pytest

pytest.importorskip("apache_beam")

import tensorflow as tf  # noqa: E402

import testvideos as tv  # noqa: E402
from tfrecord_tools import mixing, schema  # noqa: E402
from tfrecord_tools.beam_pipeline import convert_beam  # noqa: E402
from tfrecord_tools.convert import convert  # noqa: E402

SETTINGS = dict(clips_per_video=3, frame_size=48, num_shards=4, compression="GZIP", seed=3)
DIRECT_2 = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _records(folder: str) -> list[bytes]:
    return [r.numpy() for p in sorted(glob.glob(os.path.join(folder, "*.tfrecord.gz")))
            for r in tf.data.TFRecordDataset(p, compression_type="GZIP")]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("beam_videos"))
    manifest, expected = tv.write_video_set(folder)
    local = str(tmp_path_factory.mktemp("local"))
    beam = str(tmp_path_factory.mktemp("beam"))
    local_summary = convert(manifest, output_dir=local, workers=1, progress=False, **SETTINGS)
    beam_summary = convert_beam(manifest, output_dir=beam, beam_runner="DirectRunner",
                                beam_options=DIRECT_2, **SETTINGS)
    return {"local": local, "beam": beam, "expected": expected,
            "local_summary": local_summary, "beam_summary": beam_summary}


def _outputs(folder: str) -> list[str]:
    """A conversion's files, less the empty lock files a local conversion leaves."""
    return sorted(n for n in os.listdir(folder) if not n.endswith(".lock"))


def test_beam_gives_the_same_clips_as_the_local_path(both):
    local, beam = _records(both["local"]), _records(both["beam"])
    assert len(local) == 16
    assert sorted(beam) == sorted(local)  # shard assignment may differ, the clips may not
    names = _outputs(both["beam"])
    assert names == _outputs(both["local"]) == ["dataset.json"] + [
        f"train-0000{i}-of-00004.tfrecord.gz" for i in range(4)]


def test_beam_dataset_json_agrees_and_lists_every_bad_video(both):
    def load(folder):
        with open(os.path.join(folder, "dataset.json")) as f:
            return json.load(f)
    local, beam = load(both["local"]), load(both["beam"])
    assert local["classes"] == beam["classes"]
    a, b = local["splits"]["train"], beam["splits"]["train"]
    for key in ("clips", "videos_listed", "videos_converted", "videos_failed",
                "clips_per_class", "videos_per_class", "failed", "warnings", "settings",
                "fingerprint", "shards", "compression"):
        assert a[key] == b[key], key
    assert b["runner"] == "beam:DirectRunner"
    failed = {f["video"]: f["reason"] for f in b["failed"]}
    for vid, want in both["expected"].items():
        if want:
            assert want in failed[vid]
    assert not os.path.exists(os.path.join(both["beam"], ".work"))


def test_beam_records_read_back_with_the_input_pipeline(both):
    data = pytest.importorskip("sports1m_tf.data")
    ds = data.clip_dataset(os.path.join(both["beam"], "train-*"), model="single_frame",
                           training=False, batch_size=4, num_classes=5, input_size=32)
    clips = sum(int(frames.shape[0]) for frames, _ in ds)
    assert clips == 16
    frames, target = next(iter(ds))
    assert frames.dtype == tf.uint8 and tuple(frames.shape[1:]) == (1, 32, 32, 3)
    assert target.shape == (4, 5)
    ex = tf.train.SequenceExample.FromString(_records(both["beam"])[0])
    assert len(ex.feature_lists.feature_list[schema.IMAGE_ENCODED].feature) == 16


def test_beam_layout_mixes_videos_like_the_local_one(many_clip_videos, tmp_path):
    from tfrecord_tools.inspect_main import inspect_records
    kw = dict(num_shards=1, **many_clip_videos["settings"])
    local, beam = str(tmp_path / "local"), str(tmp_path / "beam")
    convert(many_clip_videos["manifest"], output_dir=local, progress=False, **kw)
    summary = convert_beam(many_clip_videos["manifest"], output_dir=beam,
                           beam_runner="DirectRunner", **kw)  # in-process: quicker start
    assert summary["clips"] == 2500 and summary["layout"] == "mixed"

    def records(folder):
        return [r.numpy() for r in tf.data.TFRecordDataset(
            os.path.join(folder, "train-00000-of-00001.tfrecord"))]
    assert sorted(records(beam)) == sorted(records(local))
    # One shard read from its start, the default reader: the engine's shuffle mixed it.
    assert inspect_records(beam)["splits"]["train"]["mixing"]["ratio"] >= 0.9
    counts = mixing.reader_distinct_per_batch(os.path.join(beam, "train-*"), 100, batches=40)
    assert sum(counts) / len(counts) >= 0.9 * mixing.uniform_distinct([25] * 100), counts


def test_cli_runner_beam_uses_workers_for_the_direct_runner(tmp_path):
    import subprocess
    import sys
    tv.write_video(str(tmp_path / "a.avi"), num_frames=40, seed=1)
    tv.write_empty(str(tmp_path / "b.mp4"))
    (tmp_path / "m.csv").write_text("a.avi,x\nb.mp4,y\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "tfrecord_tools.convert_main",
                        f"--manifest={tmp_path / 'm.csv'}", f"--output_dir={out}", "--runner=beam",
                        "--workers=2", "--clips_per_video=2", "--frame_size=32", "--num_shards=3",
                        "--split=val"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 clips from 1 videos into 3 shards; 1 failed" in r.stdout
    assert r.stderr.count("Logging handler created") == 2  # two DirectRunner workers
    assert _outputs(out) == ["dataset.json"] + [
        f"val-0000{i}-of-00003.tfrecord" for i in range(3)]
