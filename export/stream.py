"""Live streams → rolling labels: a camera, an RTSP/HTTP/UDP/TCP URL, or a file played in real time.

Two threads. The reader (`_Reader`) takes frames as they arrive, converts only
the frames some window will read, and hands each completed window to the
classifier through a one-window mailbox: a window the classifier has not taken
when the next one completes is replaced (skipped), so a slow model never
stalls the reader and nothing queues without bound. The classifier (the
caller's thread, `run_stream`) sends each window's clips to the model and
reports a label.

Windows are placed in frames of the stream, not in wall time: window k holds
frames [kE, kE + W) after the point where labelling began (W = window, E = step,
each `video_input.frames_in` of its seconds at the stream's frame rate). A
window's clips are `video_input.clip_starts` inside it and only the model's
frames of each clip are converted (`video_input.stored_frame`, the converter's
frames); so with a window as long as its step, window k is segment k of
`sports1m-predict --segment_seconds`, clip for clip. Because the schedule is
known in advance, the reader converts only the frames some window reads.

Memory holds the frames of one window being filled, one in the mailbox and one
being classified, whatever the stream's length.

The model is any object with `VideoModel`'s interface (`ClipModel`): the
SavedModel's `predict_video`, or another runtime that averages the same views.
This module imports no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
from collections import deque
from typing import Callable, Protocol, Sequence

import numpy as np

from export import video_input
from sports1m_tf import cli

# Schemes handed to OpenCV's FFmpeg backend as they are.
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "rtp", "srt")
# A reported frame rate outside this range is a container's clock, not a frame rate
# (some RTSP servers report 90000).
PLAUSIBLE_FPS = (1.0, 240.0)
# Opening attempts that fail at once (connection refused) are repeated this often.
RETRY_SECONDS = 0.5


class ClipModel(Protocol):
    """What `run_stream` needs of a model (`video_prediction.VideoModel` has it).

    Attributes:
      frames: offsets within a 16-frame clip the model reads; None for all.
    """
    frames: tuple[int, ...] | None

    def __call__(self, clips: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """(probabilities [C], top-k dicts) of clips uint8 [n, 16, 200, 200, 3] RGB,
        averaged over their views as `predict_video` averages them."""

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[dict]:
        """The top-k dicts of a probability vector."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where frames come from.

    Attributes:
      spec: str. As the user gave it (named in every message).
      target: int (a camera index) or str (a URL or a file path) for OpenCV.
      live: bool. Frames arrive at their own pace and a stopped stream is
        reopened; False: a file (or a whole video behind a URL) read at its
        frame rate, which ends at its end.
    """
    spec: str
    target: int | str
    live: bool


def parse_source(spec: str, realtime: bool = False) -> Source:
    """The `Source` of a `--stream` value: a camera index, a URL, or a file (with `realtime`).

    Raises:
      cli.UserError: an unknown URL scheme, a camera with `realtime`, a file
        without it, or a file that is not a readable video.
    """
    if spec.isdigit():
        if realtime:
            raise cli.UserError(f"--stream {spec}: a camera plays at its own pace; drop --realtime")
        return Source(spec, int(spec), live=True)
    if "://" in spec:
        scheme = spec.split("://", 1)[0].lower()
        if scheme not in URL_SCHEMES:
            raise cli.UserError(f"--stream {spec}: unknown scheme {scheme}://; give a camera "
                                f"index, a file, or a URL of {', '.join(URL_SCHEMES)}")
        return Source(spec, spec, live=not realtime)
    if not realtime:
        raise cli.UserError(f"--stream {spec}: a file plays as a stream only with --realtime "
                            "(at its own frame rate); to label it as fast as it decodes, "
                            "give it without --stream and with --segment_seconds")
    try:
        video_input.probe(spec)
    except video_input.VideoError as e:
        raise cli.UserError(f"--stream {spec}: {e}") from e
    return Source(spec, spec, live=False)


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    """How a stream is labelled (the `sports1m-predict --stream` flags).

    Attributes:
      every_seconds: float. Stream time between labels.
      window_seconds: float. Stream time each label covers (the last this much).
      max_clips: int. Most clips in a window.
      smooth: int. Each label is the mean of the last this many windows' probabilities.
      max_seconds: float. Stop after this much stream (0: run until it ends).
      reconnect_seconds: float. How long a source may send nothing (at the start,
        or after it stops) before the run ends.
    """
    every_seconds: float = 1.0
    window_seconds: float = 2.0
    max_clips: int = 20
    smooth: int = 1
    max_seconds: float = 0.0
    reconnect_seconds: float = 10.0

    def check(self) -> None:
        """Raises `cli.UserError` naming the first flag out of range."""
        for name in ("every_seconds", "window_seconds", "reconnect_seconds"):
            if not getattr(self, name) > 0:
                raise cli.UserError(f"--{name} must be more than 0, got {getattr(self, name)}")
        for name in ("max_clips", "smooth"):
            if getattr(self, name) < 1:
                raise cli.UserError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.max_seconds < 0:
            raise cli.UserError(f"--max_seconds must be 0 (no limit) or more, "
                                f"got {self.max_seconds}")


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """Where windows and their clips fall, in frames from where labelling began.

    Attributes:
      length: int. Frames in a window (W).
      step: int. Frames between window starts (E).
      starts: first frames of the window's clips, from its start.
      read: offsets within a clip that the model reads.
      needed: frames of a window that its clips read, from its start.
    """
    length: int
    step: int
    starts: tuple[int, ...]
    read: frozenset[int]
    needed: frozenset[int]

    @classmethod
    def make(cls, fps: float, options: StreamOptions, frames: Sequence[int] | None
             ) -> "WindowPlan":
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
                   frozenset(s + f for s in starts for f in read))

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
        uint8 [clips, 16, 200, 200, 3], the frames the model ignores black."""
        out = np.zeros((len(self.starts), video_input.CLIP_FRAMES, video_input.FRAME_SIZE,
                        video_input.FRAME_SIZE, 3), np.uint8)
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


