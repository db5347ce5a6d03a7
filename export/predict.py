"""sports1m-predict: the top classes of whole videos from an exported SavedModel.

  sports1m-predict --saved_model=serving/slow_fusion video1.mp4 video2.avi
  sports1m-predict --saved_model=serving/slow_fusion/3 --json video.mp4 > predictions.json

Each video is decoded once with OpenCV, front to back; up to `--max_clips` clips
of 16 consecutive frames, evenly spaced over the video, are kept as the converter
stores frames (centre square, resized to 200×200), and the SavedModel's
`predict_video` signature averages the 4 views of every clip into the video's
prediction (as evaluation does). `--saved_model` is a version folder or a model folder
(its highest version is used). A video that cannot be read is reported and
skipped; the exit status is 1 if any video failed.
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
from absl import app, flags

from sports1m_tf import cli
from tfrecord_tools import schema

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "SavedModel version folder, or a model folder.")
flags.DEFINE_integer("max_clips", 20, "Most clips per video (paper: 20).")
flags.DEFINE_boolean("json", False, "Print one JSON document instead of text.")
flags.mark_flag_as_required("saved_model")

CLIP_FRAMES = schema.CLIP_FRAMES
FRAME_SIZE = schema.FRAME_SIZE


class VideoError(Exception):
    """A video that gives no clip; the message says why."""


def resolve_saved_model(path: str) -> str:
    """`path` if it holds a saved_model.pb, else its highest integer version folder."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    found = sorted((int(d) for d in os.listdir(path) if d.isdigit()
                    and os.path.isfile(os.path.join(path, d, "saved_model.pb")))
                   if os.path.isdir(path) else [])
    if not found:
        raise app.UsageError(f"--saved_model {path}: no saved_model.pb there nor in a "
                             "numbered version folder under it")
    return os.path.join(path, str(found[-1]))


def clip_starts(num_frames: int, max_clips: int = 20, clip_frames: int = CLIP_FRAMES
                ) -> list[int]:
    """First frames of up to `max_clips` non-overlapping clips spread evenly over a video."""
    k = min(max_clips, num_frames // clip_frames)
    if k <= 0:
        return []
    return [int(s) for s in np.linspace(0, num_frames - clip_frames, k).round()]


def stored_frame(frame_bgr: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """The converter's frame: centre square, resized to `size` (INTER_AREA), as RGB."""
    import cv2
    h, w = frame_bgr.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frame_bgr[top:top + side, left:left + side]
    if side != size:
        square = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(square, cv2.COLOR_BGR2RGB)


def _frame_count(path: str) -> int:
    """The container's frame count, or a counting pass when it has none."""
    import cv2
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise VideoError("cannot open: not a video, unsupported codec, or corrupt container")
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if math.isfinite(n) and n > 0:
            return int(n)
        count = 0
        while cap.grab():
            count += 1
        return count
    finally:
        cap.release()


def _grab_clips(path: str, starts: list[int], clip_frames: int) -> tuple[np.ndarray, int]:
    """Grabs every frame in order, converting only those of the clips at `starts`.

    Returns:
      (uint8 [completed clips, clip_frames, 200, 200, 3] RGB, frames grabbed).
    """
    import cv2
    wanted = {s + i: (c, i) for c, s in enumerate(starts) for i in range(clip_frames)}
    out = np.zeros((len(starts), clip_frames, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    done = np.zeros(len(starts), int)
    last = max(wanted) if wanted else -1
    cap = cv2.VideoCapture(path)
    index = 0
    try:
        # Sequential grab() beats seeking to each clip (2.6×, notes/stack-facts.md).
        while index <= last and cap.grab():
            if index in wanted:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    break
                c, i = wanted[index]
                out[c, i] = stored_frame(frame)
                done[c] += 1
            index += 1
    finally:
        cap.release()
    return out[done == clip_frames], index


def read_clips(path: str, max_clips: int = 20, clip_frames: int = CLIP_FRAMES) -> np.ndarray:
    """Up to `max_clips` evenly spaced clips of a video, as the converter stores frames.

    Args:
      path: str. A video file OpenCV can decode.
      max_clips: int. Most clips.
      clip_frames: int. Frames per clip.

    Returns:
      uint8 [n, clip_frames, 200, 200, 3] RGB, 1 <= n <= max_clips.

    Raises:
      VideoError: the file is missing, empty, unreadable, or shorter than one clip.
    """
    if not os.path.isfile(path):
        raise VideoError("no such file")
    if os.path.getsize(path) == 0:
        raise VideoError("empty file (0 bytes)")
    num_frames = _frame_count(path)
    for _ in range(2):
        if num_frames == 0:
            raise VideoError("no frame decodes (unsupported codec or corrupt stream)")
        starts = clip_starts(num_frames, max_clips, clip_frames)
        if not starts:
            raise VideoError(f"too short: {num_frames} frames, a clip needs {clip_frames}")
        clips, decoded = _grab_clips(path, starts, clip_frames)
        if len(clips) == len(starts):
            return clips
        # Fewer frames decode than the container claims: spread the clips over those.
        num_frames = decoded
    raise VideoError(f"frames stop decoding before frame {num_frames} on a second pass "
                     "(corrupt stream)")


def predict_videos(saved_model: str, paths: list[str], max_clips: int = 20) -> list[dict]:
    """Video-level predictions; a failed video gives `{"video": path, "error": why}`.

    Returns:
      One dict per path: `video`, `clips`, `top_k` (list of `{id, name, probability}`,
      best first), or `video` and `error`.
    """
    import tensorflow as tf
    predict_video = tf.saved_model.load(resolve_saved_model(saved_model)) \
        .signatures["predict_video"]
    results = []
    for path in paths:
        try:
            clips = read_clips(path, max_clips)
        except VideoError as e:
            results.append({"video": path, "error": str(e)})
            continue
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
            results.append({"video": path, "error": f"{type(e).__name__}: {e}"})
            continue
        out = predict_video(clips=tf.constant(clips))
        ids, names, scores = (out[k].numpy()[0] for k in ("top_k_ids", "top_k_names",
                                                          "top_k_scores"))
        results.append({"video": path, "clips": int(len(clips)), "top_k": [
            {"id": int(i), "name": n.decode("utf-8"), "probability": float(s)}
            for i, n, s in zip(ids, names, scores)]})
    return results


def format_text(result: dict) -> str:
    """Human-readable lines for one video's result."""
    if "error" in result:
        return f"{result['video']}: ERROR: {result['error']}"
    lines = [f"{result['video']} ({result['clips']} clips)"]
    lines += [f"  {rank}. {p['probability']:.4f}  {p['name']}"
              for rank, p in enumerate(result["top_k"], start=1)]
    return "\n".join(lines)


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give at least one video file")
    if FLAGS.max_clips < 1:
        raise app.UsageError(f"--max_clips must be at least 1, got {FLAGS.max_clips}")
    results = predict_videos(FLAGS.saved_model, paths, FLAGS.max_clips)
    if FLAGS.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(format_text(result), file=sys.stderr if "error" in result else sys.stdout)
    failed = [r["video"] for r in results if "error" in r]
    if failed:
        print(f"{len(failed)} of {len(paths)} videos failed", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    cli.entry(main)()


if __name__ == "__main__":
    run()
