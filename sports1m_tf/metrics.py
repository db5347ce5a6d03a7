"""The paper's metrics in plain NumPy (docs/design.md, "Metrics").

Shared by training's validation, `sports1m-eval` and the feature-histogram
baseline, so every number in the project is computed the same way. No
TensorFlow here: the functions take probabilities `[N, C]` and labels, and each
writes its arithmetic out.

Labels are given as `label_lists`: one sequence of class indices per row
(several for a multi-label Sports-1M video; negative entries are padding and
ignored, so a `-1`-padded int array works too), or directly as a boolean
multi-hot array `[N, C]`.

Ties. `hit_at_k` resolves ties in the scores AGAINST the prediction: a row is a
hit only when every way of breaking the ties puts one of its labels in the top
k. A constant predictor (e.g. a dead untrained net) therefore scores 0, not 1
as `tf.math.in_top_k` would give it. `average_precision_per_class` treats tied
scores as one threshold, as scikit-learn's `average_precision_score` does.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterator, Mapping, Sequence

import numpy as np

LabelLists = Sequence[Sequence[int]] | np.ndarray
# The k of the reported Hit@k and the number of top classes listed (the paper's Hit@5).
TOP_K = 5
# Elements per block where [N, C] temporaries would otherwise be made: 2^22 float32
# values are 16 MB, so with 100,000 classes a block is 41 rows, with 487 it is 8,612.
_BLOCK_ELEMENTS = 1 << 22


def row_blocks(rows: int, columns: int) -> Iterator[slice]:
    """Slices of at most `_BLOCK_ELEMENTS` // `columns` rows (at least one) covering `rows`."""
    step = max(1, _BLOCK_ELEMENTS // max(columns, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------
def multi_hot(label_lists: LabelLists, num_classes: int) -> np.ndarray:
    """Turns label lists into a boolean matrix.

    Args:
      label_lists: one sequence of class indices per row (negative = padding),
        or a boolean `[N, num_classes]` array (returned as is).

    Returns:
      bool `[N, C]`: `out[i, c]` is True when row i has label c.
    """
    if isinstance(label_lists, np.ndarray) and label_lists.dtype == bool:
        if label_lists.ndim != 2 or label_lists.shape[1] != num_classes:
            raise ValueError(f"multi-hot labels have shape {label_lists.shape}, "
                             f"expected [N, {num_classes}]")
        return label_lists
    out = np.zeros((len(label_lists), num_classes), dtype=bool)
    for i, labels in enumerate(label_lists):
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        labels = labels[labels >= 0]
        if labels.size and labels.max() >= num_classes:
            raise ValueError(f"row {i}: label {labels.max()} is out of range for "
                             f"{num_classes} classes")
        out[i, labels] = True
    return out


def _checked(probs: np.ndarray, label_lists: LabelLists, *,
             require_labels: bool) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be [N, C], got shape {probs.shape}")
    if len(label_lists) != probs.shape[0]:
        raise ValueError(f"{probs.shape[0]} rows of probs but {len(label_lists)} label rows")
    truth = multi_hot(label_lists, probs.shape[1])
    if require_labels:
        empty = np.flatnonzero(~truth.any(axis=1))
        if empty.size:
            raise ValueError(f"{empty.size} rows have no labels (first: row {empty[0]})")
    return probs, truth


# ---------------------------------------------------------------------------
# Hit@k (paper Table 1)
# ---------------------------------------------------------------------------
def hits_at_k(probs: np.ndarray, label_lists: LabelLists, k: int) -> np.ndarray:
    """Per row: whether one of its labels is among the k highest scores.

    Worst-case tie-breaking: take the row's best-scoring label; the row is a hit
    when fewer than k NON-label classes score at least as much as it.

    Args:
      probs: `[N, C]` scores.
      label_lists: labels per row (see module docstring); every row needs one.
      k: int >= 1.

    Returns:
      bool `[N]`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    probs, truth = _checked(probs, label_lists, require_labels=True)
    hits = np.empty(probs.shape[0], bool)
    for rows in row_blocks(*probs.shape):  # bounded temporaries
        p, t = probs[rows], truth[rows]
        best_label_score = np.where(t, p, -np.inf).max(axis=1, keepdims=True)  # [n, 1]
        rivals = (~t) & (p >= best_label_score)                                 # [n, C]
        hits[rows] = rivals.sum(axis=1) < k
    return hits


def hit_at_k(probs: np.ndarray, label_lists: LabelLists, k: int) -> float:
    """Fraction of rows with one of their labels in the top k (`hits_at_k(...).mean()`)."""
    return float(hits_at_k(probs, label_lists, k).mean()) if len(label_lists) else float("nan")


def top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best classes of each row, best first (ties: lower class index first).

    Returns:
      (indices int64 `[N, k]`, scores `[N, k]`).
    """
    probs = np.asarray(probs)
    order = np.empty((probs.shape[0], min(k, probs.shape[1])), np.int64)
    for rows in row_blocks(*probs.shape):  # bounded temporaries
        order[rows] = np.argsort(-probs[rows], axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


# ---------------------------------------------------------------------------
# Average precision (the paper's Tables 2 and 4)
# ---------------------------------------------------------------------------
def _average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP of one class: sum over thresholds of (recall step) x (precision there)."""
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    true_pos = np.cumsum(positive)
    ranked = np.arange(1, scores.size + 1)
    # Tied scores form one threshold: keep only the last row of each run of ties.
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    true_pos, ranked = true_pos[last_of_tie], ranked[last_of_tie]
    precision = true_pos / ranked
    recall = true_pos / true_pos[-1]
    recall_step = np.diff(recall, prepend=0.0)
    return float(np.sum(recall_step * precision))


def average_precision_per_class(probs: np.ndarray, label_lists: LabelLists) -> np.ndarray:
    """Average precision of each class, ranking all rows by that class's score.

    A class with no positive row has no defined AP: it gets NaN and
    `mean_average_precision` leaves it out (on a small test set many Sports-1M
    classes have no video).

    Args:
      probs: `[N, C]` scores.
      label_lists: labels per row (rows without labels are negatives everywhere).

    Returns:
      float64 `[C]`, NaN for classes without positives.
    """
    probs, truth = _checked(probs, label_lists, require_labels=False)
    ap = np.full(probs.shape[1], np.nan)
    for c in np.flatnonzero(truth.any(axis=0)):
        ap[c] = _average_precision(probs[:, c], truth[:, c])
    return ap


def mean_average_precision(probs: np.ndarray | None = None, label_lists: LabelLists | None = None,
                           *, ap_per_class: np.ndarray | None = None) -> float:
    """Mean of the per-class APs over the classes that have positives.

    Args:
      probs, label_lists: as for `average_precision_per_class`; or
      ap_per_class: `[C]` APs already computed (NaN entries are left out).

    Returns:
      float; NaN when no class has a positive.
    """
    if ap_per_class is None:
        ap_per_class = average_precision_per_class(probs, label_lists)
    ap_per_class = np.asarray(ap_per_class, dtype=np.float64)
    defined = ap_per_class[~np.isnan(ap_per_class)]
    return float(defined.mean()) if defined.size else float("nan")


def group_map(ap_per_class: np.ndarray, groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """mAP within each group of classes (e.g. the five UCF-101 groups, see `ucf101_groups`).

    Returns:
      `{group: mean of the defined APs of its classes}` (NaN when none is defined).
    """
    ap_per_class = np.asarray(ap_per_class, dtype=np.float64)
    return {name: mean_average_precision(ap_per_class=ap_per_class[np.asarray(idx, dtype=int)])
            for name, idx in groups.items()}


# The five action groups of UCF-101 (Soomro et al. 2012), as named in its
# classInd.txt, are data: resources/ucf101_groups.json (all 101 classes, each in
# exactly one group). UCF101_GROUPS holds the four named groups; "Sports" is
# whatever they do not hold (50 classes), so non-UCF names fall there too.
UCF101_GROUPS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources",
                                  "ucf101_groups.json")
UCF101_REST_GROUP = "Sports"


def load_ucf101_groups(path: str = UCF101_GROUPS_FILE) -> tuple[list[str], dict[str, list[str]]]:
    """Reads the UCF-101 class list and its five groups.

    Returns:
      (the 101 class names in classInd.txt order, `{group: [class names]}` with
      the five groups in the paper's order).

    Raises:
      ValueError: naming the file, when a class is in no group or in several.
    """
    with open(path) as f:
        doc = json.load(f)
    classes, groups = list(doc["classes"]), {g: list(v) for g, v in doc["groups"].items()}
    listed = [c for names in groups.values() for c in names]
    if sorted(listed) != sorted(classes) or len(set(classes)) != len(classes):
        missing = sorted(set(classes) - set(listed))
        twice = sorted({c for c in listed if listed.count(c) > 1})
        unknown = sorted(set(listed) - set(classes))
        raise ValueError(f"{path}: the groups must hold every class exactly once "
                         f"(in no group: {missing}; in several: {twice}; unknown: {unknown})")
    return classes, groups


UCF101_CLASSES, UCF101_ALL_GROUPS = load_ucf101_groups()
UCF101_GROUPS = {g: names for g, names in UCF101_ALL_GROUPS.items() if g != UCF101_REST_GROUP}


def ucf101_groups(class_names: Sequence[str]) -> dict[str, list[int]]:
    """Class indices of each UCF-101 group, for `group_map`.

    Names are matched case-insensitively (the `HandstandPushups` class is spelled
    `HandStandPushups` in UCF-101's file names); classes in none of the four
    named groups are Sports.

    Returns:
      `{group name: [class indices]}` with the five groups, in the paper's order.
    """
    where = {name.lower(): group for group, names in UCF101_GROUPS.items() for name in names}
    groups: dict[str, list[int]] = {g: [] for g in (*UCF101_GROUPS, UCF101_REST_GROUP)}
    for index, name in enumerate(class_names):
        groups[where.get(name.lower(), UCF101_REST_GROUP)].append(index)
    return groups


# ---------------------------------------------------------------------------
# Confusions
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class Confusions:
    """Top-1 confusion counts kept sparse: `count[k]` rows of true class `true[k]`
    predicted as `predicted[k]`, each (true, predicted) pair once.

    A dense `[C, C]` int64 matrix needs 80 GB at 100,000 classes; this holds at most
    one entry per (row, label) counted, so its size follows the number of clips or
    videos, not the number of classes. `dense(classes)` gives the part a figure shows.
    """
    num_classes: int
    true: np.ndarray
    predicted: np.ndarray
    count: np.ndarray

    @classmethod
    def empty(cls, num_classes: int) -> "Confusions":
        none = np.zeros(0, np.int64)
        return cls(num_classes, none, none.copy(), none.copy())

    @classmethod
    def of(cls, num_classes: int, true, predicted, count=None) -> "Confusions":
        """From (possibly repeated) pairs; repeats are summed."""
        true, predicted = np.asarray(true, np.int64), np.asarray(predicted, np.int64)
        count = np.ones(true.size, np.int64) if count is None else np.asarray(count, np.int64)
        keys, inverse = np.unique(true * num_classes + predicted, return_inverse=True)
        summed = np.bincount(inverse.reshape(-1), weights=count, minlength=keys.size)
        keep = summed > 0
        return cls(num_classes, keys[keep] // num_classes, keys[keep] % num_classes,
                   summed[keep].astype(np.int64))

    @classmethod
    def from_dense(cls, counts: np.ndarray) -> "Confusions":
        counts = np.asarray(counts)
        true, predicted = np.nonzero(counts)
        return cls.of(counts.shape[0], true, predicted, counts[true, predicted])

    @classmethod
    def from_predictions(cls, probs: np.ndarray, label_lists: LabelLists) -> "Confusions":
        """The confusions of top-1 predictions (the rule of `confusion_counts`)."""
        probs, truth = _checked(probs, label_lists, require_labels=True)
        predicted = probs.argmax(axis=1)
        correct = truth[np.arange(len(predicted)), predicted]
        wrong_rows, wrong_labels = np.nonzero(truth[~correct])
        return cls.of(probs.shape[1],
                      np.r_[predicted[correct], wrong_labels],
                      np.r_[predicted[correct], predicted[~correct][wrong_rows]])

    def __add__(self, other: "Confusions") -> "Confusions":
        return Confusions.of(self.num_classes, np.r_[self.true, other.true],
                             np.r_[self.predicted, other.predicted],
                             np.r_[self.count, other.count])

    def total(self) -> int:
        return int(self.count.sum())

    def row_totals(self) -> np.ndarray:
        """int64 `[C]`: the counted rows of each true class."""
        return np.bincount(self.true, weights=self.count,
                           minlength=self.num_classes).astype(np.int64)

    def involvement(self) -> np.ndarray:
        """int64 `[C]`: off-diagonal counts of each class, as true or as predicted."""
        off = self.true != self.predicted
        both = np.r_[self.true[off], self.predicted[off]]
        return np.bincount(both, weights=np.r_[self.count[off], self.count[off]],
                           minlength=self.num_classes).astype(np.int64)

    def dense(self, classes: Sequence[int] | None = None) -> np.ndarray:
        """int64 `[n, n]`: `[i, j]` = rows of class `classes[i]` predicted as `classes[j]`
        (all C classes by default: only for a few thousand)."""
        classes = np.arange(self.num_classes) if classes is None else np.asarray(classes,
                                                                                  np.int64)
        where = np.full(self.num_classes, -1, np.int64)
        where[classes] = np.arange(classes.size)
        i, j = where[self.true], where[self.predicted]
        shown = (i >= 0) & (j >= 0)
        out = np.zeros((classes.size, classes.size), np.int64)
        np.add.at(out, (i[shown], j[shown]), self.count[shown])
        return out

    def pair_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(a, b, n)` with a < b: the confusions of each pair, both directions summed,
        ordered by (a, b)."""
        off = self.true != self.predicted
        a = np.minimum(self.true[off], self.predicted[off])
        b = np.maximum(self.true[off], self.predicted[off])
        pairs = Confusions.of(self.num_classes, a, b, self.count[off])
        return pairs.true, pairs.predicted, pairs.count

    def get(self, true: int, predicted: int) -> int:
        hit = (self.true == true) & (self.predicted == predicted)
        return int(self.count[hit].sum())


def as_confusions(counts: "Confusions | np.ndarray") -> Confusions:
    """`counts` as `Confusions` (a dense `[C, C]` array is converted)."""
    return counts if isinstance(counts, Confusions) else Confusions.from_dense(counts)


def confusion_counts(probs: np.ndarray, label_lists: LabelLists) -> np.ndarray:
    """Confusion matrix of top-1 predictions: `counts[true, predicted]`.

    A row whose top-1 class is one of its labels adds 1 to that class's diagonal
    (its other labels are not confused with anything); a wrong row adds 1 to
    `counts[label, top-1]` for each of its labels. Top-1 ties go to the lower
    class index. Dense: for few classes; `Confusions.from_predictions` holds the
    same counts at any number of classes.

    Returns:
      int64 `[C, C]`.
    """
    return Confusions.from_predictions(probs, label_lists).dense()


def most_confused_pairs(counts: "Confusions | np.ndarray",
                        top_n: int = 20) -> list[tuple[int, int, int]]:
    """The class pairs most often mistaken for each other, in either direction.

    Args:
      counts: `Confusions`, or `[C, C]` from `confusion_counts`.

    Returns:
      `[(a, b, counts[a, b] + counts[b, a])]` with a < b, largest first (ties:
      lower indices first), pairs with a zero count left out.
    """
    a, b, n = as_confusions(counts).pair_counts()
    order = np.lexsort((b, a, -n))[:top_n]
    return [(int(a[i]), int(b[i]), int(n[i])) for i in order]


def most_confused_classes(counts: "Confusions | np.ndarray", top_n: int) -> list[int]:
    """The `top_n` classes with the most off-diagonal counts, neighbours by confusion.

    Greedy chaining: start from the most confused pair; each next class is the
    remaining one most confused with the last placed class (or, when it has no
    confusion with it, the remaining class with the most confusions overall).
    Works on the chosen classes only, so at any number of classes.

    Returns:
      class indices, at most `top_n`, in display order.
    """
    counts = as_confusions(counts)
    involvement = counts.involvement()
    chosen = [int(c) for c in np.argsort(-involvement, kind="stable")[:top_n]]
    if not chosen:
        return []
    sub = counts.dense(chosen)
    np.fill_diagonal(sub, 0)
    symmetric = sub + sub.T  # [top_n, top_n], in `chosen` order
    position = {c: i for i, c in enumerate(chosen)}
    remaining = set(chosen)
    order = [max(chosen, key=lambda c: (symmetric[position[c]].max(), involvement[c], -c))]
    remaining.discard(order[0])
    while remaining:
        last = position[order[-1]]
        best = max(remaining, key=lambda c: (symmetric[last, position[c]], involvement[c], -c))
        order.append(best)
        remaining.discard(best)
    return order
