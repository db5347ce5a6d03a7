"""Per-view softmax outputs → video predictions, grouped by media id as they stream in.

The paper's video prediction (§4.1) is the mean of the softmax outputs of every
view of every sampled clip of the video. The evaluation batches arrive in
reading order; a video's clips may sit in several shards (and so arrive
interleaved with other videos, or at both ends of the pass), and under a
distribution strategy a clip's views may even be split between replicas. So the
grouping never assumes adjacency: each row is added to its video's running sum,
found through a dict `media id → row`, and the mean is taken at the end
(sum / count; with whole clips this equals `metrics.average_views` followed by a
mean over clips, because every clip then carries the same number of views).

Memory: one float32 running sum per video and model, `videos × models × C × 4`
bytes (Sports-1M test: 200,000 × 487 × 4 B ≈ 0.39 GB per model), plus a
multi-hot label row per video (× C bytes). The per-view outputs themselves
(20 clips × 4 views = 80 rows per video) are never kept. Nothing smaller is
possible for the exact paper metrics: a class's average precision ranks every
video by that class's score, so the video × class matrix is needed at the end
anyway. float32 sums of at most a few hundred probabilities lose < 1e-5.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass
class VideoPredictions:
    """The averaged predictions of every video, in first-seen order.

    Attributes:
      media_ids: list of V str.
      probs: float32 `[V, *trailing]`, e.g. `[V, C]` or `[V, models, C]`.
      labels: bool `[V, C]` multi-hot (the union over the video's clips).
      rows: int64 `[V]`, the number of view rows averaged into each video.
    """
    media_ids: list[str]
    probs: np.ndarray
    labels: np.ndarray
    rows: np.ndarray


class VideoAccumulator:
    """Running per-video sums of per-view outputs (see the module docstring).

    Example:
      >>> acc = VideoAccumulator(num_classes=3)
      >>> acc.add(["a", "b", "a"], np.eye(3, dtype=np.float32), np.eye(3, dtype=bool))  # new videos
      2
      >>> acc.result().probs      # a: mean of rows 0 and 2
      array([[0.5, 0. , 0.5],
             [0. , 1. , 0. ]], dtype=float32)
    """

    def __init__(self, num_classes: int, trailing_shape: Sequence[int] | None = None):
        """Args:
          num_classes: int. C, the width of the label rows.
          trailing_shape: shape of one row of outputs; defaults to `(C,)`.
        """
        self.num_classes = num_classes
        self.trailing_shape = tuple(trailing_shape or (num_classes,))
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._sums = np.zeros((16, *self.trailing_shape), np.float32)
        self._labels = np.zeros((16, num_classes), bool)
        self._rows = np.zeros(16, np.int64)
        self.label_conflicts = 0  # videos whose clips disagreed on their labels

    def __len__(self) -> int:
        return len(self._ids)

    def _grow(self, needed: int) -> None:
        # Doubling keeps the amortised cost of a new video O(1).
        capacity = self._sums.shape[0]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity)
        for name in ("_sums", "_labels", "_rows"):
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), old.dtype)
            new[:old.shape[0]] = old
            setattr(self, name, new)

    def _video_rows(self, media_ids: Sequence[str]) -> np.ndarray:
        rows = np.empty(len(media_ids), np.int64)
        for i, media_id in enumerate(media_ids):
            row = self._index.get(media_id)
            if row is None:
                row = self._index[media_id] = len(self._ids)
                self._ids.append(media_id)
            rows[i] = row
        self._grow(len(self._ids))
        return rows

    def add(self, media_ids: Sequence[str], outputs: np.ndarray, labels: np.ndarray) -> int:
        """Adds a batch of view rows.

        Args:
          media_ids: B str. The video of each row.
          outputs: `[B, *trailing_shape]` softmax outputs.
          labels: `[B, C]` multi-hot (bool or 0/1 floats).

        Returns:
          The number of videos seen for the first time in this batch.
        """
        outputs = np.asarray(outputs, np.float32)
        labels = np.asarray(labels).astype(bool)
        if outputs.shape[1:] != self.trailing_shape or outputs.shape[0] != len(media_ids):
            raise ValueError(f"outputs of shape {outputs.shape} for {len(media_ids)} rows of "
                             f"shape {self.trailing_shape}")
        before = len(self._ids)
        rows = self._video_rows(media_ids)
        new = rows >= before
        # A video's clips should agree on its labels; count the ones that do not.
        seen = rows[~new]
        conflict = (self._labels[seen] != labels[~new]).any(axis=1)
        self.label_conflicts += len(np.unique(seen[conflict]))
        np.add.at(self._sums, rows, outputs)
        np.add.at(self._rows, rows, 1)
        np.logical_or.at(self._labels, rows, labels)
        return len(self._ids) - before

    def result(self) -> VideoPredictions:
        """The mean of each video's rows (float32), its labels and row counts."""
        n = len(self._ids)
        count = self._rows[:n].reshape((n,) + (1,) * len(self.trailing_shape))
        return VideoPredictions(media_ids=list(self._ids),
                                probs=(self._sums[:n] / np.maximum(count, 1)).astype(np.float32),
                                labels=self._labels[:n].copy(), rows=self._rows[:n].copy())
