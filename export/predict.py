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

`--tflite=FILE` runs a `sports1m-export --format=tflite` file instead, with the
LiteRT interpreter (pip install 'sports1m_tf[lite]'): clip by clip, the same 4
views averaged in Python, the same output.
"""
from __future__ import annotations

import json
import sys

from absl import flags

from export import stream, video_command
from export.stream_reader import parse_source
from export.stream_windows import StreamOptions, define_stream_flags
from export.video_command import (check_manifest_classes, mmss,  # noqa: F401
                                  read_manifest)
from export.video_input import VideoError, clip_starts, read_clips, stored_frame  # noqa: F401
from export.video_prediction import (PredictionHandler, VideoModel,  # noqa: F401
                                     model_class_names, predict_files, predict_videos,
                                     resolve_saved_model)
from sports1m_tf import cli
from sports1m_tf.settings import from_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "SavedModel version folder, or a model folder.")
flags.DEFINE_string("tflite", None,
                    "A .tflite file written by sports1m-export --format=tflite (model_info.json "
                    "and class_names.txt beside it), run with the LiteRT interpreter.")
video_command.define_flags("Give every consecutive segment of this many seconds its own top 5 "
                           "(0: one prediction for the whole video).")
flags.DEFINE_boolean("json", False, "Print JSON Lines: one object a video, or a label with "
                     "--stream.")
flags.DEFINE_string("stream", None,
                    "Label a live source as it plays: a camera index (0), an rtsp://, http(s)://, "
                    "udp:// or tcp:// URL, or a video file with --realtime.")
flags.DEFINE_boolean("realtime", False,
                     "With --stream: read the source at its own frame rate (a file, or a URL "
                     "serving a whole video), as if it were live.")
define_stream_flags()
flags.mark_flags_as_mutual_exclusive(["saved_model", "tflite"], required=True)

# ----------------------------------------------------------------------------
# Output.

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


# ----------------------------------------------------------------------------
# The command.

def load_model():
    """The `--saved_model`'s `VideoModel`, or the `--tflite` file's (loaded at first use)."""
    if FLAGS.tflite:
        from export.tflite_model import TFLiteVideoModel
        return TFLiteVideoModel(FLAGS.tflite)
    return VideoModel(resolve_saved_model(FLAGS.saved_model))


def _print(result: dict, truths: dict[str, list[str]]) -> None:
    if result["video"] in truths:
        result["labels"] = truths[result["video"]]
    if FLAGS.json:
        print(json.dumps(result), flush=True)
    else:
        print(format_text(result), file=sys.stderr if "error" in result else sys.stdout,
              flush=True)


def _stream_labels(argv: list[str]) -> int:
    """`--stream`: labels until the stream ends; Ctrl-C prints the summary, then exits 130."""
    if len(argv) > 1 or FLAGS.manifest or FLAGS.labels or FLAGS.segment_seconds:
        raise cli.UserError("--stream labels one live source: give no video files, "
                            "--manifest, --labels or --segment_seconds with it")
    source = parse_source(FLAGS.stream, FLAGS.realtime)
    options = from_flags(StreamOptions)
    model = load_model()

    def show(label: dict) -> None:
        print(json.dumps(label) if FLAGS.json else stream.format_label(label), flush=True)

    summary = stream.run_stream(model, source, options, on_label=show)
    print(summary.text(), file=sys.stderr, flush=True)
    if summary.interrupted:
        raise KeyboardInterrupt
    return 0


def main(argv):
    video_command.check_flags()
    if FLAGS.stream is not None:
        return _stream_labels(argv)
    if FLAGS.realtime:
        raise cli.UserError("--realtime goes with --stream")
    model = load_model()
    paths, truths, errors = video_command.video_inputs(argv, lambda: model.class_names)
    handler = PredictionHandler(model, segmented=FLAGS.segment_seconds > 0)
    failed, total = video_command.run_files(handler, paths, errors,
                                            lambda result: _print(result, truths))
    return 1 if failed == total else 0


run = cli.entry(main)


if __name__ == "__main__":
    run()
