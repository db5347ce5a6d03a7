"""Where a live stream's labelled windows fall, and which of their frames the model reads.

Windows are placed in frames of the stream, not in wall time: window k holds
frames [kE, kE + W) after the point where labelling began (W = window, E = step,
each `video_input.frames_in` of its seconds at the stream's frame rate). A
window's clips are `video_input.clip_starts` inside it and only the model's
frames of each clip are read (`video_input.frames_to_read`); so with a window as
long as its step, window k is segment k of `sports1m-predict --segment_seconds`,
clip for clip. The schedule is known in advance, so a reader converts only the
frames some window reads.

No TensorFlow, no OpenCV: plain arithmetic on frame indices.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from export import video_input
from sports1m_tf import cli
from sports1m_tf.settings import (NON_NEGATIVE, POSITIVE, check_settings, define_fields,
                                  setting)


_GROUP = "stream"


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    """How a stream is labelled: the `sports1m-predict --stream` flags, declared from
    these fields (`define_stream_flags`). Times are seconds of stream."""
    every_seconds: float = setting(1.0, "With --stream: seconds of stream between labels.",
                                   _GROUP, bound=POSITIVE)
    window_seconds: float = setting(
        2.0, "With --stream: each label covers the last this many seconds of stream.", _GROUP,
        bound=POSITIVE)
    max_clips: int = setting(20, "Most clips in a window.", _GROUP, bound=POSITIVE)
    smooth: int = setting(
        1, "With --stream: average each label's probabilities with the previous windows', "
        "this many windows in all.", _GROUP, bound=POSITIVE)
    max_seconds: float = setting(
        0.0, "With --stream: stop after this many seconds of stream (0: until it ends).",
        _GROUP, bound=NON_NEGATIVE)
    reconnect_seconds: float = setting(
        10.0, "With --stream: how long the source may send nothing, at the start or after "
        "it stops, before the run ends.", _GROUP, bound=POSITIVE)

    def check(self) -> None:
        """Raises `settings.SettingError` (a `cli.UserError`) naming the first flag out of range."""
        check_settings(self)


def define_stream_flags() -> None:
    """Declares the stream flags but `--max_clips` (the command's own, for files too)."""
    define_fields([f for f in dataclasses.fields(StreamOptions) if f.name != "max_clips"])


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """Where windows and their clips fall, in frames from where labelling began.

    Attributes:
      length: int. Frames in a window (W).
      step: int. Frames between window starts (E).
      starts: first frames of the window's clips, from its start.
      read: offsets within a clip that the model reads.
      needed: frames of a window that its clips read, from its start.
      size: the stored frame size the model takes (200, or a TFLite file's own).
    """
    length: int
    step: int
    starts: tuple[int, ...]
    read: frozenset[int]
    needed: frozenset[int]
    size: int = video_input.FRAME_SIZE

    @classmethod
    def make(cls, fps: float, options: StreamOptions, frames: Sequence[int] | None,
             size: int = video_input.FRAME_SIZE) -> "WindowPlan":
        """The plan at a stream's frame rate.

        Raises:
          cli.UserError: a window shorter than one clip.
        """
        length = video_input.frames_in(options.window_seconds, fps)
        starts = tuple(video_input.clip_starts(length, options.max_clips))
        if not starts:
            need = video_input.CLIP_FRAMES / fps
            raise cli.UserError(f"--window_seconds={options.window_seconds} is {length} frames "
                                f"at {fps:g} fps; a clip needs {video_input.CLIP_FRAMES} "
                                f"(give at least {math.ceil(need * 100) / 100})")
        read = video_input.frames_to_read(frames)
        return cls(length, video_input.frames_in(options.every_seconds, fps), starts, read,
                   frozenset(s + f for s in starts for f in read), size)

    def windows_holding(self, frame: int) -> range:
        """Indices of the windows that hold `frame` (frames from where labelling began)."""
        first = max(0, -(-(frame - self.length + 1) // self.step))
        return range(first, frame // self.step + 1)

    def needs(self, frame: int) -> bool:
        """Whether some window's clips read `frame`."""
        return any(frame - k * self.step in self.needed for k in self.windows_holding(frame))

    def completed_by(self, frame: int) -> int | None:
        """The window whose last frame is `frame`, if any."""
        end = frame + 1 - self.length
        return end // self.step if end >= 0 and end % self.step == 0 else None

    def clips(self, frames: dict[int, np.ndarray]) -> np.ndarray:
        """A window's clips from its converted frames (offset in the window → RGB frame):
        uint8 [clips, 16, size, size, 3], the frames the model ignores black."""
        out = np.zeros((len(self.starts), video_input.CLIP_FRAMES, self.size, self.size, 3),
                       np.uint8)
        for c, start in enumerate(self.starts):
            for f in self.read:
                if (frame := frames.get(start + f)) is not None:
                    out[c, f] = frame
        return out

    def dropped(self, previous: int | None, last: int, *, classified: bool) -> int:
        """Frames no classified window holds, from window `previous` (the last one
        classified; None: none yet) to window `last`: the windows between them were
        skipped, and `last` too unless `classified`."""
        skipped = last - (-1 if previous is None else previous) - classified
        if skipped <= 0:
            return 0
        if self.step > self.length:   # windows apart: each skipped window is all lost
            return skipped * self.length
        # Touching or overlapping windows cover one stretch: what lies between the
        # classified windows' frames is lost.
        lost_from = 0 if previous is None else previous * self.step + self.length
        lost_to = last * self.step + (0 if classified else self.length)
        return max(0, lost_to - lost_from)


@dataclasses.dataclass
class Window:
    """A completed window, handed from the reader to the classifier.

    Attributes:
      run: int. Which run of the stream (0; one more after each reconnection).
      index: int. Window index within the run.
      end_frame: int. Frames received from the stream up to the window's end.
      frames: offset in the window → converted RGB frame (the frames its clips read).
      arrival: float. `time.monotonic()` when its last frame arrived.
    """
    run: int
    index: int
    end_frame: int
    frames: dict[int, np.ndarray]
    arrival: float


def clock(seconds: float) -> str:
    """`mm:ss.s` (minutes keep counting past 59)."""
    tenths = int(round(seconds * 10))
    return f"{tenths // 600:02d}:{tenths // 10 % 60:02d}.{tenths % 10}"