@dataclasses.dataclass
class Summary:
    """What a run did. Latencies in seconds; frames counted from the stream's opening."""
    source: str
    fps: float = 0.0
    frames: int = 0
    labels: int = 0
    dropped: int = 0
    reconnections: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    ended: str = ""
    interrupted: bool = False

    @property
    def mean_latency(self) -> float:
        return self.latency_sum / self.labels if self.labels else math.nan

    def text(self) -> str:
        """Two lines: how the stream ended, then labels, frames dropped and latency."""
        latency = (f"latency mean {self.mean_latency:.3f} s, max {self.latency_max:.3f} s"
                   if self.labels else "no latency (no label)")
        seconds = self.frames / self.fps if self.fps else 0.0
        again = f", {self.reconnections} reconnection(s)" if self.reconnections else ""
        return (f"{self.ended}\n{self.labels} labels over {clock(seconds)} of stream "
                f"({self.frames} frames at {self.fps:g} fps{again}); {self.dropped} frames "
                f"dropped; {latency}")


def clock(seconds: float) -> str:
    """`mm:ss.s` (minutes keep counting past 59)."""
    tenths = int(round(seconds * 10))
    return f"{tenths // 600:02d}:{tenths // 10 % 60:02d}.{tenths % 10}"


def format_label(label: dict) -> str:
    """One text line of a label: position, the top 3 classes and the latency."""
    top = ", ".join(f"{p['name']} {p['probability']:.2f}" for p in label["top_k"][:3])
    return f"{clock(label['stream_seconds'])}  {top}  ({label['latency_seconds']:.2f} s)"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# The reader thread.

def open_capture(source: Source, timeout_seconds: float, read_timeout_seconds: float):
    """An OpenCV capture of `source`; check `isOpened()`.

    URLs and files go to the FFmpeg backend with both timeouts (so that a silent
    source fails instead of blocking); a camera index to the platform's backend.
    """
    import cv2
    if isinstance(source.target, int):
        return cv2.VideoCapture(source.target)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(timeout_seconds * 1000)),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, int(read_timeout_seconds * 1000)),
              cv2.CAP_PROP_N_THREADS, 1]
    return cv2.VideoCapture(source.target, cv2.CAP_FFMPEG, params)


