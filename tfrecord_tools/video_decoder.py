"""The one video decoder: OpenCV's FFmpeg backend, used by the converter and by
`sports1m-predict` alike, so a served frame is the stored frame bit for bit.

A video is read front to back: `grab()` demuxes and decodes, `retrieve()` adds
the colour conversion (≈0.4× of a decode), so callers retrieve only the frames
they keep. `stored_square` is how every frame is stored: the centre square,
INTER_AREA-resized. No TensorFlow here: decoding workers import only this.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import stat
from typing import Iterator

import numpy as np

# Each bad video is reported with a reason of ours; FFmpeg's own messages for it
# ("moov atom not found", ...) would only flood the log. Set before cv2 is imported;
# a user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

# Assumed when a container states no frame rate (timestamps need one).
DEFAULT_FPS = 25.0


class VideoOpenError(Exception):
    """A video file that cannot be decoded at all; the message says why."""


@dataclasses.dataclass
class OpenVideo:
    """A video opened for one front-to-back pass.

    Attributes:
      capture: the `cv2.VideoCapture`, positioned at frame 0.
      fps: the container's frame rate, or None when it states none.
      claimed_frames: the container's frame count, 0 when unknown (it can be wrong).
    """
    capture: object
    fps: float | None
    claimed_frames: int


def container(head: bytes) -> str | None:
    """The container a file's first bytes announce, if any."""
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return "MP4/MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:3] == b"FLV":
        return "FLV"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "MPEG-PS"
    if head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47":
        return "MPEG-TS"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "ASF/WMV"
    return None


def open_failure(path: str) -> str:
    """Why the decoder could not open a local file that exists and is not empty."""
    with open(path, "rb") as f:
        head = f.read(512)
    kind = container(head)
    if kind is None:
        return "not a video: no known container signature, and the decoder cannot open it"
    if kind == "MP4/MOV" and not _contains(path, b"moov"):
        return "truncated MP4/MOV: no moov atom (the index written last is missing)"
    return f"cannot open {kind} file: unsupported codec, or truncated or corrupt container"


def _contains(path: str, needle: bytes, chunk: int = 1 << 20) -> bool:
    tail = b""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle):]
    return False


def local_file_problem(local_path: str) -> str | None:
    """Why a local path is not a file the decoder could read (None when it is one):
    missing, a symbolic link loop, a folder, empty."""
    try:
        info = os.stat(local_path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop (the link leads back to itself), not a video file"
        if os.path.islink(local_path):
            return "a symbolic link to a file that does not exist"
        return "no such file" if e.errno == errno.ENOENT else (e.strerror or str(e)).lower()
    if stat.S_ISDIR(info.st_mode):
        return "a folder, not a video file"
    if info.st_size == 0:
        return "empty file (0 bytes)"
    return None


def capture(local_path: str, threads: int):
    """A `cv2.VideoCapture` of a local file on FFmpeg; `threads` 0 lets FFmpeg pick
    (one per core), parallel workers each ask for 1. Unchecked: see `open_video`."""
    import cv2
    return cv2.VideoCapture(local_path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])


@contextlib.contextmanager
def open_video(local_path: str, threads: int = 1) -> Iterator[OpenVideo]:
    """Opens a local video once, with its frame rate and claimed frame count.

    Raises:
      VideoOpenError: missing, a folder, a link loop, empty or undecodable (the
        reason names which).
    """
    import cv2
    problem = local_file_problem(local_path)
    if problem:
        raise VideoOpenError(problem)
    cap = capture(local_path, threads)
    try:
        if not cap.isOpened():
            raise VideoOpenError(open_failure(local_path))
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        yield OpenVideo(cap, frame_rate(cap), int(n) if math.isfinite(n) and n > 0 else 0)
    finally:
        cap.release()


def frame_rate(cap) -> float | None:
    """An open capture's frames per second, or None when it states none."""
    import cv2
    fps = cap.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and fps > 0 else None


def count_frames(local_path: str, threads: int = 1) -> int:
    """Frames that actually decode (every frame grabbed, none converted)."""
    cap = capture(local_path, threads)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def stored_square(frame_bgr: np.ndarray, size: int) -> np.ndarray:
    """The stored form of a frame: its centre square resized to `size`×`size`."""
    import cv2
    h, w = frame_bgr.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = frame_bgr[y0:y0 + s, x0:x0 + s]
    if s == size:
        return crop
    # INTER_AREA averages source pixels when shrinking (no aliasing); when growing it
    # falls back to bilinear.
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
