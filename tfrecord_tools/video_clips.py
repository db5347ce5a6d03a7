"""One video → its clip records: the per-video function shared by the local and Beam paths.

A video is decoded once, front to back: `grab()` every frame (demux + decode, no
colour conversion) and `retrieve()` only the frames of the chosen clips (the
colour conversion costs ≈0.4× of a decode; seeking per clip was 2.6× slower than
this, see notes/stack-facts.md). Memory is one clip of encoded frames, whatever the
video's length. Clips are up to `clips_per_video` non-overlapping windows of
`clip_frames` consecutive frames, drawn uniformly among all such placements by a
generator seeded with (seed, video id), so a rerun, another worker count or the
Beam runner give the same clips. With `clip_overlap` (UCF-101's 50 clips a video),
a video with fewer disjoint windows than asked gets up to `clips_per_video`
distinct start frames instead; a frame shared by several clips is still retrieved
and encoded once.

Everything that can go wrong with a video is returned as a reason, never raised.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import os

import numpy as np

from tfrecord_tools import clip_encoding, fileio, schema
from tfrecord_tools.manifest import VideoEntry

# Each bad video is reported with a reason of ours; FFmpeg's own messages for it
# ("moov atom not found", ...) would only flood the log. Set before cv2 is imported;
# a user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


@dataclasses.dataclass(frozen=True)
class ClipSettings:
    """How clips are cut and stored (defaults: docs/design.md, "Clip records")."""

    clips_per_video: int = 100
    clip_frames: int = schema.CLIP_FRAMES
    frame_size: int = schema.FRAME_SIZE
    jpeg_quality: int = 90
    seed: int = 0
    # Off by default (Sports-1M: disjoint windows). On, a video with fewer than
    # `clips_per_video` disjoint windows gets overlapping ones (UCF-101: 50 a video).
    clip_overlap: bool = False

    def __post_init__(self):
        for name in ("clips_per_video", "clip_frames", "frame_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


@dataclasses.dataclass
class VideoResult:
    """What converting one video gave.

    Attributes:
      entry: the `VideoEntry` converted.
      records: serialised clip SequenceExamples, in time order.
      failure: None, or why the video gave no clip.
      warnings: problems that did not stop it (e.g. fewer frames than the container claims).
      frames_decoded: frames grabbed from the stream.
      clip_starts: first frame index of each clip, parallel to `records`.
    """

    entry: VideoEntry
    records: list[bytes]
    failure: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    frames_decoded: int = 0
    clip_starts: list[int] = dataclasses.field(default_factory=list)

    def outcome(self) -> dict:
        """The JSON-able summary of this result (no records)."""
        return {"video": self.entry.video_id, "path": self.entry.path, "source": self.entry.source,
                "label_indices": list(self.entry.label_indices), "num_clips": len(self.records),
                "clip_starts": self.clip_starts, "frames_decoded": self.frames_decoded,
                "failure": self.failure, "warnings": self.warnings}


def video_seed(seed: int, video_id: str) -> np.random.SeedSequence:
    """A seed from (seed, video id) that is the same in every process (unlike `hash`)."""
    digest = hashlib.sha256(video_id.encode("utf-8")).digest()
    return np.random.SeedSequence([seed & 0xFFFFFFFF, int.from_bytes(digest[:8], "little")])


def choose_clip_starts(num_frames: int, clip_frames: int, clips_per_video: int,
                       seed: np.random.SeedSequence, *, overlap: bool = False) -> list[int]:
    """Start frames of up to `clips_per_video` windows, sorted.

    Every placement of k = min(clips_per_video, num_frames // clip_frames) disjoint
    windows is equally likely: choose k of the (gaps + k) slots that interleave the
    k clips with the `num_frames - k * clip_frames` unused frames.

    With `overlap`, when fewer disjoint windows exist than `clips_per_video`, it is
    instead min(clips_per_video, num_frames - clip_frames + 1) distinct start frames,
    every such set equally likely. When enough disjoint windows exist, the result is
    the same as without `overlap` (same draws from the same generator).

    Args:
      num_frames: int. Frames in the video.
      clip_frames: int. Frames per clip.
      clips_per_video: int. Most clips to take.
      seed: np.random.SeedSequence. From `video_seed`.
      overlap: bool. Allow windows to overlap when that gives more clips.

    Returns:
      Sorted, distinct start indices, each window `[s, s + clip_frames)` inside the video.
    """
    k = min(clips_per_video, num_frames // clip_frames)
    if k <= 0:
        return []
    rng = np.random.default_rng(seed)
    if overlap and clips_per_video > k:
        positions = num_frames - clip_frames + 1
        k = min(clips_per_video, positions)
        return [int(s) for s in np.sort(rng.choice(positions, size=k, replace=False))]
    gaps = num_frames - k * clip_frames
    slots = np.sort(rng.choice(gaps + k, size=k, replace=False))
    return [int(s) + i * (clip_frames - 1) for i, s in enumerate(slots)]


def _container(head: bytes) -> str | None:
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


def _open_failure(path: str) -> str:
    """Why OpenCV could not open a file that exists and is not empty."""
    with open(path, "rb") as f:
        head = f.read(512)
    container = _container(head)
    if container is None:
        return "not a video: no known container signature, and the decoder cannot open it"
    if container == "MP4/MOV" and not _contains(path, b"moov"):
        return "truncated MP4/MOV: no moov atom (the index written last is missing)"
    return (f"cannot open {container} file: unsupported codec, or truncated or corrupt "
            "container")


def _contains(path: str, needle: bytes, chunk: int = 1 << 20) -> bool:
    """Whether a file contains `needle`, reading it in chunks."""
    tail = b""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle):]
    return False


def _square_resize(frame_bgr: np.ndarray, size: int):
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


def _frame_count(cap) -> int:
    import cv2
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(n) if math.isfinite(n) and n > 0 else 0


def _open(local_path: str, threads: int):
    import cv2
    # 0 lets FFmpeg pick (one thread per core); parallel workers each ask for 1.
    return cv2.VideoCapture(local_path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])


def _decode_clips(local_path: str, starts: list[int], settings: ClipSettings, threads: int
                  ) -> tuple[list[list[bytes]], int]:
    """Grabs the video front to back, encoding the frames of the windows at `starts`.

    Each frame inside any window is retrieved and encoded once, then shared by every
    window holding it (overlapping windows); memory is at most one window of JPEGs.

    Args:
      starts: sorted, distinct start frames.

    Returns:
      (frames of each completed clip, in order; frames grabbed). Decoding stops after
      the last chosen frame.
    """
    import cv2
    cap = _open(local_path, threads)
    clips: list[list[bytes]] = []
    # Windows begun and not yet full, oldest first; starts are distinct and sorted,
    # so at most one begins and one completes per frame.
    active: collections.deque[list[bytes]] = collections.deque()
    wanted = collections.deque(starts)
    params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
    index = 0
    try:
        while (wanted or active) and cap.grab():
            if wanted and index >= wanted[0]:
                wanted.popleft()
                active.append([])
            if active:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    break
                ok, jpeg = cv2.imencode(".jpg", _square_resize(frame, settings.frame_size), params)
                data = jpeg.tobytes()
                for clip in active:
                    clip.append(data)
                if len(active[0]) == settings.clip_frames:
                    clips.append(active.popleft())
            index += 1
    finally:
        cap.release()
    return clips, index


def _count_frames(local_path: str, threads: int) -> int:
    cap = _open(local_path, threads)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def convert_video(entry: VideoEntry, settings: ClipSettings, *, decoder_threads: int = 0
                  ) -> VideoResult:
    """Converts one video to clip records. Never raises for bad input.

    Args:
      entry: the video and its labels.
      settings: how clips are cut and stored.
      decoder_threads: int. FFmpeg decoding threads; 0 = one per core. The output
        does not depend on it.

    Returns:
      A `VideoResult`: records and clip starts, or a failure reason.
    """
    def fail(reason: str, **kw) -> VideoResult:
        return VideoResult(entry, [], failure=reason, **kw)

    try:
        if not fileio.exists(entry.path):
            return fail("missing file")
        if fileio.size(entry.path) == 0:
            return fail("empty file (0 bytes)")
        with fileio.local_copy(entry.path) as local:
            return _convert_local(entry, local, settings, decoder_threads)
    except Exception as e:  # noqa: BLE001 - one bad video must not stop a run of a million
        return fail(f"unexpected error: {type(e).__name__}: {e}")


def _convert_local(entry: VideoEntry, local: str, settings: ClipSettings, threads: int
                   ) -> VideoResult:
    import cv2
    cap = _open(local, threads)
    opened = cap.isOpened()
    fps = cap.get(cv2.CAP_PROP_FPS) if opened else 0.0
    claimed = _frame_count(cap) if opened else 0
    cap.release()
    if not opened:
        return VideoResult(entry, [], failure=_open_failure(local))
    warnings = []
    if not (math.isfinite(fps) and fps > 0):
        warnings.append("no frame rate in the container; assumed 25 fps for timestamps")
        fps = 25.0
    seed = video_seed(settings.seed, entry.video_id)
    num_frames = claimed or _count_frames(local, threads)
    starts = choose_clip_starts(num_frames, settings.clip_frames, settings.clips_per_video, seed,
                                overlap=settings.clip_overlap)
    clips, decoded = _decode_clips(local, starts, settings, threads)
    if len(clips) < len(starts):
        # The stream ended before the container's frame count (a truncated file, or a
        # wrong count): choose again among the frames that exist. Deterministic, as the
        # decoded length is a property of the file.
        num_frames = decoded
        if decoded > 0:
            warnings.append(f"container claims {claimed} frames but only {decoded} decode "
                            "(truncated or corrupt file); clips chosen among those")
        starts = choose_clip_starts(num_frames, settings.clip_frames, settings.clips_per_video,
                                    seed, overlap=settings.clip_overlap)
        clips, decoded = _decode_clips(local, starts, settings, threads)
        if len(clips) < len(starts):
            warnings.append(f"{len(starts) - len(clips)} chosen clips did not decode twice; "
                            "dropped")
    if num_frames == 0:
        return VideoResult(entry, [], failure="no frame decodes (unsupported codec or corrupt "
                                              "stream)", warnings=warnings)
    if not starts:
        return VideoResult(entry, [], warnings=warnings, frames_decoded=decoded,
                           failure=f"too short: {num_frames} frames, a clip needs "
                                   f"{settings.clip_frames}")
    records = []
    for start, frames in zip(starts, clips):
        stamps = [round((start + i) * 1e6 / fps) for i in range(settings.clip_frames)]
        records.append(clip_encoding.encode_clip(
            media_id=entry.video_id, label_indices=entry.label_indices,
            label_strings=entry.label_strings, encoded_frames=frames,
            frame_timestamps_us=stamps, frame_rate=fps,
            height=settings.frame_size, width=settings.frame_size))
    return VideoResult(entry, records, warnings=warnings, frames_decoded=decoded,
                       clip_starts=starts[:len(records)])