class _Reader(threading.Thread):
    """Opens the source, then (once `begin` is called) reads it and fills windows.

    Before `begin`, a live source is read and its frames discarded, so that
    labelling starts at the live edge rather than behind a backlog; a file
    waits. Results for the classifier: `take()`; at the end `finished` is set,
    with `ended` (why) or `failure` (the source never sent a frame).
    """

    def __init__(self, source: Source, options: StreamOptions,
                 frames: Sequence[int] | None, on_event: Callable[[str], None]):
        super().__init__(name="stream-reader", daemon=True)
        self.source, self.options, self.model_frames = source, options, frames
        self.on_event = on_event
        # A stopped stream is noticed after this long without a frame; the rest of
        # --reconnect_seconds goes to reopening it.
        self.read_timeout = min(max(options.reconnect_seconds / 2, 0.5), 5.0)
        self.opened = threading.Event()
        self.plan: WindowPlan | None = None
        self.fps = 0.0
        self.frames = 0            # frames received since the source opened
        self.run_index = 0         # reconnections so far
        self.last_published: dict[int, int] = {}   # run → index of its last window
        self.ended = ""
        self.failure = ""
        self.finished = False
        self._cap = None
        self._last_arrival = 0.0
        self._begun = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Condition()
        self._mailbox: Window | None = None

    # -- the classifier's side --------------------------------------------------

    def begin(self) -> None:
        self._begun.set()

    def stop(self) -> None:
        self._stopping.set()
        self._begun.set()

    def take(self, timeout: float) -> Window | None:
        """The window in the mailbox (emptying it), waiting up to `timeout` s; None if none."""
        with self._lock:
            if self._mailbox is None and not self.finished:
                self._lock.wait(timeout)
            window, self._mailbox = self._mailbox, None
            return window

    # -- the thread ---------------------------------------------------------------

    def run(self) -> None:
        try:
            self._read()
        except cli.UserError as e:
            self.failure = str(e)
        except Exception as e:  # noqa: BLE001 - reported to the classifier, not lost in a thread
            self.failure = f"--stream {self.source.spec}: {type(e).__name__}: {e}"
        finally:
            if self._cap is not None:
                self._cap.release()
            with self._lock:
                self.finished = True
                self._lock.notify_all()
            self.opened.set()

    def _read(self) -> None:
        self._last_arrival = time.monotonic()
        self._cap = self._open_until(self._last_arrival + self.options.reconnect_seconds)
        if self._cap is None:
            self.failure = (f"--stream {self.source.spec}: could not be opened within "
                            f"{self.options.reconnect_seconds:g} s (nothing sending there, "
                            "or not a stream OpenCV's FFmpeg can read)")
            return
        self.fps = self._frame_rate()
        self.plan = WindowPlan.make(self.fps, self.options, self.model_frames)
        self.opened.set()
        while not self._begun.is_set():
            # A live source keeps sending while the model loads: stay at its edge.
            if not self.source.live:
                self._begun.wait()
            elif not self._next_frame():
                return
        if not self._stopping.is_set():
            self._fill_windows()

    def _frame_rate(self) -> float:
        fps = video_input.frame_rate(self._cap)
        if not PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1]:
            self.on_event(f"--stream {self.source.spec}: reports {fps:g} frames per second; "
                          f"assuming {video_input.DEFAULT_FPS:g}")
            return video_input.DEFAULT_FPS
        return fps

    def _fill_windows(self) -> None:
        plan, max_frames = self.plan, round(self.options.max_seconds * self.fps)
        paced_from, origin, run, buffer = time.monotonic(), self.frames, self.run_index, {}
        while not self._stopping.is_set():
            if not self.source.live:
                # A file plays at its frame rate: frame i is due i / fps after the start.
                time.sleep(max(0.0, paced_from + (self.frames - origin) / self.fps
                               - time.monotonic()))
            if not self._next_frame():
                return
            if self.run_index != run:   # reconnected: windows start again from here
                origin, run, buffer = self.frames - 1, self.run_index, {}
            frame = self.frames - 1 - origin
            if plan.needs(frame):
                ok, image = self._cap.retrieve()
                if ok and image is not None:
                    buffer[frame] = video_input.stored_frame(image)
            k = plan.completed_by(frame)
            if k is not None:
                first = k * plan.step
                self._publish(Window(run, k, self.frames,
                                     {f - first: a for f, a in buffer.items() if f >= first},
                                     self._last_arrival))
                buffer = {f: a for f, a in buffer.items() if f >= first + plan.step}
            if max_frames and self.frames >= max_frames:
                self.ended = f"stopped after --max_seconds={self.options.max_seconds:g}"
                return

    def _publish(self, window: Window) -> None:
        with self._lock:
            # An untaken window is replaced: the classifier always gets the newest.
            self._mailbox = window
            self.last_published[window.run] = window.index
            self._lock.notify_all()

    def _next_frame(self) -> bool:
        """Grabs the next frame, reconnecting a live source that stops; False at the end."""
        while not self._cap.grab():
            if self._stopping.is_set():
                return False
            if not self.source.live:
                self.ended = f"the stream ended: end of {self.source.spec}"
                return False
            if not self._reconnect():
                return False
        self.frames += 1
        self._last_arrival = time.monotonic()
        return True

    def _reconnect(self) -> bool:
        silent = time.monotonic() - self._last_arrival
        deadline = self._last_arrival + self.options.reconnect_seconds
        self.on_event(f"--stream {self.source.spec}: no frame for {silent:.1f} s; reconnecting "
                      f"for up to {max(0.0, deadline - time.monotonic()):.1f} s")
        self._cap.release()
        self._cap = self._open_until(deadline)
        if self._cap is None:
            what = ("sent no frame" if self.frames == 0 else
                    f"stopped at {clock(self.frames / self.fps)}")
            self.ended = (f"the stream ended: {self.source.spec} {what} and did not come back "
                          f"within --reconnect_seconds={self.options.reconnect_seconds:g}")
            return False
        self.run_index += 1
        self.on_event(f"--stream {self.source.spec}: reconnected")
        return True

    def _open_until(self, deadline: float):
        """An open capture, trying until `deadline` (monotonic); None if it never opens."""
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            cap = open_capture(self.source, left, self.read_timeout)
            if cap.isOpened():
                return cap
            cap.release()
            if not self.source.live:
                return None
            time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
        return None


