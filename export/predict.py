"""sports1m-predict: the top classes of video files from an exported SavedModel.

  sports1m-predict --saved_model=serving/slow_fusion video1.mp4 video2.avi
  sports1m-predict --saved_model=serving/slow_fusion/3 --json video.mp4 > predictions.jsonl
  sports1m-predict --saved_model=serving/slow_fusion --segment_seconds=60 match.mp4
  sports1m-predict --saved_model=serving/slow_fusion --manifest=test.csv --json > test.jsonl

Each video is decoded once, front to back, with the converter's decoder: clips of
16 consecutive frames are kept as the converter stores frames (centre square,
200×200; only the frames the model reads, listed in the SavedModel's
model_info.json, are converted), and the SavedModel's `predict_video` signature
averages the 4 views of every clip into a prediction. Without `--segment_seconds`,
up to `--max_clips` clips evenly spread over the whole video; with it, each
consecutive segment of S seconds gets up to `--max_clips` clips and its own top 5,
streaming (memory holds a segment, whatever the video's length), and the video's
top 5 is the mean over all of them.

`--stream=SOURCE` labels a live source as it plays (a camera index, an rtsp://,
http(s)://, udp:// or tcp:// URL, or a file with `--realtime`): every
`--every_seconds` the last `--window_seconds`, one line each (JSON Lines with
`--json`), until the stream ends, `--max_seconds` pass, or Ctrl-C:

  sports1m-predict --saved_model=serving/slow_fusion --stream=0
  sports1m-predict --saved_model=serving/slow_fusion --stream=udp://127.0.0.1:5000 --json

Files are decoded by `--workers` processes while the model predicts. `--json`
prints one JSON object a line per file (JSON Lines), in the order given. A
file that cannot be read is reported and the others carry on; the exit status
is 1 only when every file failed. `--saved_model` is a version folder or a model
folder (its highest version is used).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Sequence

from absl import flags

from export import decode_pool, stream
from export.stream_reader import parse_source
from export.stream_windows import StreamOptions
from export.video_input import VideoError, clip_starts, read_clips, stored_frame  # noqa: F401
from export.video_prediction import (VideoModel, model_class_names,  # noqa: F401
                                     predict_files, predict_videos, resolve_saved_model)
from sports1m_tf import cli
from tfrecord_tools import summary

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "SavedModel version folder, or a model folder.")
flags.DEFINE_integer("max_clips", 20, "Most clips per video, or per segment (paper: 20).")
flags.DEFINE_float("segment_seconds", 0.0,
                   "Give every consecutive segment of this many seconds its own top 5 "
                   "(0: one prediction for the whole video).")
flags.DEFINE_string("manifest", None,
                    "File of videos: one path a line, or the converter's CSV "
                    "(path,label[;label...]). Relative paths are from the manifest's folder.")
flags.DEFINE_string("labels", None,
                    "Class-name file of the --manifest (as sports1m-convert --labels); it must "
                    "list the model's classes in the model's order.")
flags.DEFINE_integer("workers", 0, "Decoding processes (0: one per core, at most one a file).")
flags.DEFINE_boolean("json", False, "Print JSON Lines: one object a video, or a label with "
                     "--stream.")
flags.DEFINE_string("stream", None,
                    "Label a live source as it plays: a camera index (0), an rtsp://, http(s)://, "
                    "udp:// or tcp:// URL, or a video file with --realtime.")
flags.DEFINE_boolean("realtime", False,
                     "With --stream: read the source at its own frame rate (a file, or a URL "
                     "serving a whole video), as if it were live.")
flags.DEFINE_float("every_seconds", StreamOptions.every_seconds,
                   "With --stream: seconds of stream between labels.")
flags.DEFINE_float("window_seconds", StreamOptions.window_seconds,
                   "With --stream: each label covers the last this many seconds of stream.")
flags.DEFINE_integer("smooth", StreamOptions.smooth,
                     "With --stream: average each label's probabilities with the previous "
                     "windows', this many windows in all.")
flags.DEFINE_float("max_seconds", StreamOptions.max_seconds,
                   "With --stream: stop after this many seconds of stream (0: until it ends).")
flags.DEFINE_float("reconnect_seconds", StreamOptions.reconnect_seconds,
                   "With --stream: how long the source may send nothing, at the start or after "
                   "it stops, before the run ends.")
flags.mark_flag_as_required("saved_model")

# ----------------------------------------------------------------------------
# Inputs: paths and manifests.

def read_manifest(path: str, labels: str | None = None
                  ) -> tuple[list[str], dict[str, list[str]], list[str] | None, list[dict]]:
    """The videos of a manifest: one path a line, or the converter's CSV.

    Args:
      path: The manifest. A line with a comma or a tab makes it a CSV, read
        by the converter's reader (`tfrecord_tools.manifest`).
      labels: The CSV's class-name file, if any.

    Returns:
      (video paths, path → label names (CSV only), the manifest's class list (CSV
      only, else None), the lines that give no video as error results `{video, error}`).
    """
    from tfrecord_tools import fileio, manifest
    if not fileio.exists(path):
        raise cli.UserError(f"--manifest {path}: no such file")
    lines = [ln.strip() for ln in fileio.read_text(path).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    root = os.path.dirname(path) or "."
    if not any("," in ln or "\t" in ln for ln in lines):
        if labels:
            raise cli.UserError(f"--labels {labels}: the manifest {path} has no labels "
                                "(one path a line); drop --labels")
        return [ln if os.path.isabs(ln) or fileio.is_remote(ln) else os.path.join(root, ln)
                for ln in lines], {}, None, []
    try:
        parsed = manifest.read_manifest(path, "csv", labels=labels)
    except (ValueError, FileNotFoundError) as e:
        raise cli.UserError(f"--manifest {path}: {e}") from e
    truths = {e.path: list(e.label_strings) for e in parsed.entries}
    problems = [{"video": p.path or p.source, "error": f"{p.source}: {p.reason}"}
                for p in parsed.problems]
    return [e.path for e in parsed.entries], truths, parsed.classes, problems


def check_manifest_classes(manifest_classes: Sequence[str], model_classes: Sequence[str],
                           *, exact: bool, source: str) -> None:
    """Fails, naming the differences, unless a manifest's classes fit the model's.

    Args:
      manifest_classes: the manifest's class list (from its labels file when
        `exact`, else the names its lines use).
      model_classes: the SavedModel's class names.
      exact: The lists must be equal, order included (a labels file gives
        class indices); otherwise every name used must be one of the model's.
      source: What to name in the message.
    """
    differences = summary.class_differences(manifest_classes, model_classes, subset=not exact,
                                            names=("the manifest", "the model"))
    if differences:
        raise cli.UserError(f"{source}: its class names differ from the model's "
                            f"({len(model_classes)} classes): {differences}. Predict with "
                            "the model trained on these classes.")


# ----------------------------------------------------------------------------
# Output.

def mmss(seconds: float) -> str:
    """`mm:ss` (minutes keep counting past 59)."""
    total = int(seconds + 1e-6)
    return f"{total // 60:02d}:{total % 60:02d}"


def format_text(result: dict) -> str:
    """Human-readable lines for one video's result, with its segment table if any."""
    if "error" in result:
        return f"{result['video']}: ERROR: {result['error']}"
    lines = [f"{result['video']} ({result['clips']} clips)"]
    lines += [f"  {rank}. {p['probability']:.4f}  {p['name']}"
              for rank, p in enumerate(result["top_k"], start=1)]
    if result.get("segments"):
        lines.append(f"  {'segment':13s}  {'clips':>5s}  top classes")
        for s in result["segments"]:
            top = ", ".join(f"{p['name']} {p['probability']:.2f}" for p in s["top_k"][:3])
            lines.append(f"  {mmss(s['start_seconds'])}-{mmss(s['end_seconds'])}  "
                         f"{s['clips']:5d}  {top or '(shorter than a clip)'}")
    return "\n".join(lines)


