"""sports1m-inspect on converted shards, and on shards with broken records."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import cv2
import tensorflow as tf

import testvideos as tv
from tfrecord_tools.convert import convert
from tfrecord_tools.inspect_main import format_report, inspect_records


def _convert(tmp_path) -> str:
    v = tmp_path / "v"
    tv.write_video(str(v / "a.mp4"), width=96, height=64, num_frames=50, seed=1)
    tv.write_video(str(v / "b.avi"), width=64, height=80, num_frames=40, seed=2)
    tv.copy_sample("carphone_distorted.mp4", str(v / "phone.mp4"))
    (tmp_path / "train.csv").write_text("v/a.mp4,left\nv/b.avi,right;left\nv/phone.mp4,talk\n")
    (tmp_path / "test.csv").write_text("v/phone.mp4,talk\n")
    out = str(tmp_path / "out")
    for split in ("train", "test"):
        convert(str(tmp_path / f"{split}.csv"), output_dir=out, clips_per_video=3, frame_size=40,
                num_shards=2, compression="GZIP" if split == "test" else "none",
                progress=False, labels=None if split == "train" else _classes(tmp_path))
    return out


def _classes(tmp_path) -> str:
    path = tmp_path / "classes.txt"
    path.write_text("left\nright\ntalk\n")  # the order the train csv's inferred list has
    return str(path)


def test_counts_match_dataset_json_and_contact_sheet_is_written(tmp_path):
    out = _convert(tmp_path)
    sheet = str(tmp_path / "sheets" / "sheet.png")
    report = inspect_records(out, contact_sheet=sheet, sheet_clips=4, sheet_frames=5,
                             decode_all=True)
    with open(os.path.join(out, "dataset.json")) as f:
        data = json.load(f)
    assert report["errors"] == [] and len(report["shards"]) == 4
    for split in ("train", "test"):
        want = {k: v for k, v in data["splits"][split]["clips_per_class"].items() if v}
        assert report["splits"][split]["clips_per_class"] == want
        assert report["splits"][split]["clips"] == data["splits"][split]["clips"]
    train = dict(report["splits"]["train"])
    assert train.pop("mixing")["distinct_per_32"] is None  # no shard holds 32 records
    assert train == {
        "clips": 8, "videos": 3, "clips_per_class": {"left": 5, "right": 2, "talk": 3},
        "videos_per_class": {"left": 2, "right": 1, "talk": 1}}
    assert report["frames_per_clip"] == {"16": 11} and report["frame_sizes"] == {"40x40": 11}
    img = cv2.imread(sheet)
    assert img.shape == (4 * (18 + 128), 5 * 128, 3) and img.std() > 10
    assert "every record parses" in format_report(report)


def test_bad_records_are_named_by_shard_and_index(tmp_path):
    out = _convert(tmp_path)
    good = [r.numpy() for r in tf.data.TFRecordDataset(
        os.path.join(out, "train-00000-of-00002.tfrecord"))]
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    # Valid TFRecord framing, but record 1 is not a SequenceExample and record 2 lacks frames.
    no_frames = tf.train.SequenceExample.FromString(good[0])
    del no_frames.feature_lists.feature_list["image/encoded"]
    broken = str(bad_dir / "train-00000-of-00002.tfrecord")
    with tf.io.TFRecordWriter(broken) as w:
        for r in (good[0], b"\x07garbage bytes", no_frames.SerializeToString(), good[1]):
            w.write(r)
    # A shard cut short in its third record: framing is corrupt from there on.
    cut = str(bad_dir / "train-00001-of-00002.tfrecord")
    shutil.copyfile(os.path.join(out, "train-00001-of-00002.tfrecord"), cut)
    sizes = [len(r) + 16 for r in tf.data.TFRecordDataset(cut).as_numpy_iterator()]
    with open(cut, "r+b") as f:
        f.truncate(sizes[0] + sizes[1] + sizes[2] // 2)
    report = inspect_records(str(bad_dir), contact_sheet=None)
    errors = [(os.path.basename(e["shard"]), e["record"]) for e in report["errors"]]
    assert errors == [("train-00000-of-00002.tfrecord", 1), ("train-00000-of-00002.tfrecord", 2),
                      ("train-00001-of-00002.tfrecord", 2)]
    assert "not a SequenceExample" in report["errors"][0]["error"]
    assert "missing keys ['image/encoded']" in report["errors"][1]["error"]
    assert "corrupt TFRecord" in report["errors"][2]["error"]
    assert report["splits"]["train"]["clips"] == 4  # 2 good + 2 before the cut

    r = subprocess.run([sys.executable, "-m", "tfrecord_tools.inspect_main",
                        os.path.join(str(bad_dir), "train-*"), "--contact_sheet=",
                        f"--json_out={tmp_path / 'r.json'}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "train-00000-of-00002.tfrecord record 1: not a SequenceExample" in r.stdout
    with open(tmp_path / "r.json") as f:
        assert len(json.load(f)["errors"]) == 3
