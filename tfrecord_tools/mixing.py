"""How well a run of clips mixes videos: distinct videos per 32 clips, against a uniform draw.

The paper trains on clips drawn at random from the whole dataset. A batch of 32
clips drawn that way from videos of `n_v` clips each (n clips in all) holds, on
average, sum_v 1 - C(n - n_v, 32) / C(n, 32) distinct videos (`uniform_distinct`):
28.5 for 120 videos of 100 clips, nearly 32 for Sports-1M. A layout "mixes" when
runs of consecutive records (what a reader with a small buffer sees) come close
to that: `MIXES_AT` of it.
"""
from __future__ import annotations

import collections
from typing import Hashable, Iterable, Sequence

BATCH = 32
MIXES_AT = 0.9


def uniform_distinct(clip_counts: Iterable[int], batch: int = BATCH) -> float:
    """Expected distinct videos in `batch` clips drawn uniformly without replacement.

    Args:
      clip_counts: clips of each video.

    Returns:
      float; the number of videos when there are no more clips than `batch`.
    """
    counts = [c for c in clip_counts if c > 0]
    total = sum(counts)
    if total <= batch:
        return float(len(counts))
    missing: dict[int, float] = {}  # P(a video of c clips gets none of the draw), per c
    for c in set(counts):
        p = 1.0
        for j in range(batch):  # C(n - c, k) / C(n, k) as a product
            p *= (total - c - j) / (total - j)
            if p <= 0.0:
                break
        missing[c] = max(p, 0.0)
    return sum(1.0 - missing[c] for c in counts)


def distinct_per_window(videos: Sequence[Hashable], batch: int = BATCH) -> list[int]:
    """Distinct videos in each run of `batch` consecutive items (the last partial
    run left out)."""
    return [len(set(videos[i:i + batch])) for i in range(0, len(videos) - batch + 1, batch)]


class Meter:
    """Counts, online, distinct videos per run of `batch` consecutive records of each
    shard (file order), and clips per video. Memory: one run per shard and one
    counter per video.

    Example:
      meter = Meter()
      for shard in shards:
          for record in shard:
              meter.add(shard, video_of(record))
      meter.report()  # {"distinct_per_32": 27.9, "uniform_per_32": 28.5, ...}
    """

    def __init__(self, batch: int = BATCH):
        self.batch = batch
        self.runs: dict[str, list[Hashable]] = collections.defaultdict(list)
        self.clips: collections.Counter = collections.Counter()
        self.windows = self.distinct = 0

    def add(self, shard: str, video: Hashable) -> None:
        self.clips[video] += 1
        run = self.runs[shard]
        run.append(video)
        if len(run) == self.batch:
            self.windows += 1
            self.distinct += len(set(run))
            run.clear()

    def report(self) -> dict:
        """`distinct_per_32`: mean over the runs; `uniform_per_32`: the uniform draw's;
        `ratio`; `mixes`: ratio ≥ MIXES_AT (None when no shard holds `batch` records)."""
        ideal = uniform_distinct(self.clips.values(), self.batch)
        measured = self.distinct / self.windows if self.windows else None
        ratio = measured / ideal if measured is not None and ideal else None
        return {"batch": self.batch, "runs": self.windows,
                "distinct_per_32": None if measured is None else round(measured, 2),
                "uniform_per_32": round(ideal, 2),
                "ratio": None if ratio is None else round(ratio, 3),
                "mixes": None if ratio is None else ratio >= MIXES_AT}


def reader_distinct_per_batch(file_pattern, num_videos: int, *, batches: int = 40,
                              seed: int = 0, input_size: int = 8, **reader) -> list[int]:
    """Distinct videos in each of the first `batches` training batches of 32 that
    `sports1m_tf.data.clip_dataset` (its defaults unless `reader` overrides them)
    reads from shards whose clips are labelled with their video's index (one class
    per video, as `testvideos.tiny_clip_records` writes them).

    Args:
      file_pattern: the shards.
      num_videos: Videos = classes.
      batches: Batches read from the start of the stream.
      input_size: Crop side (no larger than the stored frames).
      **reader: more `clip_dataset` arguments (shuffle_buffer, cycle_length, ...).

    Returns:
      One count per batch.
    """
    import numpy as np

    from sports1m_tf import data  # deferred: the converter never needs the reader
    ds = data.clip_dataset(file_pattern, model="single_frame", training=True, batch_size=BATCH,
                           num_classes=num_videos, input_size=input_size, seed=seed,
                           flip=False, repeat=-1, **reader)
    return [len(set(np.argmax(target.numpy(), axis=1).tolist()))
            for _, target in ds.take(batches)]
