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

import numpy as np

from tfrecord_tools import clip_encoding, fileio, schema, video_decoder
from tfrecord_tools.manifest import VideoEntry


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
      num_frames: Frames in the video.
      clips_per_video: Most clips to take.
      seed: np.random.SeedSequence. From `video_seed`.
      overlap: Allow windows to overlap when that gives more clips.

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


def _decode_clips(cap, starts: list[int], settings: ClipSettings
                  ) -> tuple[list[list[bytes]], int]:
    """Grabs the video front to back, encoding the frames of the windows at `starts`.

    Each frame inside any window is retrieved and encoded once, then shared by every
    window holding it (overlapping windows); memory is at most one window of JPEGs.

    Args:
      cap: a capture at frame 0 (released by its opener).
      starts: sorted, distinct start frames.

    Returns:
      (frames of each completed clip, in order; frames grabbed). Decoding stops after
      the last chosen frame.
    """
    import cv2
    clips: list[list[bytes]] = []
    # Windows begun and not yet full, oldest first; starts are distinct and sorted,
    # so at most one begins and one completes per frame.
    active: collections.deque[list[bytes]] = collections.deque()
    wanted = collections.deque(starts)
    params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
    index = 0
    while (wanted or active) and cap.grab():
        if wanted and index >= wanted[0]:
            wanted.popleft()
            active.append([])
        if active:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            ok, jpeg = cv2.imencode(
                ".jpg", video_decoder.stored_square(frame, settings.frame_size), params)
            data = jpeg.tobytes()
            for clip in active:
                clip.append(data)
            if len(active[0]) == settings.clip_frames:
                clips.append(active.popleft())
        index += 1
    return clips, index


def _decode_again(local: str, starts: list[int], settings: ClipSettings, threads: int
                  ) -> tuple[list[list[bytes]], int]:
    """A second pass over the file, for when the first pass's clip choice was wrong."""
    with video_decoder.open_video(local, threads) as video:
        return _decode_clips(video.capture, starts, settings)


def convert_video(entry: VideoEntry, settings: ClipSettings, *, decoder_threads: int = 0
                  ) -> VideoResult:
    """Converts one video to clip records. Never raises for bad input.

    Args:
      entry: the video and its labels.
      settings: how clips are cut and stored.
      decoder_threads: FFmpeg decoding threads; 0 = one per core. The output
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
    try:
        with video_decoder.open_video(local, threads) as video:
            fps, claimed = video.fps, video.claimed_frames
            seed = video_seed(settings.seed, entry.video_id)
            # One pass when the container's count is right (the common case).
            starts, clips, decoded = [], [], 0
            if claimed:
                starts = choose_clip_starts(claimed, settings.clip_frames,
                                            settings.clips_per_video, seed,
                                            overlap=settings.clip_overlap)
                clips, decoded = _decode_clips(video.capture, starts, settings)
    except video_decoder.VideoOpenError as e:
        return VideoResult(entry, [], failure=str(e))
    warnings = []
    if fps is None:
        warnings.append("no frame rate in the container; assumed 25 fps for timestamps")
        fps = video_decoder.DEFAULT_FPS
    num_frames = claimed
    if not claimed:
        num_frames = video_decoder.count_frames(local, threads)
        starts = choose_clip_starts(num_frames, settings.clip_frames, settings.clips_per_video,
                                    seed, overlap=settings.clip_overlap)
        clips, decoded = _decode_again(local, starts, settings, threads)
    elif len(clips) < len(starts):
        # The stream ended before the container's frame count (a truncated file, or a
        # wrong count): choose again among the frames that exist. Deterministic, as the
        # decoded length is a property of the file.
        num_frames = decoded
        if decoded > 0:
            warnings.append(f"container claims {claimed} frames but only {decoded} decode "
                            "(truncated or corrupt file); clips chosen among those")
        starts = choose_clip_starts(num_frames, settings.clip_frames, settings.clips_per_video,
                                    seed, overlap=settings.clip_overlap)
        clips, decoded = _decode_again(local, starts, settings, threads)
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
