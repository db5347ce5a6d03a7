"""sports1m-predict --stream: labels of a UDP stream that ffmpeg plays, and of a file in real time.

The fixture trains the tint model (tests/tint_model.py, seconds), exports it,
and starts the fresh processes together: ffmpeg plays a video of the first tint
in a loop, in real time, as MPEG-TS over UDP on 127.0.0.1, and `--stream`
labels it until the test kills the sender; `--stream` on a port nothing sends
to; a video of both tints played with `--realtime`, against segment mode on the
same file; and a `--realtime` run stopped with Ctrl-C.
"""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import testvideos

pytest.importorskip("tensorflow")

from export import saved_model, stream  # noqa: E402
from export.stream_reader import Source, parse_source  # noqa: E402
from export.stream_windows import StreamOptions, WindowPlan, clock  # noqa: E402
from sports1m_tf import cli  # noqa: E402
from tint_model import tinted_frames, train_tint_model  # noqa: E402

MODEL = "slow_fusion"
SIZE = 32
CLASSES = ["archery", "bowling", "curling"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
RECONNECT_SECONDS = 3.0
# Labels of the live stream read before its sender is killed.
LIVE_LABELS = 6


def _script(name: str) -> str:
    """A console script beside this Python (CI does not put the venv's bin/ on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else name


class LineReader:
    """A process's stdout lines, collected by a thread so that a test can wait for some."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.put(line)

    def wait_for(self, count: int, timeout: float) -> list[str]:
        got, deadline = [], time.monotonic() + timeout
        while len(got) < count and (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.lines.get(timeout=left))
            except queue.Empty:
                break
        return got

    def rest(self) -> list[str]:
        out = []
        while not self.lines.empty():
            out.append(self.lines.get())
        return out


def _ctrl_c_acts() -> None:
    """In the child: Ctrl-C's default action, even when the suite itself was started
    with SIGINT ignored (a background job of a shell), which children inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def predict(*args: str) -> subprocess.Popen:
    return subprocess.Popen([_script("sports1m-predict"), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=_ctrl_c_acts)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, write_video):
    tmp = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(1)
    model = train_tint_model(MODEL, len(CLASSES), SIZE, rng)
    saved_model.export_model(model, str(tmp / "serving"), "tint", class_names=CLASSES,
                             warmup=False)
    model_arg = f"--saved_model={tmp / 'serving' / 'tint'}"
    # 4 s of the first tint (looped by the sender), and 3 s of each tint at 16 fps.
    one_tint = write_video(str(tmp / "one_tint.mp4"),
                           tinted_frames(rng, 100, 96, 128, 0)[..., ::-1], fps=25.0)
    two_tints = write_video(str(tmp / "two_tints.mp4"), np.concatenate(
        [tinted_frames(rng, 48, 48, 64, c)[..., ::-1] for c in (0, 1)]), fps=16.0)

    # Long enough that the Ctrl-C always lands before it ends, however busy the machine.
    long_tint = write_video(str(tmp / "long_tint.mp4"),
                            tinted_frames(rng, 480, 48, 64, 0)[..., ::-1], fps=16.0)
    has_ffmpeg = shutil.which("ffmpeg") is not None
    live_port, silent_port = testvideos.free_udp_port(), testvideos.free_udp_port()
    sender = testvideos.play_udp(one_tint, live_port) if has_ffmpeg else None
    procs = {
        "realtime": predict(model_arg, f"--stream={two_tints}", "--realtime", "--json",
                            "--every_seconds=2", "--window_seconds=2"),
        "segments": predict(model_arg, two_tints, "--json", "--segment_seconds=2"),
        "interrupt": predict(model_arg, f"--stream={long_tint}", "--realtime"),
        "silent": predict(model_arg, f"--stream=udp://127.0.0.1:{silent_port}",
                          "--reconnect_seconds=1"),
        "with_files": predict(model_arg, "--stream=0", two_tints),
        "file_not_realtime": predict(model_arg, f"--stream={two_tints}"),
    }
    if importlib.util.find_spec("ai_edge_litert"):
        # The same model as a TFLite file (LiteRT, the `lite` extra) on the same windows.
        from export import tflite_export
        lite_dir = tflite_export.export_tflite(model, str(tmp / "lite"), "tint",
                                               class_names=CLASSES)
        procs["realtime_lite"] = predict(f"--tflite={lite_dir}/model.tflite",
                                         f"--stream={two_tints}", "--realtime", "--json",
                                         "--every_seconds=2", "--window_seconds=2")
    if has_ffmpeg:
        procs["live"] = predict(model_arg, f"--stream=udp://127.0.0.1:{live_port}", "--json",
                                f"--reconnect_seconds={RECONNECT_SECONDS:g}")
    results = {"has_ffmpeg": has_ffmpeg}
    try:
        # Ctrl-C once the first label is out.
        interrupt = LineReader(procs["interrupt"])
        results["interrupt_lines"] = interrupt.wait_for(1, timeout=240)
        procs["interrupt"].send_signal(signal.SIGINT)
        if has_ffmpeg:
            live = LineReader(procs["live"])
            results["live_labels"] = [json.loads(x) for x in live.wait_for(LIVE_LABELS, 240)]
            sender.kill()
            procs["live"].wait(timeout=RECONNECT_SECONDS + 120)
            results["live_labels"] += [json.loads(x) for x in live.rest()]
        for key, proc in procs.items():
            out, err = proc.communicate(timeout=240)
            results[key] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for proc in [*procs.values(), sender]:
            if proc is not None and proc.poll() is None:
                proc.kill()
    return results


# ----------------------------------------------------------------------------
# Live: MPEG-TS over UDP from ffmpeg.

def _live(runs) -> subprocess.CompletedProcess:
    if not runs["has_ffmpeg"]:
        pytest.skip("ffmpeg is not installed (it plays the test stream)")
    return runs["live"]


def test_live_labels_name_the_streams_class(runs):
    result = _live(runs)
    assert result.returncode == 0, result.stderr[-3000:]
    labels = runs["live_labels"]
    assert len(labels) >= LIVE_LABELS, result.stderr[-3000:]
    for label in labels:
        assert set(label) == {"stream_seconds", "top_k", "latency_seconds"}
        assert [set(p) for p in label["top_k"]] == [{"id", "name", "probability"}] * 3
    # A label every second of stream (or a whole number of seconds where one was skipped).
    steps = np.diff([label["stream_seconds"] for label in labels])
    assert (np.round(steps) >= 1).all() and np.allclose(steps, np.round(steps)), steps
    top = [label["top_k"][0]["name"] for label in labels]
    assert top.count(CLASSES[0]) > len(top) / 2, top
    # A small model keeps up with the stream: latency well under a second.
    assert statistics.median(label["latency_seconds"] for label in labels) < 1.0, labels


def test_killed_sender_ends_the_run_after_reconnecting(runs):
    result = _live(runs)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reconnecting" in result.stderr
    assert (f"did not come back within --reconnect_seconds={RECONNECT_SECONDS:g}"
            in result.stderr)
    summary = result.stderr.strip().splitlines()[-1]
    assert f"{len(runs['live_labels'])} labels over" in summary, summary
    assert "frames dropped" in summary and "latency mean" in summary
    # Noticing the silence and reopening both fit in --reconnect_seconds: the time
    # left to reopen is what the silence left of it.
    reconnecting = [line for line in result.stderr.splitlines() if "reconnecting" in line]
    silent, left = map(float, re.search(r"no frame for ([\d.]+) s; reconnecting for up to "
                                        r"([\d.]+) s", reconnecting[0]).groups())
    assert silent + left == pytest.approx(RECONNECT_SECONDS, abs=0.11), reconnecting


def test_silent_port_fails_naming_it(runs):
    result = runs["silent"]
    assert result.returncode == cli.EXIT_USER_ERROR, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not be opened within 1 s" in lines[0], lines
    assert lines[0].startswith("sports1m-predict: error: --stream udp://127.0.0.1:")
    assert result.stdout == ""


def test_stream_flag_mistakes(runs):
    for key, message in [("with_files", "--stream labels one live source: give no video files"),
                         ("file_not_realtime", "a file plays as a stream only with --realtime")]:
        result = runs[key]
        assert result.returncode == cli.EXIT_USER_ERROR, result.stderr[-3000:]
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------
# A file with --realtime.

def test_realtime_file_gives_the_segments_labels(runs):
    """Windows as long as their step are segment mode's segments: same clips, same output."""
    realtime, segments = runs["realtime"], runs["segments"]
    assert realtime.returncode == 0, realtime.stderr[-3000:]
    assert segments.returncode == 0, segments.stderr[-3000:]
    labels = [json.loads(x) for x in realtime.stdout.splitlines()]
    by_end = {s["end_seconds"]: s["top_k"] for s in json.loads(segments.stdout)["segments"]}
    assert [label["stream_seconds"] for label in labels] == [2.0, 4.0, 6.0]
    for label in labels:
        expected = by_end[label["stream_seconds"]]
        assert [p["name"] for p in label["top_k"]] == [p["name"] for p in expected]
        np.testing.assert_allclose([p["probability"] for p in label["top_k"]],
                                   [p["probability"] for p in expected], atol=1e-6)
    # 3 s of one tint, then 3 s of the other: the labels follow.
    assert labels[0]["top_k"][0]["name"] == CLASSES[0]
    assert labels[-1]["top_k"][0]["name"] == CLASSES[1]
    assert "the stream ended: end of" in realtime.stderr
    assert "3 labels over 00:06.0 of stream (96 frames at 16 fps); 0 frames dropped" \
        in realtime.stderr


def test_realtime_file_through_tflite_gives_the_same_labels(runs):
    if "realtime_lite" not in runs:
        pytest.skip("LiteRT is not installed (pip install '.[lite]')")
    lite, saved = runs["realtime_lite"], runs["realtime"]
    assert lite.returncode == 0, lite.stderr[-3000:]
    lite_labels = [json.loads(x) for x in lite.stdout.splitlines()]
    saved_labels = [json.loads(x) for x in saved.stdout.splitlines()]
    assert [x["stream_seconds"] for x in lite_labels] == [2.0, 4.0, 6.0]
    for a, b in zip(lite_labels, saved_labels, strict=True):
        assert [p["id"] for p in a["top_k"]] == [p["id"] for p in b["top_k"]]
        np.testing.assert_allclose([p["probability"] for p in a["top_k"]],
                                   [p["probability"] for p in b["top_k"]], atol=1e-4)


def test_ctrl_c_prints_the_summary_and_exits_130(runs):
    result = runs["interrupt"]
    assert runs["interrupt_lines"], result.stderr[-3000:]
    assert runs["interrupt_lines"][0].startswith("00:02.0  archery ")
    assert result.returncode == cli.EXIT_INTERRUPTED, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-3] == "interrupted" and " labels over " in lines[-2], lines
    assert lines[-1] == "sports1m-predict: interrupted"


