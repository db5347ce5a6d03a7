"""Video files → the clips `sports1m-predict` sends to `predict_video`, read in one pass.

Frames are read with the converter's own decoder (`tfrecord_tools.video_clips`):
the stream is grabbed front to back (demux + decode only) and only the frames
of the chosen clips are retrieved, cropped to their centre square and resized
to 200×200 with INTER_AREA, exactly as the converter stores them (then
BGR → RGB, what the signatures take).

Two ways to cut a video:
- `read_clips`: up to `max_clips` clips of 16 frames evenly spread over the
  whole video (the paper's 20 clips a video).
- `iter_segments`: consecutive segments of S seconds, each with up to
  `max_clips` clips evenly spread inside it, yielded as soon as the stream
  passes the segment's end. Memory is one segment's clips, whatever the
  video's length.

This module imports no TensorFlow: decoding worker processes import only it.
"""
from __future__ import annotations

import collections
import dataclasses
import math
from typing import Iterator

import numpy as np

from tfrecord_tools import fileio, schema, video_clips

CLIP_FRAMES = schema.CLIP_FRAMES
FRAME_SIZE = schema.FRAME_SIZE
# Assumed when a container has no frame rate (the converter assumes the same).
DEFAULT_FPS = 25.0


class VideoError(Exception):
    """A video that gives no clip; the message says why."""


@dataclasses.dataclass
class Segment:
    """The clips of one stretch of a video.

    Attributes:
      index: int. 0 for the first segment (or for the whole video).
      start_seconds: float. Time of the segment's first frame.
      end_seconds: float. Time just after its last frame.
      clips: uint8 [n, 16, 200, 200, 3] RGB; n may be 0 (a stretch shorter than a clip).
      frames: int. Frames of the stream in the segment.
    """
    index: int
    start_seconds: float
    end_seconds: float
    clips: np.ndarray
    frames: int


def clip_starts(num_frames: int, max_clips: int = 20, clip_frames: int = CLIP_FRAMES
                ) -> list[int]:
    """First frames of up to `max_clips` non-overlapping clips spread evenly over `num_frames`."""
    k = min(max_clips, num_frames // clip_frames)
    if k <= 0:
        return []
    return [int(s) for s in np.linspace(0, num_frames - clip_frames, k).round()]


def stored_frame(frame_bgr: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """The converter's frame (centre square, INTER_AREA to `size`), as RGB."""
    import cv2
    return cv2.cvtColor(video_clips._square_resize(frame_bgr, size), cv2.COLOR_BGR2RGB)


def probe(path: str, threads: int = 1) -> tuple[float, int]:
    """(frame rate, container frame count or 0 when unknown) of a readable video.

    Raises:
      VideoError: missing, empty, or not openable (the converter's reason).
    """
    import cv2
    if not fileio.exists(path):
        raise VideoError("no such file")
    if fileio.size(path) == 0:
        raise VideoError("empty file (0 bytes)")
    cap = video_clips._open(path, threads)
    try:
        if not cap.isOpened():
            raise VideoError(video_clips._open_failure(path))
        fps = cap.get(cv2.CAP_PROP_FPS)
        return (fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS,
                video_clips._frame_count(cap))
    finally:
        cap.release()


def _read_span(cap, index: int, stop: int, starts: list[int], clip_frames: int
               ) -> tuple[np.ndarray, int, bool]:
    """Grabs frames `index` .. `stop - 1`, retrieving only those of the clips at `starts`.

    Args:
      cap: an open capture positioned at frame `index`.
      starts: sorted, non-overlapping clip starts inside [index, stop).

    Returns:
      (uint8 [completed clips, clip_frames, 200, 200, 3] RGB, the next frame index,
      whether the stream ended before `stop`).
    """
    out = np.empty((len(starts), clip_frames, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    wanted = collections.deque(starts)
    done = 0
    while index < stop:
        if not cap.grab():
            return out[:done], index, True
        offset = index - wanted[0] if wanted else -1
        if 0 <= offset < clip_frames:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                return out[:done], index, True
            out[done, offset] = stored_frame(frame)
            if offset == clip_frames - 1:
                wanted.popleft()
                done += 1
        index += 1
    return out[:done], index, False


def _count_frames(path: str, threads: int) -> int:
    cap = video_clips._open(path, threads)
    try:
        return _read_span(cap, 0, 1 << 62, [], CLIP_FRAMES)[1]
    finally:
        cap.release()


def read_clips(path: str, max_clips: int = 20, clip_frames: int = CLIP_FRAMES,
               threads: int = 1) -> np.ndarray:
    """Up to `max_clips` evenly spaced clips of a video, as the converter stores frames.

    Args:
      path: str. A video file OpenCV can decode.
      max_clips: int. Most clips.
      clip_frames: int. Frames per clip.
      threads: int. FFmpeg decoding threads (0: one per core).

    Returns:
      uint8 [n, clip_frames, 200, 200, 3] RGB, 1 <= n <= max_clips.

    Raises:
      VideoError: the file is missing, empty, unreadable, or shorter than one clip.
    """
    _, num_frames = probe(path, threads)
    num_frames = num_frames or _count_frames(path, threads)
    for _ in range(2):
        if num_frames == 0:
            raise VideoError("no frame decodes (unsupported codec or corrupt stream)")
        starts = clip_starts(num_frames, max_clips, clip_frames)
        if not starts:
            raise VideoError(f"too short: {num_frames} frames, a clip needs {clip_frames}")
        cap = video_clips._open(path, threads)
        try:
            clips, decoded, _ = _read_span(cap, 0, starts[-1] + clip_frames, starts,
                                           clip_frames)
        finally:
            cap.release()
        if len(clips) == len(starts):
            return clips
        # Fewer frames decode than the container claims: spread the clips over those.
        num_frames = decoded
    raise VideoError(f"frames stop decoding before frame {num_frames} on a second pass "
                     "(corrupt stream)")


def iter_segments(path: str, segment_seconds: float, max_clips: int = 20,
                  clip_frames: int = CLIP_FRAMES, threads: int = 1) -> Iterator[Segment]:
    """The clips of each consecutive `segment_seconds` of a video, in one streaming pass.

    A segment is round(segment_seconds × fps) frames; its clips are spread
    evenly inside it (the last segment's length comes from the container's frame
    count when it has one). Only the current segment's clips are held.

    Args:
      path: str. A video file.
      segment_seconds: float. Length of a segment, > 0.
      max_clips: int. Most clips per segment.
      clip_frames: int. Frames per clip.
      threads: int. FFmpeg decoding threads (0: one per core).

    Yields:
      `Segment`s in time order; one with no clips when a stretch is shorter than a clip.

    Raises:
      VideoError: the file is missing, empty, unreadable, or no frame decodes.
    """
    fps, claimed = probe(path, threads)
    length = max(1, round(segment_seconds * fps))
    cap = video_clips._open(path, threads)
    index, k = 0, 0
    try:
        while True:
            first = k * length
            # The container's count trims the last segment so that its clips fit;
            # a count that is too low (or none) leaves full-length segments.
            span = min(length, claimed - first) if claimed > first else length
            starts = [first + s for s in clip_starts(span, max_clips, clip_frames)]
            clips, index, ended = _read_span(cap, index, first + span, starts, clip_frames)
            if index > first:
                yield Segment(k, first / fps, index / fps, clips, index - first)
            elif k == 0:
                raise VideoError("no frame decodes (unsupported codec or corrupt stream)")
            if ended:
                return
            k += 1
    finally:
        cap.release()