# ----------------------------------------------------------------------------
# The classifier (the caller's thread).

# How often the classifier wakes to see whether the reader has finished.
_POLL_SECONDS = 0.25


def run_stream(model: ClipModel, source: Source, options: StreamOptions,
               on_label: Callable[[dict], None],
               on_event: Callable[[str], None] = _stderr) -> Summary:
    """Labels a stream until it ends, `max_seconds` pass, or Ctrl-C.

    Args:
      model: the `ClipModel`; it is called once on black clips before the stream
        is read, so that its loading is not counted as latency.
      source: from `parse_source`.
      options: the windows, smoothing and limits.
      on_label: called with each label: `stream_seconds` (the window's end, in
        seconds of stream since it opened), `top_k` (`{id, name, probability}`,
        best first) and `latency_seconds` (from its last frame's arrival to this call).
      on_event: called with a line about the source (reconnecting, an odd frame rate).

    Returns:
      The `Summary`; `interrupted` when Ctrl-C stopped it.

    Raises:
      cli.UserError: the source never sent a frame within `reconnect_seconds`,
        or its frame rate makes a window shorter than a clip.
    """
    options.check()
    reader = _Reader(source, options, model.frames, on_event)
    summary = Summary(source.spec)
    reader.start()
    try:
        reader.opened.wait()
        if reader.failure:
            raise cli.UserError(reader.failure)
        summary.fps, plan = reader.fps, reader.plan
        model(plan.clips({}))
        reader.begin()
        _classify(model, reader, plan, options, on_label, summary)
    except KeyboardInterrupt:
        summary.interrupted, summary.ended = True, "interrupted"
    finally:
        reader.stop()
        reader.join(timeout=1.0)
    summary.frames, summary.reconnections = reader.frames, reader.run_index
    if reader.failure and not summary.interrupted:
        raise cli.UserError(reader.failure)
    if not summary.interrupted:
        summary.ended = reader.ended
        if reader.frames == 0:
            raise cli.UserError(reader.ended)
    return summary


def _classify(model: ClipModel, reader: _Reader, plan: WindowPlan, options: StreamOptions,
              on_label: Callable[[dict], None], summary: Summary) -> None:
    """Takes windows until the reader finishes and the mailbox is empty."""
    history: deque[np.ndarray] = deque(maxlen=options.smooth)
    taken: dict[int, int] = {}      # run → index of its last window classified
    run = 0
    while True:
        window = reader.take(_POLL_SECONDS)
        if window is None:
            if reader.finished:
                break
            continue
        if window.run != run:       # the stream was reopened: close the run before
            summary.dropped += _close_run(plan, reader, taken, run)
            history.clear()
            run = window.run
        summary.dropped += plan.dropped(taken.get(run), window.index, classified=True)
        taken[run] = window.index
        probs, top_k = model(plan.clips(window.frames))
        history.append(probs)
        if len(history) > 1:
            top_k = model.top_k(np.mean(history, axis=0))
        latency = time.monotonic() - window.arrival
        summary.labels += 1
        summary.latency_sum += latency
        summary.latency_max = max(summary.latency_max, latency)
        on_label({"stream_seconds": round(window.end_frame / summary.fps, 3), "top_k": top_k,
                  "latency_seconds": round(latency, 4)})
    summary.dropped += _close_run(plan, reader, taken, run)


def _close_run(plan: WindowPlan, reader: _Reader, taken: dict[int, int], run: int) -> int:
    """Frames of a run's windows published after its last classified one, never classified."""
    last = reader.last_published.get(run)
    return 0 if last is None else plan.dropped(taken.get(run), last, classified=False)
