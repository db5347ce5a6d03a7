"""Video files → the clips `sports1m-predict` sends to `predict_video`, read in one pass.

Frames are read with the converter's own decoder (`tfrecord_tools.video_decoder`):
the stream is grabbed front to back (demux + decode only) and only the frames
of the chosen clips are retrieved, cropped to their centre square and resized
to 200×200 with INTER_AREA, exactly as the converter stores them (then
BGR → RGB, what the signatures take).

The resize costs about as much as decoding a frame, so a caller that knows
which frames of a clip its model reads (`frames`: slow fusion reads 10 of 16,
single frame 1) gets only those converted; the others are left black, and the
exported signatures never look at them.

Two ways to cut a video:
- `read_clips`: up to `max_clips` clips of 16 frames evenly spread over the
  whole video (the paper's 20 clips a video).
- `iter_segments`: consecutive segments of S seconds, each with up to
  `max_clips` clips evenly spread inside it, yielded as soon as the stream
  passes the segment's end. Memory is one segment's clips, whatever the
  video's length.

Frames outside the model's bounds (`export.frame_bounds`: over its pixel bound,
or a shorter side below its input) fail the video, read from the container's
header before any frame is decoded and checked again on every frame converted.

This module imports no TensorFlow: decoding worker processes import only it.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
from typing import Iterator, Sequence

import numpy as np

from export.frame_bounds import FrameBounds, frame_problem
from tfrecord_tools import schema, video_decoder

CLIP_FRAMES = schema.CLIP_FRAMES
FRAME_SIZE = schema.FRAME_SIZE
DEFAULT_FPS = video_decoder.DEFAULT_FPS


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
      clip_seconds: float64 [n, 2]: each clip's start (its first frame's time) and
        end (just after its last frame), in seconds from the start of the video.
    """
    index: int
    start_seconds: float
    end_seconds: float
    clips: np.ndarray
    frames: int
    clip_seconds: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)))


