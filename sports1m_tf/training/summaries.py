"""A training run's TensorBoard events: scalars, conv1 filters (paper Figure 3), confusions.

Images are built in NumPy (no plotting library in the training loop) and
written with `tf.summary.image` inside the caller's writer context. Imported by
the training loop once TensorFlow may load (see `sports1m_tf.cli`).
"""
from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

_PAD = 1  # pixels between filters and between a filter's time slices


def _normalise(kernel: np.ndarray) -> np.ndarray:
    low, high = kernel.min(), kernel.max()
    return (kernel - low) / (high - low) if high > low else np.full_like(kernel, 0.5)


def filter_grid(kernel: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Tiles a first-layer kernel into one RGB image.

    Each filter is scaled to [0, 1] on its own. A temporal kernel (input
    channels `extent * 3`, laid out time-major as `TemporalWindows` stacks
    them) shows its time slices side by side, earliest on the left.

    Args:
      kernel: float [kh, kw, extent * 3, filters].
      columns: Filters per row; defaults to about a square grid.

    Returns:
      uint8 [H, W, 3].
    """
    kh, kw, channels, count = kernel.shape
    if channels % 3:
        raise ValueError(f"conv1 kernel has {channels} input channels, not a multiple of 3")
    extent = channels // 3
    # [kh, kw, extent, 3, F] -> [F, kh, extent, kw, 3]: time slices side by side.
    per_filter = kernel.reshape(kh, kw, extent, 3, count).transpose(4, 0, 2, 1, 3)
    cell_w = extent * (kw + _PAD)
    columns = columns or max(1, math.ceil(math.sqrt(count * (kh + _PAD) / cell_w)))
    rows = math.ceil(count / columns)
    image = np.ones((rows * (kh + _PAD) + _PAD, columns * cell_w + _PAD, 3), np.float32)
    for f in range(count):
        r, c = divmod(f, columns)
        tile = _normalise(per_filter[f])                               # [kh, extent, kw, 3]
        tile = np.pad(tile, ((0, 0), (0, 0), (0, _PAD), (0, 0)), constant_values=1.0)
        tile = tile.reshape(kh, extent * (kw + _PAD), 3)
        top, left = _PAD + r * (kh + _PAD), _PAD + c * cell_w
        image[top:top + kh, left:left + tile.shape[1]] = tile
    return (image * 255).round().astype(np.uint8)


def conv1_kernels(model) -> dict[str, np.ndarray]:
    """The first convolution of each stream: `conv1`, or `fovea_conv1` and `context_conv1`.

    Returns:
      layer name → kernel as float32 NumPy `[kh, kw, extent * 3, filters]`.
    """
    return {layer.name: np.asarray(layer.kernel.numpy(), np.float32)
            for layer in model.layers if layer.name.endswith("conv1")}


# Up to this many classes the whole confusion matrix is drawn; above, only the
# most confused classes (a dense [C, C] image of 100,000 classes would not fit).
WHOLE_CONFUSION_CLASSES = 512
CONFUSED_CLASSES_SHOWN = 64


def confusion_image(counts, cell: int | None = None) -> np.ndarray:
    """A confusion matrix as a heat map, each true-class row scaled to sum 1.

    White = 0, dark blue = the whole row; a red diagonal-free cell shows a
    confusion. Cells are `cell` pixels wide (default: ~512 pixels in all). Above
    `WHOLE_CONFUSION_CLASSES` classes it shows the `CONFUSED_CLASSES_SHOWN` most
    confused ones (`metrics.most_confused_classes`), rows still scaled by all of
    their clips.

    Args:
      counts: `metrics.Confusions`, or `[C, C]` `counts[true, predicted]`.

    Returns:
      uint8 `[n * cell, n * cell, 3]`, n = the classes shown.
    """
    from sports1m_tf import metrics
    counts = metrics.as_confusions(counts)
    shown = (np.arange(counts.num_classes) if counts.num_classes <= WHOLE_CONFUSION_CLASSES
             else metrics.most_confused_classes(counts, CONFUSED_CLASSES_SHOWN))
    sub = counts.dense(shown).astype(np.float64)
    classes = sub.shape[0]
    totals = counts.row_totals()[shown][:, None].astype(np.float64)
    rates = np.divide(sub, totals, out=np.zeros_like(sub), where=totals > 0)
    cell = cell or max(1, 512 // max(classes, 1))
    # Correct predictions in blue, confusions in red, intensity = rate.
    diagonal = np.eye(classes, dtype=bool)
    rgb = np.ones((classes, classes, 3))
    rgb[diagonal] = 1 - rates[diagonal][:, None] * np.array([0.9, 0.7, 0.0])
    rgb[~diagonal] = 1 - rates[~diagonal][:, None] * np.array([0.0, 0.9, 0.9])
    image = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)
    return (image * 255).round().astype(np.uint8)


def write_filter_images(model, step: int) -> None:
    """Writes each stream's conv1 filter grid as `filters/<layer>` (call inside a writer)."""
    for name, kernel in conv1_kernels(model).items():
        tf.summary.image(f"filters/{name}", filter_grid(kernel)[None], step=step)


def write_confusion_image(counts, step: int) -> None:
    """Writes the confusion matrix as `confusion_matrix` (call inside a writer)."""
    tf.summary.image("confusion_matrix", confusion_image(counts)[None], step=step)


def run_writers(model_dir: str, chief: bool):
    """`(train_writer, validation_writer)` of a run folder; no-ops off the chief."""
    if not chief:
        return tf.summary.create_noop_writer(), tf.summary.create_noop_writer()
    return (tf.summary.create_file_writer(os.path.join(model_dir, "train")),
            tf.summary.create_file_writer(os.path.join(model_dir, "validation")))


def write_training_scalars(writer, step: int, **scalars: float) -> None:
    """Writes `scalars` (name → value) at `step` to `writer`."""
    with writer.as_default():
        for name, value in scalars.items():
            tf.summary.scalar(name, value, step=step)


def write_validation(writers, step: int, validation: dict, model) -> None:
    """A validation's scalars and confusion image, and the model's conv1 filters.

    Args:
      writers: `run_writers`' pair.
      validation: dict with `hit_at_1`, `loss` and `confusion` (`metrics.Confusions`).
      model: the trained `keras.Model`.
    """
    train_writer, val_writer = writers
    with val_writer.as_default():
        tf.summary.scalar("clip_hit_at_1", validation["hit_at_1"], step=step)
        tf.summary.scalar("loss", validation["loss"], step=step)
        write_confusion_image(validation["confusion"], step)
    with train_writer.as_default():
        write_filter_images(model, step)
