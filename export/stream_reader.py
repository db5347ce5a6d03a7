"""The reader thread of a live stream: opens the source, takes frames as they arrive,
converts only those some window reads, and hands completed windows on.

The hand-over is a one-window mailbox: a window the classifier has not taken when
the next one completes is replaced (skipped), so a slow model never stalls the
reader and nothing queues without bound. Memory holds the frames of the window
being filled, one in the mailbox and one being classified.

A stopped live source is reopened until `reconnect_seconds` of silence have
passed; a file (`--realtime`) is read at its frame rate and ends at its end.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Sequence

from export import video_input
from export.stream_windows import StreamOptions, Window, WindowPlan, clock
from sports1m_tf import cli
from tfrecord_tools import video_decoder

# Schemes handed to OpenCV's FFmpeg backend as they are.
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "rtp", "srt")
# A reported frame rate outside this range is a container's clock, not a frame rate
# (some RTSP servers report 90000).
PLAUSIBLE_FPS = (1.0, 240.0)
# Opening attempts that fail at once (connection refused) are repeated this often.
RETRY_SECONDS = 0.5


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


class Reader(threading.Thread):
    """Opens the source, then (once `begin` is called) reads it and fills windows.

    Before `begin`, a live source is read and its frames discarded, so that
    labelling starts at the live edge rather than behind a backlog; a file
    waits. Results for the classifier: `take()`; at the end `finished` is set,
    with `ended` (why) or `failure` (the source never sent a frame).
    """

    def __init__(self, source: Source, options: StreamOptions,
                 frames: Sequence[int] | None, on_event: Callable[[str], None],
                 frame_size: int = video_input.FRAME_SIZE):
        super().__init__(name="stream-reader", daemon=True)
        self.source, self.options, self.model_frames = source, options, frames
        self.frame_size = frame_size
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
        self._mail_lock = threading.Condition()
        self._mailbox: Window | None = None

    # -- the classifier's side --------------------------------------------------

    def begin(self) -> None:
        self._begun.set()

    def stop(self) -> None:
        self._stopping.set()
        self._begun.set()

    def take(self, timeout: float) -> Window | None:
        """The window in the mailbox (emptying it), waiting up to `timeout` s; None if none."""
        with self._mail_lock:
            if self._mailbox is None and not self.finished:
                self._mail_lock.wait(timeout)
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
            with self._mail_lock:
                self.finished = True
                self._mail_lock.notify_all()
            self.opened.set()

    def _read(self) -> None:
        self._last_arrival = time.monotonic()
        self._cap = self._open_until(self._last_arrival + self.options.reconnect_seconds)
        if self._cap is None:
            why = ("no such camera, or another program holds it"
                   if isinstance(self.source.target, int) else
                   "nothing sending there, or not a stream OpenCV's FFmpeg can read")
            self.failure = (f"--stream {self.source.spec}: could not be opened within "
                            f"{self.options.reconnect_seconds:g} s ({why})")
            return
        self.fps = self._frame_rate()
        self.plan = WindowPlan.make(self.fps, self.options, self.model_frames, self.frame_size)
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
        fps = video_decoder.frame_rate(self._cap)
        if fps is None or not PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1]:
            stated = "no frame rate" if fps is None else f"{fps:g} frames per second"
            self.on_event(f"--stream {self.source.spec}: states {stated}; assuming "
                          f"{video_decoder.DEFAULT_FPS:g}")
            return video_decoder.DEFAULT_FPS
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
                    buffer[frame] = video_input.stored_frame(image, self.frame_size)
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
        with self._mail_lock:
            # An untaken window is replaced: the classifier always gets the newest.
            self._mailbox = window
            self.last_published[window.run] = window.index
            self._mail_lock.notify_all()

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
        now = time.monotonic()
        # A grab fails after `read_timeout` without data, but the frames the decoder
        # still held may come out first: the silence began that long ago at least.
        silent_since = min(self._last_arrival, now - self.read_timeout)
        deadline = silent_since + self.options.reconnect_seconds
        self.on_event(f"--stream {self.source.spec}: no frame for {now - silent_since:.1f} s; "
                      f"reconnecting for up to {max(0.0, deadline - now):.1f} s")
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