# ----------------------------------------------------------------------------
# In-process: windows, drops, bad sources (no TensorFlow).

class SlowModel:
    """A stand-in that takes `seconds` a window (a model slower than the stream) and
    records the clips it is given."""

    frames = (8,)

    def __init__(self, seconds: float):
        self.seconds, self.calls = seconds, []

    def __call__(self, clips: np.ndarray):
        time.sleep(self.seconds)
        self.calls.append(clips)
        probs = np.array([0.75, 0.25])
        return probs, self.top_k(probs)

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[dict]:
        return [{"id": int(i), "name": f"c{i}", "probability": float(probs[i])}
                for i in np.argsort(-probs)[:k]]


def test_slow_model_drops_windows_and_counts_their_frames(tmp_path, write_video):
    """Labels every 0.32 s of 0.64-second windows, by a model taking 1 s: windows are
    skipped, and the frames no classified window held are the frames counted dropped."""
    video = write_video(str(tmp_path / "v.avi"), tinted_frames(np.random.default_rng(0),
                                                               75, 24, 32, 0), fps=25.0,
                        fourcc="MJPG")
    model, labels = SlowModel(1.0), []
    options = StreamOptions(every_seconds=0.32, window_seconds=0.64, max_clips=1)
    summary = stream.run_stream(model, parse_source(video, realtime=True), options,
                                labels.append, on_event=lambda line: None)
    plan = WindowPlan.make(25.0, options, model.frames)
    assert (plan.length, plan.step, plan.starts) == (16, 8, (0,))
    ends = [round(label["stream_seconds"] * 25) for label in labels]
    # 8 windows end in the 3 s (frames 16, 24, ..., 72); the last one is always taken.
    assert len(labels) < 8 and ends[-1] == 72, ends
    held = set().union(*(range(end - plan.length, end) for end in ends))
    assert summary.dropped == 72 - len(held) > 0, (ends, summary)
    assert summary.labels == len(labels) and summary.frames == 75
    # Only the model's frame of each clip is there (the others black).
    clips = model.calls[-1]
    assert clips.shape == (1, 16, 200, 200, 3)
    assert clips[0, 8].any() and not np.delete(clips[0], 8, axis=0).any()


