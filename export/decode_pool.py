"""Decoding video files in worker processes while the caller runs the model.

`decode_stream(paths, options, workers)` starts `workers` processes (spawned:
they import NumPy and OpenCV only, never TensorFlow). Each takes the next file,
decodes it with `export.video_input` and sends its segments back through one
bounded queue, so at most a few segments are in memory whatever the videos'
lengths; the caller receives `Message`s in arrival order, files interleaved.

A file that cannot be decoded becomes an `error` message and the workers carry
on; a worker that dies (a decoder crash) is reported as an error for the file it
held, and the stream still ends.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import time
from typing import Iterator, Sequence

from export.frame_bounds import FrameBounds
from tfrecord_tools import schema

# Segments waiting in the queue per worker: enough to keep the model busy while a
# worker decodes the next one, few enough to bound memory (≈38 MB a segment of 20 clips).
QUEUE_PER_WORKER = 2
_POLL_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """How each file is cut (see `export.video_input`).

    Attributes:
      max_clips: int. Most clips per video, or per segment.
      segment_seconds: float. 0: clips spread over the whole video; > 0: segments.
      threads: int. FFmpeg threads per worker (0: one per core).
      frames: offsets within a clip to convert (the model's); None: all 16.
      frame_size: int. Side of the stored frames (200, the converter's default).
      bounds: the model's `frame_bounds.FrameBounds`; a file whose frames are
        outside them is an error. None: any frame size.
    """
    max_clips: int = 20
    segment_seconds: float = 0.0
    threads: int = 1
    frames: tuple[int, ...] | None = None
    frame_size: int = schema.FRAME_SIZE
    bounds: FrameBounds | None = None


@dataclasses.dataclass
class Message:
    """One event from the workers.

    Attributes:
      kind: "segment" (clips of a file), "done" (a file is complete) or "error".
      file: int. Index of the file in the caller's `paths`.
      segment: `video_input.Segment` for "segment".
      error: str for "error".
      decode_seconds: float for "done": the worker's time on the file.
      pid: int. The worker's process id.
    """
    kind: str
    file: int
    segment: object = None
    error: str = ""
    decode_seconds: float = 0.0
    pid: int = 0


def _decode_file(path: str, options: DecodeOptions):
    """The segments of one file (the whole video as one segment without segment_seconds)."""
    from export import video_input
    if options.segment_seconds > 0:
        yield from video_input.iter_segments(path, options.segment_seconds, options.max_clips,
                                             threads=options.threads, frames=options.frames,
                                             size=options.frame_size, bounds=options.bounds)
        return
    yield video_input.read_video(path, options.max_clips, threads=options.threads,
                                 frames=options.frames, size=options.frame_size,
                                 bounds=options.bounds)


def _worker(tasks, results, options: DecodeOptions) -> None:
    """Process body: decodes files until the `None` sentinel."""
    import cv2

    from export.video_input import VideoError
    # Workers run side by side, one a core: OpenCV's own threads would only compete.
    cv2.setNumThreads(1)
    while (task := tasks.get()) is not None:
        index, path = task
        results.put(Message("start", index, pid=os.getpid()))
        start = time.perf_counter()
        try:
            for segment in _decode_file(path, options):
                results.put(Message("segment", index, segment=segment))
        except VideoError as e:
            results.put(Message("error", index, error=str(e)))
            continue
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
            results.put(Message("error", index, error=f"{type(e).__name__}: {e}"))
            continue
        results.put(Message("done", index, decode_seconds=time.perf_counter() - start))


def decode_stream(paths: Sequence[str], options: DecodeOptions, workers: int = 1
                  ) -> Iterator[Message]:
    """Decodes `paths` in `workers` processes; yields "segment", "done" and "error" messages.

    Every file ends with exactly one "done" or "error" message (a file's
    segments may have come before an "error").

    Args:
      paths: the video files.
      options: how to cut them.
      workers: Decoding processes (at most one per file).

    Yields:
      `Message`s in arrival order.
    """
    ctx = multiprocessing.get_context("spawn")
    workers = max(1, min(workers, len(paths)))
    tasks = ctx.Queue()
    results = ctx.Queue(maxsize=QUEUE_PER_WORKER * workers)
    for task in enumerate(paths):
        tasks.put(task)
    for _ in range(workers):
        tasks.put(None)
    procs = [ctx.Process(target=_worker, args=(tasks, results, options), daemon=True)
             for _ in range(workers)]
    for p in procs:
        p.start()
    held: dict[int, int] = {}     # worker pid → the file it decodes
    open_files = len(paths)
    try:
        while open_files:
            try:
                message = results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                for lost in _dead_workers(procs, held):
                    open_files -= 1
                    yield Message("error", lost, error="the decoding process died on this "
                                                       "file (decoder crash)")
                if not any(p.is_alive() for p in procs) and results.empty() and open_files:
                    raise RuntimeError("every decoding process ended with files left")
                continue
            if message.kind == "start":
                held[message.pid] = message.file
                continue
            if message.kind in ("done", "error"):
                open_files -= 1
                held = {pid: f for pid, f in held.items() if f != message.file}
            yield message
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)


def _dead_workers(procs, held: dict[int, int]) -> list[int]:
    """Files held by workers that have exited abnormally (then forgotten)."""
    lost = []
    for p in procs:
        if not p.is_alive() and p.exitcode not in (0, None) and p.pid in held:
            lost.append(held.pop(p.pid))
    return lost