def summary_line(done: int, total: int, stats: dict, workers: int) -> str:
    """Wall time, videos/s and how much of the time the model waited for decoding.

    Loading the model is a one-off cost: it is in the wall time but not in the
    rate, nor in the share of time spent waiting."""
    seconds = max(stats["seconds"], 1e-9)
    processes = "process" if workers == 1 else "processes"
    return (f"{done} of {total} videos in {stats['seconds'] + stats['load_seconds']:.1f} s, "
            f"{stats['load_seconds']:.1f} s of it loading the model ({done / seconds:.2f} "
            f"videos/s without it); the model waited for decoding "
            f"{stats['wait_seconds'] / seconds:.0%} of the time (model "
            f"{stats['model_seconds']:.1f} s, decoding {stats['decode_seconds']:.1f} s in "
            f"{workers} {processes})")


def _progress_bar(total: int):
    from tqdm import tqdm
    return tqdm(total=total, unit="video", file=sys.stderr, dynamic_ncols=True,
                disable=total < 2 and not FLAGS.segment_seconds)


# ----------------------------------------------------------------------------
# The command.

def _inputs(argv: list[str]) -> tuple[list[str], dict[str, list[str]], list[dict]]:
    """(paths, path → true labels, error results for manifest lines that give no video)."""
    paths, truths, errors = list(argv[1:]), {}, []
    if FLAGS.manifest:
        listed, truths, classes, problems = read_manifest(FLAGS.manifest, FLAGS.labels)
        if classes is not None:
            version_dir = resolve_saved_model(FLAGS.saved_model)
            check_manifest_classes(classes, model_class_names(version_dir),
                                   exact=bool(FLAGS.labels), source=f"--manifest {FLAGS.manifest}")
        paths += listed
        errors = problems
    elif FLAGS.labels:
        raise cli.UserError("--labels goes with --manifest")
    if not paths and not errors:
        raise cli.UserError("give at least one video file, or --manifest=FILE")
    return paths, truths, errors


