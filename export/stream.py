"""Live streams → rolling labels: a camera, an RTSP/HTTP/UDP/TCP URL, or a file in real time.

Two threads: the reader (`export.stream_reader`) takes frames as they arrive
and fills windows (`export.stream_windows`: where they fall, which frames the
model reads); the classifier (the caller's thread, `run_stream`) sends each
window's clips to the model and reports a label. A slow model makes the reader
skip windows (counted as dropped frames), never stall.

The model is any object with `VideoModel`'s interface (`ClipModel`): the
SavedModel's `predict_video`, or another runtime that averages the same views.
This module imports no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections import deque
from typing import Callable, Protocol

import numpy as np

from export import video_input
from export.stream_reader import Reader, Source
from export.stream_windows import StreamOptions, WindowPlan, clock
from sports1m_tf import cli


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


def format_label(label: dict) -> str:
    """One text line of a label: position, the top 3 classes and the latency."""
    top = ", ".join(f"{p['name']} {p['probability']:.2f}" for p in label["top_k"][:3])
    return f"{clock(label['stream_seconds'])}  {top}  ({label['latency_seconds']:.2f} s)"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    # The stored frame size the model takes: 200, or a TFLite file's own.
    reader = Reader(source, options, model.frames, on_event,
                    getattr(model, "frame_size", video_input.FRAME_SIZE))
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


def _classify(model: ClipModel, reader: Reader, plan: WindowPlan, options: StreamOptions,
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


def _close_run(plan: WindowPlan, reader: Reader, taken: dict[int, int], run: int) -> int:
    """Frames of a run's windows published after its last classified one, never classified."""
    last = reader.last_published.get(run)
    return 0 if last is None else plan.dropped(taken.get(run), last, classified=False)