@pytest.mark.parametrize("previous, last, classified, expected", [
    (None, 0, True, 0), (0, 1, True, 0), (0, 3, True, 0), (0, 5, True, 5),
    (None, 2, True, 10), (2, 4, False, 10), (None, 1, False, 25), (4, 4, False, 0)])
def test_dropped_frames_between_windows(previous, last, classified, expected):
    """Windows of 20 frames every 5: frames no classified window holds."""
    plan = WindowPlan(20, 5, (0,), frozenset({8}), frozenset({8}))
    assert plan.dropped(previous, last, classified=classified) == expected
    apart = WindowPlan(5, 20, (0,), frozenset({8}), frozenset({8}))
    assert apart.dropped(0, 3, classified=True) == 10


def test_window_plan_needs_only_the_clips_frames():
    plan = WindowPlan.make(25.0, StreamOptions(), (3, 12))
    assert (plan.length, plan.step, plan.starts) == (50, 25, (0, 17, 34))
    assert plan.needed == {3, 12, 20, 29, 37, 46}
    needed = [f for f in range(100) if plan.needs(f)]
    # Window k starts at 25k: the needed offsets of windows 0..3.
    assert needed == sorted({25 * k + n for k in range(4) for n in plan.needed if
                             25 * k + n < 100})
    assert [plan.completed_by(f) for f in (48, 49, 73, 74, 75)] == [None, 0, None, 1, None]
    with pytest.raises(cli.UserError, match=r"--window_seconds=0.5 is 12 frames at 25 fps; "
                                            r"a clip needs 16 \(give at least 0.64\)"):
        WindowPlan.make(25.0, StreamOptions(window_seconds=0.5), None)


def test_bad_sources(tmp_path):
    with pytest.raises(cli.UserError, match="a file plays as a stream only with --realtime"):
        parse_source(str(tmp_path / "x.mp4"))
    with pytest.raises(cli.UserError, match=r"--stream .*missing.mp4: no such file"):
        parse_source(str(tmp_path / "missing.mp4"), realtime=True)
    with pytest.raises(cli.UserError, match=r"unknown scheme ftp://"):
        parse_source("ftp://host/v.mp4")
    with pytest.raises(cli.UserError, match="drop --realtime"):
        parse_source("0", realtime=True)
    assert parse_source("0") == Source("0", 0, live=True)
    assert parse_source("rtsp://cam/1").live
    with pytest.raises(cli.UserError, match="--every_seconds=0: every_seconds must be a finite number above 0"):
        StreamOptions(every_seconds=0).check()
    assert clock(3725.04) == "62:05.0"
