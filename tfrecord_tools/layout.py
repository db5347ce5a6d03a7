"""The order clips are written in, so that consecutive records come from many videos.

Training reads a few shards at a time through a bounded shuffle buffer: it can
only mix what the files put near each other. The local converter therefore writes
the clip stream as follows (the Beam pipeline gets the same property from the
engine's shuffle, see `beam_pipeline.py`):

  1. The videos are put in an order fixed by (seed, video id) alone.
  2. That order is cut into groups of at most `GROUP_VIDEOS` consecutive videos,
     all groups of nearly equal size (so no small last group).
  3. Within a group, the clips of all its videos come out in a uniformly random
     order (a seeded permutation of the group's video labels tells which video's
     next clip to read), streamed from the per-video work files: memory is one
     record, the group's open files (≤ GROUP_VIDEOS) and one label per clip of
     the group.
  4. The stream is dealt round-robin over the shards (`shards.write_shards`).

So 32 consecutive records of any shard are a random draw from a group of up to
256 videos: ≈30.1 distinct videos where a draw from an infinitely large dataset
gives 32 (94%), and exactly the uniform draw for a dataset of ≤ 256 videos. A
video's clips are spread over every shard.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

# Videos whose clips are interleaved together: the files kept open at once, and
# the pool a run of consecutive records is drawn from (see the module docstring).
GROUP_VIDEOS = 256
# Recorded in dataset.json: how a split's records are ordered.
NAME = "mixed"


def video_order(video_ids: Iterable[str], seed: int) -> list[str]:
    """The videos in an order that depends only on (seed, ids), not on which process
    converted which video first."""
    return sorted(video_ids, key=lambda v: hashlib.sha256(f"{seed}/{v}".encode()).digest())


def groups(num_videos: int, group_videos: int = GROUP_VIDEOS) -> list[tuple[int, int]]:
    """(start, stop) of each group of consecutive videos: ceil(n / group_videos)
    groups whose sizes differ by at most one."""
    if num_videos <= 0:
        return []
    count = math.ceil(num_videos / group_videos)
    bounds = [round(i * num_videos / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _group_seed(seed: int, group: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed & 0xFFFFFFFF, 0x6C61796F, group])


def interleave(clip_counts: Sequence[int], open_video: Callable[[int], Iterator[bytes]],
               rng: np.random.Generator) -> Iterator[bytes]:
    """Every clip of a group of videos, in a uniformly random order.

    Args:
      clip_counts: clips of each video of the group.
      open_video: `open_video(i)` iterates over video i's records (opened lazily,
        on its first pick).
      rng: the group's generator.

    Yields:
      The records. Raises ValueError if a video yields fewer records than counted.
    """
    labels = rng.permutation(np.repeat(np.arange(len(clip_counts)), clip_counts))
    streams: dict[int, Iterator[bytes]] = {}
    left = list(clip_counts)
    for i in labels.tolist():
        if i not in streams:
            streams[i] = open_video(i)
        try:
            yield next(streams[i])
        except StopIteration:
            raise ValueError(f"video {i} of the group has fewer records than its "
                             f"{clip_counts[i]} clips") from None
        left[i] -= 1
        if not left[i]:  # done: close its file now, not when the group ends
            close = getattr(streams.pop(i), "close", None)
            if close is not None:
                close()


def mixed_stream(videos: Sequence[tuple[str, int]], open_video: Callable[[str], Iterator[bytes]],
                 seed: int, group_videos: int = GROUP_VIDEOS) -> Iterator[bytes]:
    """Every clip of `videos` in the order described in the module docstring.

    Args:
      videos: (video id, number of clips) pairs; videos without clips are skipped.
      open_video: `open_video(video_id)` iterates over that video's records.

    Yields:
      Serialised records.
    """
    counts = {v: n for v, n in videos if n}
    order = video_order(counts, seed)
    for g, (start, stop) in enumerate(groups(len(order), group_videos)):
        members = order[start:stop]
        yield from interleave([counts[v] for v in members],
                              lambda i, members=members: open_video(members[i]),
                              np.random.default_rng(_group_seed(seed, g)))


def clip_keys(seed: int, video_id: str, clip_index: int, num_buckets: int) -> tuple[int, int]:
    """(bucket in [0, num_buckets), rank) of a clip, from (seed, video, clip) alone, the
    same in every process: the Beam pipeline groups clips by bucket (the engine's
    shuffle) and writes each bucket's clips in rank order."""
    digest = hashlib.sha256(f"{seed}/{video_id}/{clip_index}".encode()).digest()
    return (int.from_bytes(digest[:8], "little") % max(1, num_buckets),
            int.from_bytes(digest[8:16], "little"))


# Clips a Beam bucket holds on average. A bucket is a random sample of the split's
# clips, written in a random (rank) order, so any run of records mixes videos
# whatever order the runner delivers buckets and their values in; it is held in
# a worker's memory to be ordered (256 clips of 200-pixel frames: ≈46 MB).
BEAM_BUCKET_CLIPS = 256


def beam_buckets(num_videos: int, clips_per_video: int) -> int:
    """Buckets for the Beam pipeline's shuffle: about BEAM_BUCKET_CLIPS clips each
    when every video gives `clips_per_video` clips (fewer clips, smaller buckets)."""
    return max(1, num_videos * clips_per_video // BEAM_BUCKET_CLIPS)
