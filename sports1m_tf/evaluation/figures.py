"""Evaluation figures as PNG files (matplotlib, Agg backend: no display needed).

- `plot_confusion`: the confusion matrix restricted to the N classes most
  involved in confusions (`metrics.most_confused_classes`), ordered so that
  classes confused with each other sit side by side. 487 × 487 cells are
  unreadable (100,000 cannot even be held densely); the errors worth reading are
  among a few fine-grained classes (as in the paper: deer hunting vs. hunting, ...).
- `plot_prediction_montage`: the paper's Figure 4: per video one frame, its
  ground truth (blue) and the top-5 predictions as bars, green when the class
  is one of the video's labels, red when not.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sports1m_tf import metrics  # noqa: E402
from tfrecord_tools import fileio  # noqa: E402

TRUTH_COLOUR = "#1f5fbf"
CORRECT_COLOUR = "#2ca02c"
WRONG_COLOUR = "#d62728"


def plot_confusion(counts: np.ndarray, class_names: Sequence[str], path: str, *,
                   top_n: int = 30, title: str = "Most confused classes") -> str:
    """Writes the confusion matrix of the most confused classes as a PNG.

    Cells are the fraction of each true class's videos predicted as each class
    (row-normalised over ALL classes, so a row sums to < 1 when some of its
    videos went to classes not shown); counts are printed in the cells when
    there are few enough to read.

    Args:
      counts: `metrics.Confusions`, or int `[C, C]`, `counts[true, predicted]`.
      class_names: C names.

    Returns:
      `path`.
    """
    counts = metrics.as_confusions(counts)
    totals = counts.row_totals()
    order = metrics.most_confused_classes(counts, top_n)
    if not order:  # no confusion at all: show the classes with the most videos
        order = [int(c) for c in np.argsort(-totals, kind="stable")[:top_n]]
    sub = counts.dense(order)
    rate = sub / np.maximum(totals[order][:, None], 1)
    n = len(order)
    side = max(4.0, 0.32 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(rate, cmap="Blues", vmin=0.0, vmax=max(rate.max(), 1e-9))
    names = [class_names[c] for c in order]
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("true label")
    ax.set_title(title)
    if n <= 40:
        for i, j in zip(*np.nonzero(sub)):
            ax.text(j, i, str(sub[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if rate[i, j] > 0.5 * rate.max() else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    with fileio.atomic_path(path) as tmp:  # keeps the .png ending matplotlib reads
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def plot_prediction_montage(frames: Sequence[np.ndarray], labels: Sequence[Sequence[int]],
                            top_indices: np.ndarray, top_probs: np.ndarray,
                            class_names: Sequence[str], path: str, *,
                            titles: Sequence[str] | None = None, columns: int = 4) -> str:
    """Writes a grid of videos with their ground truth and top-k predictions (paper Fig. 4).

    Args:
      frames: N uint8 RGB images `[H, W, 3]`, one per video.
      labels: N lists of true class indices.
      top_indices: int `[N, k]` predicted classes, best first.
      top_probs: `[N, k]` their probabilities.
      class_names: C names.
      titles: N strings shown small above each frame (e.g. media ids).

    Returns:
      `path`.
    """
    n = len(frames)
    if n == 0:
        raise ValueError("no videos to draw in the montage")
    k = top_indices.shape[1]
    columns = min(columns, n)
    grid_rows = -(-n // columns)
    fig = plt.figure(figsize=(3.0 * columns, 4.6 * grid_rows))
    grid = fig.add_gridspec(2 * grid_rows, columns, height_ratios=[2.4, 1.6] * grid_rows,
                            hspace=0.35, wspace=0.25)
    for v in range(n):
        r, c = divmod(v, columns)
        ax_image = fig.add_subplot(grid[2 * r, c])
        ax_image.imshow(np.asarray(frames[v], np.uint8))
        ax_image.set_xticks([])
        ax_image.set_yticks([])
        truth = ", ".join(class_names[i] for i in labels[v])
        ax_image.set_title(truth, color=TRUTH_COLOUR, fontsize=9, fontweight="bold")
        if titles is not None:
            ax_image.set_xlabel(titles[v], fontsize=6, color="grey")
        ax_bars = fig.add_subplot(grid[2 * r + 1, c])
        colours = [CORRECT_COLOUR if i in set(labels[v]) else WRONG_COLOUR
                   for i in top_indices[v]]
        ax_bars.barh(range(k), top_probs[v], color=colours, height=0.8)
        for rank, (i, p) in enumerate(zip(top_indices[v], top_probs[v])):
            ax_bars.text(0.01, rank, f"{class_names[i]} {p:.2f}", va="center", fontsize=7)
        ax_bars.set_xlim(0, 1)
        ax_bars.set_ylim(k - 0.5, -0.5)  # best on top
        ax_bars.set_yticks([])
        ax_bars.tick_params(axis="x", labelsize=6)
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
