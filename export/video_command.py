"""What the commands on video files (`sports1m-predict`, `sports1m-features`) share.

Their flags for cutting videos and listing files, the files themselves (paths on
the command line and `--manifest`), the run over them with a progress bar, and
the closing summary line. The decoding and the model differ: the caller passes
a `video_prediction.FileHandler`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Callable, Sequence

from absl import flags

from export import decode_pool
from sports1m_tf import cli
from tfrecord_tools import summary

FLAGS = flags.FLAGS


def define_flags(segment_help: str) -> None:
    """The flags that choose the files and how they are cut (call once, at import)."""
    flags.DEFINE_integer("max_clips", 20, "Most clips per video, or per segment (paper: 20).")
    flags.DEFINE_float("segment_seconds", 0.0, segment_help)
    flags.DEFINE_string("manifest", None,
                        "File of videos: one path a line, or the converter's CSV "
                        "(path,label[;label...]). Relative paths are from the manifest's "
                        "folder.")
    flags.DEFINE_string("labels", None,
                        "Class-name file of the --manifest (as sports1m-convert --labels); it "
                        "must list the model's classes in the model's order.")
    flags.DEFINE_integer("workers", 0,
                         "Decoding processes (0: one per core, at most one a file).")
    flags.DEFINE_integer("max_frame_pixels", 0,
                         "Most pixels (height x width) of a video's frames; a video with "
                         "larger frames is refused before it is decoded (0: the bound the "
                         "model was exported with, in its model_info.json).")


def check_flags() -> None:
    """Fails with one line on a flag of `define_flags` out of range."""
    if FLAGS.max_clips < 1:
        raise cli.UserError(f"--max_clips must be at least 1, got {FLAGS.max_clips}")
    if not math.isfinite(FLAGS.segment_seconds) or FLAGS.segment_seconds < 0:
        raise cli.UserError(f"--segment_seconds must be a finite number of seconds (or 0 for "
                            f"whole videos), got {FLAGS.segment_seconds}")
    if FLAGS.workers < 0:
        raise cli.UserError(f"--workers must be 0 (one per core) or more, got {FLAGS.workers}")
    if FLAGS.max_frame_pixels < 0:
        raise cli.UserError(f"--max_frame_pixels must be 0 (the model's bound) or more, got "
                            f"{FLAGS.max_frame_pixels}")


def frame_bounds_of(model):
    """The model's frame bounds, with --max_frame_pixels if given; --max_clips checked
    against the clips a request may hold (lowered to it when not given). None for a
    model that records no bounds."""
    bounds = getattr(model, "bounds", None)
    if bounds is None:
        return None
    if FLAGS.max_clips > bounds.max_clips and not FLAGS["max_clips"].present:
        FLAGS.max_clips = bounds.max_clips  # the default asks for more than the model takes
    if FLAGS.max_clips > bounds.max_clips:
        raise cli.UserError(f"--max_clips {FLAGS.max_clips} is over the model's bound of "
                            f"{bounds.max_clips} clips a request (set at export: "
                            "sports1m-export --max_clips)")
    if FLAGS.max_frame_pixels:
        bounds = dataclasses.replace(bounds, max_pixels=FLAGS.max_frame_pixels)
    return bounds


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
    numbered = [(n, ln.strip()) for n, ln in enumerate(fileio.read_text(path).splitlines(), 1)]
    numbered = [(n, ln) for n, ln in numbered if ln and not ln.startswith("#")]
    root = os.path.dirname(path) or "."
    if not any("," in ln or "\t" in ln for _, ln in numbered):
        if labels:
            raise cli.UserError(f"--labels {labels}: the manifest {path} has no labels "
                                "(one path a line); drop --labels")
        return _plain_list(path, numbered, root)
    try:
        parsed = manifest.read_manifest(path, "csv", labels=labels)
    except (ValueError, FileNotFoundError) as e:
        raise cli.UserError(f"--manifest {path}: {e}") from e
    truths = {e.path: list(e.label_strings) for e in parsed.entries}
    problems = [{"video": p.path or p.source, "error": f"{p.source}: {p.reason}"}
                for p in parsed.problems]
    return [e.path for e in parsed.entries], truths, parsed.classes, problems


def _plain_list(path: str, numbered: list[tuple[int, str]], root: str
                ) -> tuple[list[str], dict, None, list[dict]]:
    """`read_manifest`'s answer for a list of one path a line: relative paths are from
    `root` and must stay inside it (as the converter's manifests)."""
    from tfrecord_tools import fileio, manifest
    paths, problems = [], []
    for n, line in numbered:
        if os.path.isabs(line) or fileio.is_remote(line):
            paths.append(line)
        elif outside := manifest.climbs_out(line, root):
            problems.append({"video": line, "error": f"{path}:{n}: {outside}"})
        else:
            paths.append(os.path.join(root, line))
    return paths, {}, None, problems


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


def video_inputs(argv: Sequence[str], model_classes: Callable[[], list[str]] | None = None
                 ) -> tuple[list[str], dict[str, list[str]], list[dict]]:
    """The files to read: `argv[1:]` and the `--manifest`'s.

    Args:
      argv: the command's arguments (the program first).
      model_classes: returns the model's class names; when given, a CSV
        manifest's classes are checked against them.

    Returns:
      (paths, path → true labels, error results for manifest lines that give no video).
    """
    paths, truths, errors = list(argv[1:]), {}, []
    if FLAGS.manifest:
        listed, truths, classes, problems = read_manifest(FLAGS.manifest, FLAGS.labels)
        if classes is not None and model_classes is not None:
            check_manifest_classes(classes, model_classes(), exact=bool(FLAGS.labels),
                                   source=f"--manifest {FLAGS.manifest}")
        paths += listed
        errors = problems
    elif FLAGS.labels:
        raise cli.UserError("--labels goes with --manifest")
    if not paths and not errors:
        raise cli.UserError("give at least one video file, or --manifest=FILE")
    return paths, truths, errors


# ----------------------------------------------------------------------------
# The run over the files.

def mmss(seconds: float) -> str:
    """`mm:ss` (minutes keep counting past 59)."""
    total = int(seconds + 1e-6)
    return f"{total // 60:02d}:{total % 60:02d}"


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


def run_files(handler, paths: Sequence[str], errors: Sequence[dict],
              emit: Callable[[dict], None]) -> tuple[int, int]:
    """Decodes `paths` with `--workers` processes through `handler`, with a progress bar.

    Args:
      handler: a `video_prediction.FileHandler` (its model decides which frames
        are converted).
      paths: the video files.
      errors: results already known to have failed (manifest lines), emitted first.
      emit: called with each file's result, in the order of `paths`.

    Returns:
      (files failed, files in all); the summary line has gone to stderr.
    """
    from tqdm import tqdm

    from export.video_prediction import process_files
    bounds = frame_bounds_of(handler.model)  # may lower --max_clips to the model's bound
    options = decode_pool.DecodeOptions(max_clips=FLAGS.max_clips,
                                        segment_seconds=FLAGS.segment_seconds,
                                        frames=handler.model.frames,
                                        frame_size=handler.model.frame_size, bounds=bounds)
    workers = FLAGS.workers or os.cpu_count() or 1
    for result in errors:
        emit(result)
    failed = len(errors)
    bar = tqdm(total=len(paths), unit="video", file=sys.stderr, dynamic_ncols=True,
               disable=len(paths) < 2 and not FLAGS.segment_seconds)
    stats: dict = {}

    def at_segment(index: int, segment) -> None:
        # A long video is one step of the bar: say how far into it the model is.
        bar.set_postfix_str(f"{os.path.basename(paths[index])} {mmss(segment.end_seconds)}")

    for result in process_files(handler, paths, options, workers,
                                on_progress=lambda r: bar.update(), stats=stats,
                                on_segment=at_segment if FLAGS.segment_seconds else None):
        failed += "error" in result
        emit(result)
    bar.close()
    total = len(paths) + len(errors)
    print(summary_line(total - failed, total, stats, min(workers, max(len(paths), 1))),
          file=sys.stderr)
    if failed:
        print(f"{failed} of {total} videos failed", file=sys.stderr)
    return failed, total