def clip_starts(num_frames: int, max_clips: int = 20, clip_frames: int = CLIP_FRAMES
                ) -> list[int]:
    """First frames of up to `max_clips` non-overlapping clips spread evenly over `num_frames`."""
    k = min(max_clips, num_frames // clip_frames)
    if k <= 0:
        return []
    return [int(s) for s in np.linspace(0, num_frames - clip_frames, k).round()]


def clip_seconds(starts: Sequence[int], fps: float, clip_frames: int = CLIP_FRAMES
                 ) -> np.ndarray:
    """float64 [n, 2]: (start, end) seconds of clips starting at frames `starts`."""
    first = np.asarray(starts, np.float64).reshape(-1, 1)
    return np.concatenate([first, first + clip_frames], axis=1) / fps


def frames_in(seconds: float, fps: float) -> int:
    """Frames in `seconds` of video at `fps`, at least 1 (a segment's or a stream window's)."""
    return max(1, round(seconds * fps))


def stored_frame(frame_bgr: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """The converter's frame (centre square, INTER_AREA to `size`), as RGB."""
    import cv2
    return cv2.cvtColor(video_decoder.stored_square(frame_bgr, size), cv2.COLOR_BGR2RGB)


def check_frame(height: int, width: int, bounds: FrameBounds | None) -> None:
    """Raises `VideoError` for frames of `height`×`width` outside `bounds` (None: no bounds)."""
    problem = frame_problem(height, width, bounds) if bounds else None
    if problem:
        raise VideoError(problem)


@contextlib.contextmanager
def _opened(path: str, threads: int, bounds: FrameBounds | None = None
            ) -> Iterator[video_decoder.OpenVideo]:
    """`video_decoder.open_video`, its failure raised as this module's `VideoError`; the
    frame size the container states is checked against `bounds` before any decoding."""
    import cv2
    try:
        with video_decoder.open_video(path, threads) as video:
            width = int(video.capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            height = int(video.capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            if width > 0 and height > 0:
                check_frame(height, width, bounds)
            yield video
    except video_decoder.VideoOpenError as e:
        raise VideoError(str(e)) from None


def probe(path: str, threads: int = 1) -> tuple[float, int]:
    """(frame rate, container frame count or 0 when unknown) of a readable video.

    Raises:
      VideoError: missing, empty, or not openable (the converter's reason).
    """
    with _opened(path, threads) as video:
        return video.fps or DEFAULT_FPS, video.claimed_frames


def frames_to_read(frames: Sequence[int] | None, clip_frames: int = CLIP_FRAMES
                   ) -> frozenset[int]:
    """The clip offsets to convert: `frames` (checked), or every offset when None."""
    if frames is None:
        return frozenset(range(clip_frames))
    wanted = frozenset(int(f) for f in frames)
    if not wanted or min(wanted) < 0 or max(wanted) >= clip_frames:
        raise ValueError(f"frames {sorted(wanted)} must be offsets in 0..{clip_frames - 1}")
    return wanted


def _read_span(cap, index: int, stop: int, starts: list[int], clip_frames: int,
               read: frozenset[int], size: int = FRAME_SIZE,
               bounds: FrameBounds | None = None) -> tuple[np.ndarray, int, bool]:
    """Grabs frames `index` .. `stop - 1`, retrieving only frames `read` of the clips at `starts`.

    Args:
      cap: an open capture positioned at frame `index`.
      starts: sorted, non-overlapping clip starts inside [index, stop).
      read: the offsets within a clip to convert; the others stay zero.
      size: Side of the stored frames.
      bounds: each retrieved frame's size must be within them (None: any size).

    Returns:
      (uint8 [completed clips, clip_frames, size, size, 3] RGB, the next frame index,
      whether the stream ended before `stop`).
    """
    shape = (len(starts), clip_frames, size, size, 3)
    out = np.empty(shape, np.uint8) if len(read) == clip_frames else np.zeros(shape, np.uint8)
    wanted = collections.deque(starts)
    done = 0
    while index < stop:
        if not cap.grab():
            return out[:done], index, True
        offset = index - wanted[0] if wanted else -1
        if offset in read:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                return out[:done], index, True
            check_frame(frame.shape[0], frame.shape[1], bounds)
            out[done, offset] = stored_frame(frame, size)
        if offset == clip_frames - 1:
            wanted.popleft()
            done += 1
        index += 1
    return out[:done], index, False


def _read_clips_at(video: video_decoder.OpenVideo, num_frames: int, max_clips: int,
                   clip_frames: int, read: frozenset[int], size: int,
                   bounds: FrameBounds | None) -> tuple[Segment | None, int]:
    """(the clips spread over `num_frames` as the whole video's `Segment`, or None when
    the stream ends first; the frames decoded)."""
    if num_frames == 0:
        raise VideoError("no frame decodes (unsupported codec or corrupt stream)")
    starts = clip_starts(num_frames, max_clips, clip_frames)
    if not starts:
        raise VideoError(f"too short: {num_frames} frames, a clip needs {clip_frames}")
    clips, decoded, _ = _read_span(video.capture, 0, starts[-1] + clip_frames, starts,
                                   clip_frames, read, size, bounds)
    if len(clips) < len(starts):
        return None, decoded
    fps = video.fps or DEFAULT_FPS
    return Segment(0, 0.0, 0.0, clips, 0, clip_seconds(starts, fps, clip_frames)), decoded


def read_clips(path: str, max_clips: int = 20, clip_frames: int = CLIP_FRAMES,
               threads: int = 1, frames: Sequence[int] | None = None,
               size: int = FRAME_SIZE, bounds: FrameBounds | None = None) -> np.ndarray:
    """Up to `max_clips` evenly spaced clips of a video, as the converter stores frames
    (see `read_video`): uint8 [n, clip_frames, size, size, 3] RGB, 1 <= n <= max_clips."""
    return read_video(path, max_clips, clip_frames, threads, frames, size, bounds).clips


def read_video(path: str, max_clips: int = 20, clip_frames: int = CLIP_FRAMES,
               threads: int = 1, frames: Sequence[int] | None = None,
               size: int = FRAME_SIZE, bounds: FrameBounds | None = None) -> Segment:
    """Up to `max_clips` evenly spaced clips of a video, as the converter stores frames.

    Args:
      path: A video file OpenCV can decode.
      threads: FFmpeg decoding threads (0: one per core).
      frames: offsets within a clip to convert (the model's frames); the others
        are zero. Every frame if None.
      size: Side of the stored frames (the converter's: 200).
      bounds: the model's frame bounds (None: any frame size).

    Returns:
      The whole video as one `Segment`: its `clips` uint8 [n, clip_frames, size,
      size, 3] RGB, 1 <= n <= max_clips, and their times.

    Raises:
      VideoError: the file is missing, empty, unreadable, shorter than one clip, or
        its frames are outside `bounds`.
    """
    read = frames_to_read(frames, clip_frames)
    with _opened(path, threads, bounds) as video:
        num_frames = video.claimed_frames
        if num_frames:  # one pass when the container's count is right (the common case)
            whole, decoded = _read_clips_at(video, num_frames, max_clips, clip_frames, read,
                                            size, bounds)
            if whole is not None:
                return whole
            num_frames = decoded  # fewer frames decode than claimed: spread over those
    if not num_frames:
        num_frames = video_decoder.count_frames(path, threads)
    for _ in range(2):
        with _opened(path, threads, bounds) as video:
            whole, decoded = _read_clips_at(video, num_frames, max_clips, clip_frames, read,
                                            size, bounds)
        if whole is not None:
            return whole
        num_frames = decoded
    raise VideoError(f"frames stop decoding before frame {num_frames} on a second pass "
                     "(corrupt stream)")


def iter_segments(path: str, segment_seconds: float, max_clips: int = 20,
                  clip_frames: int = CLIP_FRAMES, threads: int = 1,
                  frames: Sequence[int] | None = None,
                  size: int = FRAME_SIZE, bounds: FrameBounds | None = None
                  ) -> Iterator[Segment]:
    """The clips of each consecutive `segment_seconds` of a video, in one streaming pass.

    A segment is round(segment_seconds × fps) frames; its clips are spread
    evenly inside it (the last segment's length comes from the container's frame
    count when it has one). Only the current segment's clips are held.

    Args:
      segment_seconds: Length of a segment, > 0.
      max_clips: Most clips per segment.
      The others: as `read_video`.

    Yields:
      `Segment`s in time order; one with no clips when a stretch is shorter than a clip.

    Raises:
      VideoError: the file is missing, empty, unreadable, no frame decodes, or its
        frames are outside `bounds`.
    """
    read = frames_to_read(frames, clip_frames)
    with _opened(path, threads, bounds) as video:
        yield from _segments(video.capture, video.fps or DEFAULT_FPS, video.claimed_frames,
                             segment_seconds, max_clips, clip_frames, read, size, bounds)


def _segments(cap, fps: float, claimed: int, segment_seconds: float, max_clips: int,
              clip_frames: int, read: frozenset[int], size: int,
              bounds: FrameBounds | None) -> Iterator[Segment]:
    length = frames_in(segment_seconds, fps)
    index, k = 0, 0
    while True:
        first = k * length
        # The container's count trims the last segment so that its clips fit;
        # a count that is too low (or none) leaves full-length segments.
        span = min(length, claimed - first) if claimed > first else length
        starts = [first + s for s in clip_starts(span, max_clips, clip_frames)]
        clips, index, ended = _read_span(cap, index, first + span, starts, clip_frames,
                                         read, size, bounds)
        if index > first:
            yield Segment(k, first / fps, index / fps, clips, index - first,
                          clip_seconds(starts[:len(clips)], fps, clip_frames))
        elif k == 0:
            raise VideoError("no frame decodes (unsupported codec or corrupt stream)")
        if ended:
            return
        k += 1