def _check_flags() -> None:
    if FLAGS.max_clips < 1:
        raise cli.UserError(f"--max_clips must be at least 1, got {FLAGS.max_clips}")
    if FLAGS.segment_seconds < 0:
        raise cli.UserError(f"--segment_seconds must be positive (or 0 for whole videos), "
                            f"got {FLAGS.segment_seconds}")
    if FLAGS.workers < 0:
        raise cli.UserError(f"--workers must be 0 (one per core) or more, got {FLAGS.workers}")


def _print(result: dict, truths: dict[str, list[str]]) -> None:
    if result["video"] in truths:
        result["labels"] = truths[result["video"]]
    if FLAGS.json:
        print(json.dumps(result), flush=True)
    else:
        print(format_text(result), file=sys.stderr if "error" in result else sys.stdout,
              flush=True)


def load_model() -> VideoModel:
    """The `--saved_model`'s `VideoModel` (loaded at its first call)."""
    return VideoModel(resolve_saved_model(FLAGS.saved_model))


def _stream_labels(argv: list[str]) -> int:
    """`--stream`: labels until the stream ends; Ctrl-C prints the summary, then exits 130."""
    if len(argv) > 1 or FLAGS.manifest or FLAGS.labels or FLAGS.segment_seconds:
        raise cli.UserError("--stream labels one live source: give no video files, "
                            "--manifest, --labels or --segment_seconds with it")
    source = parse_source(FLAGS.stream, FLAGS.realtime)
    options = StreamOptions(
        every_seconds=FLAGS.every_seconds, window_seconds=FLAGS.window_seconds,
        max_clips=FLAGS.max_clips, smooth=FLAGS.smooth, max_seconds=FLAGS.max_seconds,
        reconnect_seconds=FLAGS.reconnect_seconds)
    model = load_model()

    def show(label: dict) -> None:
        print(json.dumps(label) if FLAGS.json else stream.format_label(label), flush=True)

    summary = stream.run_stream(model, source, options, on_label=show)
    print(summary.text(), file=sys.stderr, flush=True)
    if summary.interrupted:
        raise KeyboardInterrupt
    return 0


def main(argv):
    _check_flags()
    if FLAGS.stream is not None:
        return _stream_labels(argv)
    if FLAGS.realtime:
        raise cli.UserError("--realtime goes with --stream")
    paths, truths, errors = _inputs(argv)
    model = load_model()
    options = decode_pool.DecodeOptions(max_clips=FLAGS.max_clips,
                                        segment_seconds=FLAGS.segment_seconds,
                                        frames=model.frames)
    workers = FLAGS.workers or os.cpu_count() or 1
    for result in errors:
        _print(result, truths)
    failed = len(errors)
    bar, stats = _progress_bar(len(paths)), {}

    def at_segment(index: int, segment) -> None:
        # A long video is one step of the bar: say how far into it the model is.
        bar.set_postfix_str(f"{os.path.basename(paths[index])} {mmss(segment.end_seconds)}")

    for result in predict_files(model, paths, options, workers,
                                on_progress=lambda r: bar.update(), stats=stats,
                                on_segment=at_segment if FLAGS.segment_seconds else None):
        failed += "error" in result
        _print(result, truths)
    bar.close()
    total = len(paths) + len(errors)
    print(summary_line(total - failed, total, stats, min(workers, max(len(paths), 1))),
          file=sys.stderr)
    if failed:
        print(f"{failed} of {total} videos failed", file=sys.stderr)
    return 1 if failed == total else 0


def run() -> None:
    cli.entry(main)()


if __name__ == "__main__":
    run()
