"""The converter on real video files: records, frames, bad inputs, determinism, resume."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import tensorflow as tf

import reference_records
import testvideos as tv
from tfrecord_tools import clip_encoding, layout, mixing, schema, shards, video_clips, video_decoder
from tfrecord_tools.convert import convert
from tfrecord_tools.inspect_main import format_report, inspect_records
from tfrecord_tools.manifest import VideoEntry
from tfrecord_tools.video_clips import (ClipSettings, choose_clip_starts, convert_video,
                                        video_seed)

SMALL = dict(clips_per_video=3, frame_size=48, num_shards=3)


def read_records_of(path: str) -> list[bytes]:
    comp = "GZIP" if path.endswith(".gz") else ""
    return [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=comp)]


def read_records(output_dir: str) -> list[bytes]:
    """Every record of every shard in a folder (compression from the file name)."""
    out = []
    for path in sorted(glob.glob(os.path.join(output_dir, "*.tfrecord*"))):
        out += read_records_of(path)
    return out


def clip_key(record: bytes) -> tuple[str, int]:
    ex = tf.train.SequenceExample.FromString(record)
    return (ex.context.feature[schema.MEDIA_ID].bytes_list.value[0].decode(),
            ex.context.feature[schema.START_TIMESTAMP].int64_list.value[0])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("videos"))
    manifest, expected = tv.write_video_set(folder)
    labels = os.path.join(folder, "classes.txt")
    with open(labels, "w") as f:
        f.write("walk\nrun\nswim\ntalk\n")  # no "dance": v/wide.avi has an unknown label
    return {"folder": folder, "manifest": manifest, "labels": labels, "expected": expected}


@pytest.fixture(scope="module")
def clean_run(videos, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("clean"))
    summary = convert(videos["manifest"], output_dir=out, labels=videos["labels"], workers=2,
                      compression="GZIP", progress=False, **SMALL)
    return {"out": out, "summary": summary, "records": read_records(out)}


# --- records -----------------------------------------------------------------------------

def test_the_converters_encoder_matches_an_independent_tf_train_encoder():
    kw = dict(media_id="vid/ü", label_indices=[3, 486], label_strings=["a", "b c"],
              encoded_frames=[b"\xff\xd8" * 300, b"x"], frame_timestamps_us=[0, 2 ** 40],
              frame_rate=29.97, height=200, width=200)
    ours = tf.train.SequenceExample.FromString(clip_encoding.encode_clip(**kw))
    assert ours == tf.train.SequenceExample.FromString(reference_records.make_clip_example(**kw))


def test_clip_windows_are_disjoint_inside_the_video_and_seeded_by_video_id():
    for n, k in [(16, 5), (40, 2), (1000, 100), (1600, 100), (33, 100)]:
        starts = choose_clip_starts(n, 16, k, video_seed(7, "v1"))
        assert len(starts) == min(k, n // 16)
        assert all(b - a >= 16 for a, b in zip(starts, starts[1:]))
        assert starts[0] >= 0 and starts[-1] + 16 <= n
    assert choose_clip_starts(15, 16, 3, video_seed(0, "v")) == []
    a = choose_clip_starts(5000, 16, 10, video_seed(0, "video"))
    assert a == choose_clip_starts(5000, 16, 10, video_seed(0, "video"))
    assert a != choose_clip_starts(5000, 16, 10, video_seed(1, "video"))
    assert a != choose_clip_starts(5000, 16, 10, video_seed(0, "other"))


def test_overlapping_windows_only_when_disjoint_ones_run_out():
    # 40 frames hold 2 disjoint windows; 25 start frames exist.
    for k, want in [(10, 10), (50, 25), (2, 2), (1, 1)]:
        starts = choose_clip_starts(40, 16, k, video_seed(7, "v1"), overlap=True)
        assert len(starts) == len(set(starts)) == want and starts == sorted(starts)
        assert starts[0] >= 0 and starts[-1] + 16 <= 40
    assert choose_clip_starts(40, 16, 10, video_seed(7, "v1"), overlap=True) == \
        choose_clip_starts(40, 16, 10, video_seed(7, "v1"), overlap=True)
    assert choose_clip_starts(40, 16, 10, video_seed(7, "v1"), overlap=True) != \
        choose_clip_starts(40, 16, 10, video_seed(7, "v2"), overlap=True)
    assert len(choose_clip_starts(40, 16, 10, video_seed(7, "v1"))) == 2  # off: disjoint only
    # Enough disjoint windows: overlap changes nothing (Sports-1M-length videos).
    for n, k in [(1600, 100), (5000, 10), (40, 2)]:
        assert choose_clip_starts(n, 16, k, video_seed(0, "x"), overlap=True) == \
            choose_clip_starts(n, 16, k, video_seed(0, "x"))
    assert choose_clip_starts(15, 16, 50, video_seed(0, "v"), overlap=True) == []


def test_every_bad_input_is_a_reason_not_an_exception(videos):
    settings = ClipSettings(clips_per_video=2, frame_size=32)
    for vid, want in videos["expected"].items():
        path = glob.glob(os.path.join(videos["folder"], "v", vid + ".*")) or [f"/nope/{vid}.mp4"]
        result = convert_video(VideoEntry(vid, path[0], (0,), ("walk",), "m:1"), settings)
        if want is None:
            assert result.failure is None and len(result.records) == 2, (vid, result.failure)
        else:
            assert result.records == [] and want in result.failure, (vid, result.failure)


def test_truncated_avi_gives_clips_from_the_frames_that_decode(videos, tmp_path):
    cut = tv.write_truncated(os.path.join(videos["folder"], "v", "tall.avi"),
                             str(tmp_path / "cut.avi"), 0.6)
    result = convert_video(VideoEntry("cut", cut, (0,), ("walk",), "m:1"),
                           ClipSettings(clips_per_video=5, frame_size=32))
    assert result.failure is None and 1 <= len(result.records) < 40 // 16 + 1
    assert "truncated or corrupt" in result.warnings[0]
    assert result.clip_starts[-1] + 16 <= result.frames_decoded


def test_clean_run_counts_failures_and_model_garden_keys(clean_run, videos):
    s, records = clean_run["summary"], clean_run["records"]
    with open(os.path.join(clean_run["out"], "dataset.json")) as f:
        on_disk = json.load(f)
    assert on_disk["classes"] == ["walk", "run", "swim", "talk"]
    section = on_disk["splits"]["train"]
    # 3 clips a video, except tall.avi and small.avi (40 and 44 frames: 2 clips of 16).
    assert section["clips"] == len(records) == s["clips"] == 4 * 3 + 2 * 2
    assert section["videos_converted"] == 6
    assert section["clips_per_class"] == {"walk": 6, "run": 5, "swim": 5, "talk": 3}
    assert section["videos_per_class"] == {"walk": 2, "run": 2, "swim": 2, "talk": 1}
    # The split's lock file stays (empty, held by no one): removing it would race.
    assert sorted(os.listdir(clean_run["out"])) == [
        ".train.lock", "dataset.json"] + [f"train-0000{i}-of-00003.tfrecord.gz" for i in range(3)]
    failed = {f["video"] or f["source"]: f["reason"] for f in section["failed"]}
    for vid, want in videos["expected"].items():
        if want:
            assert want in failed[vid]
    assert "label 'dance' not in the class list" in failed["wide"]  # wide.avi, line 14
    assert "malformed line" in failed[f"{videos['manifest']}:15"]
    assert section["videos_failed"] == 8
    # Every shard mixes videos and classes.
    for path in sorted(glob.glob(os.path.join(clean_run["out"], "*.gz"))):
        assert len({clip_key(r)[0] for r in read_records_of(path)}) >= 4
    # Read back with plain TF and the Model Garden video reader's key names.
    parsed_ctx, parsed_seq = tf.io.parse_single_sequence_example(
        records[0],
        context_features={"clip/label/index": tf.io.VarLenFeature(tf.int64),
                          "clip/media_id": tf.io.FixedLenFeature([], tf.string)},
        sequence_features={"image/encoded": tf.io.FixedLenSequenceFeature([], tf.string)})
    frames = tf.io.decode_jpeg(parsed_seq["image/encoded"][0])
    assert parsed_seq["image/encoded"].shape == (16,) and frames.shape == (48, 48, 3)
    assert parsed_ctx["clip/label/index"].values.shape[0] >= 1


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def test_stored_frames_match_source_frames(videos, tmp_path):
    v = os.path.join(videos["folder"], "v")
    manifest = tmp_path / "m.csv"
    # wide: 72x72 centre crop stored as is; square: 80x80 shrunk to 72 (INTER_AREA).
    manifest.write_text("v/wide.mp4,a\nv/square.mp4,b\nv/carphone.mp4,c\n")
    out = str(tmp_path / "out")
    convert(str(manifest), output_dir=out, video_root=videos["folder"], clips_per_video=2,
            frame_size=72, num_shards=1, progress=False)
    sources = {vid: tv.read_frames(os.path.join(v, vid + ".mp4"))
               for vid in ("wide", "square", "carphone")}
    fps = {vid: cv2.VideoCapture(os.path.join(v, vid + ".mp4")).get(cv2.CAP_PROP_FPS)
           for vid in sources}
    checked = 0
    psnrs = {}
    for record in read_records(out):
        ctx, seq = tf.io.parse_single_sequence_example(
            record, context_features={schema.MEDIA_ID: tf.io.FixedLenFeature([], tf.string)},
            sequence_features={schema.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string),
                               schema.IMAGE_TIMESTAMP: tf.io.FixedLenSequenceFeature([], tf.int64)})
        vid = ctx[schema.MEDIA_ID].numpy().decode()
        for jpeg, ts in zip(seq[schema.IMAGE_ENCODED].numpy(), seq[schema.IMAGE_TIMESTAMP].numpy()):
            stored = tf.io.decode_jpeg(jpeg).numpy()[..., ::-1]  # RGB -> BGR like OpenCV
            src = sources[vid][round(ts * fps[vid] / 1e6)]
            h, w = src.shape[:2]
            s = min(h, w)
            crop = src[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
            crop = cv2.resize(crop, (72, 72), interpolation=cv2.INTER_AREA) if s != 72 else crop
            psnrs.setdefault(vid, []).append(_psnr(stored, crop))
            checked += 1
        # The neighbouring frame is measurably further: the index is right, not just close.
        idx = round(seq[schema.IMAGE_TIMESTAMP].numpy()[0] * fps[vid] / 1e6)
        if vid == "wide" and idx + 1 < len(sources[vid]):
            first = tf.io.decode_jpeg(seq[schema.IMAGE_ENCODED][0]).numpy()[..., ::-1]
            nxt = sources[vid][idx + 1][:, 24:96]
            assert _psnr(first, nxt) < _psnr(first, sources[vid][idx][:, 24:96]) - 6
    assert checked == 3 * 2 * 16
    # JPEG q90 with 4:2:0 chroma: ≈38 dB on the natural sample video, ≈29 dB at worst on
    # the synthetic frames' saturated colour edges.
    assert min(psnrs["carphone"]) > 35
    assert min(min(v) for v in psnrs.values()) > 27


# --- determinism and resume ----------------------------------------------------------------

def test_same_inputs_give_identical_shards_whatever_the_worker_count(clean_run, videos, tmp_path):
    out = str(tmp_path / "again")
    convert(videos["manifest"], output_dir=out, labels=videos["labels"], workers=1,
            compression="GZIP", progress=False, **SMALL)
    # Same clips in the same shards in the same order.
    assert sorted(os.listdir(out)) == sorted(os.listdir(clean_run["out"]))
    for name in os.listdir(out):
        if name.endswith(".gz"):
            assert read_records_of(os.path.join(out, name)) == read_records_of(
                os.path.join(clean_run["out"], name))
    assert not os.path.exists(os.path.join(out, ".work"))
    other = str(tmp_path / "seed1")
    convert(videos["manifest"], output_dir=other, labels=videos["labels"], seed=1,
            progress=False, **SMALL)
    assert {clip_key(r) for r in read_records(other)} != {clip_key(r) for r in
                                                           clean_run["records"]}


def test_overlapping_clips_decode_each_frame_once_and_match_the_source(videos, tmp_path,
                                                                      monkeypatch):
    v = os.path.join(videos["folder"], "v")
    manifest = tmp_path / "m.csv"
    manifest.write_text("v/tall.avi,a\nv/small.avi,b\n")  # 40 and 44 frames
    kw = dict(video_root=videos["folder"], clips_per_video=9, frame_size=48, num_shards=2,
              clip_overlap=True, progress=False)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    s = convert(str(manifest), output_dir=one, workers=1, **kw)
    convert(str(manifest), output_dir=two, workers=2, **kw)
    assert s["clips"] == 18 and s["settings"]["clip_overlap"] is True
    for name in sorted(n for n in os.listdir(one) if "tfrecord" in n):
        assert read_records_of(os.path.join(one, name)) == read_records_of(os.path.join(two, name))

    stored: dict = {}  # (video, frame index) -> every JPEG stored for that frame
    starts: dict = {}
    for record in read_records(one):
        ex = tf.train.SequenceExample.FromString(record)
        vid = ex.context.feature[schema.MEDIA_ID].bytes_list.value[0].decode()
        fps = ex.context.feature[schema.FRAME_RATE].float_list.value[0]
        idx = [round(f.int64_list.value[0] * fps / 1e6)
               for f in ex.feature_lists.feature_list[schema.IMAGE_TIMESTAMP].feature]
        assert idx == list(range(idx[0], idx[0] + 16))
        starts.setdefault(vid, []).append(idx[0])
        jpegs = ex.feature_lists.feature_list[schema.IMAGE_ENCODED].feature
        for i, f in zip(idx, jpegs):
            stored.setdefault((vid, i), []).append(f.bytes_list.value[0])
    assert {vid: len(set(s)) for vid, s in starts.items()} == {"tall": 9, "small": 9}
    assert max(len(j) for j in stored.values()) > 1  # windows do overlap
    sources = {vid: tv.read_frames(os.path.join(v, f"{vid}.avi")) for vid in starts}
    for (vid, i), jpegs in stored.items():
        assert len(set(jpegs)) == 1  # the same bytes in every clip holding the frame
        frame = tf.io.decode_jpeg(jpegs[0]).numpy()[..., ::-1]
        src = sources[vid]
        h, w = src[i].shape[:2]
        y0, x0, c = (h - min(h, w)) // 2, (w - min(h, w)) // 2, min(h, w)

        def crop(k):
            return cv2.resize(src[k][y0:y0 + c, x0:x0 + c], (48, 48), interpolation=cv2.INTER_AREA)
        # The best-matching source frame is the one the timestamp names (MJPG re-encoded
        # at 48 px: ≈26 dB at worst, a neighbour ≥ 1.5 dB further).
        psnr = [_psnr(frame, crop(k)) for k in range(len(src))]
        assert int(np.argmax(psnr)) == i and psnr[i] > 25
        assert max(psnr[:i] + psnr[i + 1:]) < psnr[i] - 1.5

    # Streaming: each frame grabbed once, each covered frame retrieved once, no seek.
    calls = []

    class Counting:  # the real capture, its calls recorded
        def __init__(self, cap):
            self.cap = cap

        def __getattr__(self, name):
            attr = getattr(self.cap, name)
            return lambda *a: calls.append(name) or attr(*a)

    real_capture = video_decoder.capture
    monkeypatch.setattr(video_decoder, "capture", lambda *a: Counting(real_capture(*a)))
    result = convert_video(VideoEntry("tall", os.path.join(v, "tall.avi"), (0,), ("a",), "m:1"),
                           ClipSettings(clips_per_video=9, frame_size=48, clip_overlap=True))
    covered = {s + i for s in result.clip_starts for i in range(16)}
    assert sorted(result.clip_starts) == sorted(starts["tall"])
    assert calls.count("retrieve") == len(covered) and "set" not in calls
    assert calls.count("grab") == result.frames_decoded == max(covered) + 1

    # Another value of the option is another conversion: it replaces the split on request.
    s = convert(str(manifest), output_dir=one, overwrite=True, **{**kw, "clip_overlap": False})
    assert s["clips"] == len(read_records(one)) == 4 and s["settings"]["clip_overlap"] is False


# --- layout: batches that mix videos --------------------------------------------------------

def test_mixed_stream_gives_every_clip_once_in_groups_of_nearly_equal_size():
    assert layout.groups(600, 256) == [(0, 200), (200, 400), (400, 600)]
    assert layout.groups(256, 256) == [(0, 256)] and layout.groups(0) == []
    clips = {f"v{i}": [f"v{i}/{c}".encode() for c in range(i % 4)] for i in range(600)}

    def stream(seed):
        return list(layout.mixed_stream([(v, len(r)) for v, r in clips.items()],
                                        lambda v: iter(clips[v]), seed))
    out = stream(0)
    assert sorted(out) == sorted(r for rs in clips.values() for r in rs)
    assert out == stream(0) and out != stream(1)
    # A group's clips come out together (videos kept open: one group at a time)...
    order = layout.video_order([v for v, r in clips.items() if r], 0)
    start, stop = layout.groups(len(order))[0]
    assert stop - start == 225  # 450 videos with clips: two groups
    first_group = {v.encode() for v in order[start:stop]}
    n = sum(len(clips[v.decode()]) for v in first_group)
    assert {r.split(b"/")[0] for r in out[:n]} == first_group
    # ...and not video after video.
    runs = sum(a.split(b"/")[0] != b.split(b"/")[0] for a, b in zip(out, out[1:]))
    assert runs > 0.5 * len(out)


def test_inspect_says_whether_a_layout_mixes(tmp_path):
    clips = tv.tiny_clip_records(100, 30, frame_size=8, clip_frames=1)
    for name, stream in (
            ("mixed", layout.mixed_stream([(v, len(r)) for v, r in clips.items()],
                                          lambda v: iter(clips[v]), 0)),
            ("by_video", (r for v in sorted(clips) for r in clips[v]))):
        shards.write_shards(str(tmp_path / name), "train", 4, "none", stream)
        report = inspect_records(str(tmp_path / name))
        m = report["splits"]["train"]["mixing"]
        text = format_report(report)
        assert m["uniform_per_32"] == round(mixing.uniform_distinct([30] * 100), 2)
        assert m["runs"] == 4 * (750 // 32)
        if name == "mixed":
            assert m["mixes"] and m["ratio"] >= 0.9 and "%): mixes" in text
        else:
            assert not m["mixes"] and m["distinct_per_32"] < 10 and "does NOT mix" in text


@pytest.mark.parametrize("num_shards", [1, 16])
def test_default_reader_batches_hold_90_percent_of_a_uniform_draws_videos(
        many_clip_videos, tmp_path, num_shards):
    out = str(tmp_path / "out")
    s = convert(many_clip_videos["manifest"], output_dir=out, num_shards=num_shards,
                progress=False, **many_clip_videos["settings"])
    assert s["clips"] == 2500 and s["layout"] == "mixed"
    ideal = mixing.uniform_distinct([25] * 100)  # 27.6 distinct videos in 32 clips
    counts = mixing.reader_distinct_per_batch(os.path.join(out, "train-*"), 100, batches=40)
    assert np.mean(counts) >= 0.9 * ideal, counts
    # The record order itself mixes, whatever the reader (sports1m-inspect's figure).
    assert inspect_records(out)["splits"]["train"]["mixing"]["ratio"] >= 0.9


def test_rerun_of_a_finished_conversion_does_nothing(clean_run, videos):
    before = {n: os.stat(os.path.join(clean_run["out"], n)).st_mtime_ns
              for n in os.listdir(clean_run["out"])}
    summary = convert(videos["manifest"], output_dir=clean_run["out"], labels=videos["labels"],
                      workers=2, compression="GZIP", progress=False, **SMALL)
    assert summary["clips"] == clean_run["summary"]["clips"]
    assert before == {n: os.stat(os.path.join(clean_run["out"], n)).st_mtime_ns
                      for n in os.listdir(clean_run["out"])}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tfrecord_tools.convert_main", *args]


def test_sigkill_mid_run_then_rerun_gives_exactly_the_clean_clips(tmp_path):
    # Slow enough videos (the 1280x720 sample, copied under several names) that the
    # process is still converting when it is killed.
    v = tmp_path / "v"
    v.mkdir()
    lines = []
    for i in range(6):
        tv.copy_sample("bigbuckbunny.mp4", str(v / f"bunny{i}.mp4"))
        tv.write_video(str(v / f"synth{i}.avi"), width=96, height=64, num_frames=48, seed=i)
        lines += [f"v/bunny{i}.mp4,cartoon", f"v/synth{i}.avi,synthetic"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(lines) + "\n")
    flags = [f"--manifest={manifest}", "--clips_per_video=2", "--frame_size=40",
             "--num_shards=2", "--workers=1", "--noprogress", "--split=train"]
    out = tmp_path / "out"
    work = out / ".work" / "train" / "videos"
    proc = subprocess.Popen(_cli(*flags, f"--output_dir={out}"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if work.is_dir() and len([n for n in os.listdir(work)
                                  if n.endswith(".video") and not n.startswith(".tmp-")]) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the conversion ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, as a crash would
    proc.wait()
    # Not the temporary file of the video being written when the kill came.
    done = [n for n in os.listdir(work) if n.endswith(".video") and not n.startswith(".tmp-")]
    assert 3 <= len(done) < 12 and not glob.glob(str(out / "train-*"))
    # A shard temp file as a kill during assembly would leave it.
    (out / ".tmp-999-train-00000-of-00002.tfrecord").write_bytes(b"partial")

    rerun = subprocess.run(_cli(*flags, f"--output_dir={out}"), capture_output=True, text=True,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming: {len(done)} of 12 videos already converted" in rerun.stderr
    clean = tmp_path / "clean"
    convert(str(manifest), output_dir=str(clean), clips_per_video=2, frame_size=40,
            num_shards=2, progress=False)
    # The same records in the same shards in the same (mixed) order as a clean run.
    resumed = read_records(str(out))
    assert len(resumed) == 24 and resumed == read_records(str(clean))
    assert sorted(os.listdir(out)) == [".train.lock", "dataset.json",
                                       "train-00000-of-00002.tfrecord",
                                       "train-00001-of-00002.tfrecord"]


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_cli_exit_status_nothing_converted_strict_and_usage(tmp_path, videos):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{videos['folder']}/v/empty.mp4,a\n{videos['folder']}/v/text.mp4,b\n")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(f"{videos['folder']}/v/small.avi,a\n{videos['folder']}/v/gone.mp4,b\n")
    # The three commands share nothing: run them side by side (each pays its start-up).
    procs = [
        _start(f"--manifest={bad}", f"--output_dir={tmp_path / 'o1'}", "--noprogress",
               "--split=train"),
        _start(f"--manifest={mixed}", "--clips_per_video=1", "--frame_size=32",
               "--num_shards=1", "--noprogress", "--split=val",
               f"--output_dir={tmp_path / 'o2'}", "--strict"),
        _start(f"--manifest={tmp_path / 'nope.csv'}", f"--output_dir={tmp_path / 'o3'}")]
    nothing, strict, usage = [_finish(p) for p in procs]

    assert nothing.returncode == 1
    assert "empty file (0 bytes)" in nothing.stderr and "not a video" in nothing.stderr
    with open(tmp_path / "o1" / "dataset.json") as f:
        assert len(json.load(f)["splits"]["train"]["failed"]) == 2

    assert strict.returncode == 1 and "missing file" in strict.stderr
    assert os.path.exists(tmp_path / "o2" / "val-00000-of-00001.tfrecord")  # still written

    assert usage.returncode == 1 and "--split is required" in usage.stderr


# --- the other manifest formats, end to end ------------------------------------------------

def test_ucf101_and_sports1m_layouts_convert_into_one_folder(tmp_path):
    root = tmp_path / "UCF-101"
    tv.write_video(str(root / "HandstandPushups" / "v_HandStandPushups_g08_c01.avi"), seed=1)
    tv.write_video(str(root / "YoYo" / "v_YoYo_g01_c01.avi"), seed=2)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 HandstandPushups\n2 YoYo\n")
    (lists / "trainlist01.txt").write_text("HandstandPushups/v_HandStandPushups_g08_c01.avi 1\n")
    (lists / "testlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi\n")
    out = str(tmp_path / "ucf")
    for name in ("trainlist01.txt", "testlist01.txt"):
        convert(str(lists / name), output_dir=out, manifest_format="ucf101",
                video_root=str(root), clips_per_video=2, frame_size=32, num_shards=1,
                progress=False)
    with open(os.path.join(out, "dataset.json")) as f:
        data = json.load(f)
    assert data["classes"] == ["HandstandPushups", "YoYo"]
    assert data["splits"]["train"]["clips_per_class"] == {"HandstandPushups": 2, "YoYo": 0}
    assert data["splits"]["test"]["clips_per_class"] == {"HandstandPushups": 0, "YoYo": 2}
    test_labels = {tf.train.SequenceExample.FromString(r).context.feature[
        schema.LABEL_INDEX].int64_list.value[0] for r in read_records(out) if b"YoYo" in r}
    assert test_labels == {1}

    videos = tmp_path / "s1m"
    tv.write_video(str(videos / "UDqivjS-lpI.mp4"), seed=3)
    (tmp_path / "labels.txt").write_text("boomerang\ncycling\nskiing\n")
    (tmp_path / "test_partition.txt").write_text(
        "https://www.youtube.com/watch?v=UDqivjS-lpI 1,2\n"
        "https://www.youtube.com/watch?v=missingVid0 0\n")
    s = convert(str(tmp_path / "test_partition.txt"), output_dir=str(tmp_path / "s1m_out"),
                manifest_format="sports1m", video_root=str(videos),
                labels=str(tmp_path / "labels.txt"), clips_per_video=2, frame_size=32,
                num_shards=2, progress=False)
    assert s["clips_per_class"] == {"boomerang": 0, "cycling": 2, "skiing": 2}
    assert [f["reason"] for f in s["failed"]] == ["missing file"]
    ex = tf.train.SequenceExample.FromString(read_records(str(tmp_path / "s1m_out"))[0])
    assert list(ex.context.feature[schema.LABEL_INDEX].int64_list.value) == [1, 2]
    assert list(ex.context.feature[schema.LABEL_STRING].bytes_list.value) == [b"cycling",
                                                                             b"skiing"]


def test_changed_settings_start_over_instead_of_mixing(videos, tmp_path):
    out = str(tmp_path / "o")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{videos['folder']}/v/square.mp4,a\n")
    first = convert(str(manifest), output_dir=out, clips_per_video=1, frame_size=32,
                    num_shards=2, keep_work=True, progress=False)
    with pytest.raises(ValueError, match="--overwrite"):
        convert(str(manifest), output_dir=out, clips_per_video=3, frame_size=32,
                num_shards=1, progress=False)
    second = convert(str(manifest), output_dir=out, clips_per_video=3, frame_size=32,
                     num_shards=1, progress=False, overwrite=True)
    assert (first["clips"], second["clips"]) == (1, 3)
    # The old 2-shard files are gone; only the new set is left.
    assert sorted(n for n in os.listdir(out) if "tfrecord" in n) == [
        "train-00000-of-00001.tfrecord"]
    assert len(read_records(out)) == 3
    shutil.rmtree(out)


def test_remote_paths_go_through_tf_io_gfile(videos):
    # ram:// is TensorFlow's in-memory file system: the same code path as gs://
    # (tf.io.gfile, videos copied to a local temporary file for OpenCV), no network.
    root = "ram://convert_test"
    tf.io.gfile.makedirs(f"{root}/videos/sub")
    for name, dst in (("small.avi", "sub/AbCdEfGhIjK.avi"), ("empty.mp4", "ZZZZZZZZZZZ.mp4")):
        tf.io.gfile.copy(os.path.join(videos["folder"], "v", name), f"{root}/videos/{dst}",
                         overwrite=True)
    with tf.io.gfile.GFile(f"{root}/part.txt", "w") as f:
        f.write("https://www.youtube.com/watch?v=AbCdEfGhIjK 1\n"
                "https://www.youtube.com/watch?v=ZZZZZZZZZZZ 0\n")
    s = convert(f"{root}/part.txt", output_dir=f"{root}/out", manifest_format="sports1m",
                video_root=f"{root}/videos", clips_per_video=2, frame_size=32, num_shards=2,
                progress=False)
    assert s["clips"] == 2 and [f["reason"] for f in s["failed"]] == ["empty file (0 bytes)"]
    assert sorted(tf.io.gfile.listdir(f"{root}/out")) == [
        "dataset.json", "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    records = [r.numpy() for r in tf.data.TFRecordDataset(
        tf.io.gfile.glob(f"{root}/out/train-*"))]
    assert [clip_key(r)[0] for r in records] == ["AbCdEfGhIjK"] * 2


def _write_sections(folder: str, writer: int) -> None:
    from tfrecord_tools import summary
    for k in range(15):
        summary.write_split(folder, ["a", "b"], f"split{writer}_{k}", {"clips": k})


def test_dataset_json_keeps_every_split_when_conversions_write_at_once(tmp_path):
    # Conversions of different splits into one folder (the demo runs three) each
    # rewrite dataset.json; none may drop another's section, and no lock file stays.
    import multiprocessing
    from tfrecord_tools import summary
    spawn = multiprocessing.get_context("spawn")
    writers = [spawn.Process(target=_write_sections, args=(str(tmp_path), i)) for i in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
        assert w.exitcode == 0
    assert len(summary.read(str(tmp_path))["splits"]) == 4 * 15
    assert os.listdir(tmp_path) == ["dataset.json"]
