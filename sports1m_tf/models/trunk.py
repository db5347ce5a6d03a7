"""The paper's single-frame network, shared by every model family (docs/design.md, "Models").

`C(96,11,3)-N-P-C(256,5,1)-N-P-C(384,3,1)-C(384,3,1)-C(256,3,1)-P-FC(4096)-FC(4096)`.
Frames are folded into the batch ([B*T, H, W, C]); a family's temporal
connectivity is a `TemporalWindows` before a convolution, so every family runs the
same layers and differs only by its temporal schedule.
"""
from __future__ import annotations

from typing import Sequence

import keras

from sports1m_tf.models.layers import LocalResponseNorm, TemporalWindows

# (filters, kernel, stride, normalise, pool) for conv1..conv5.
CONV_SPECS = (
    (96, 11, 3, True, True),
    (256, 5, 1, True, True),
    (384, 3, 1, False, False),
    (384, 3, 1, False, False),
    (256, 3, 1, False, True),
)
FC_UNITS = 4096
# Initialisers of the ReLU layers' kernels (the paper does not say). Keras's Glorot
# is the default: with SGD on raw pixels He's larger weights diverged (the training
# test's lr 0.01).
# "he_normal" (He et al. 2015: variance 2/fan_in, derived for rectifiers) goes
# with Adam on unit-scale inputs: there, Glorot let Adam kill most of slow
# fusion's conv2 channels and late fusion's fc6 units during the first loss
# plateau on the motion classes, and such runs stalled (docs/studies/motion.md).
KERNEL_INITS = ("glorot_uniform", "he_normal")
DEFAULT_KERNEL_INIT = "glorot_uniform"
# No temporal connectivity: each conv sees one time step.
NO_FUSION = ((1, 1),) * len(CONV_SPECS)


def scaled(units: int, width: float) -> int:
    """Width-multiplied layer size, at least 1."""
    return max(1, int(round(units * width)))


def apply_trunk(x, *, steps: int, temporal: Sequence[tuple[int, int]] = NO_FUSION,
                width: float = 1.0, last_pool: bool = True, prefix: str = "",
                kernel_init: str = DEFAULT_KERNEL_INIT):
    """Applies conv1..conv5 (with LRN and pooling) to time-folded frames.

    Args:
      x: float tensor `[B*steps, H, W, 3]`, mean-subtracted frames.
      steps: Time steps folded into the batch.
      temporal: (extent, stride) per conv layer; (1, 1) means per-frame.
      width: Multiplier on every conv width.
      last_pool: False for multires streams, which end at conv5 (7×7).
      prefix: Layer-name prefix (a multires stream's name).
      kernel_init: Keras initializer of the conv kernels (`KERNEL_INITS`).

    Returns:
      (features `[B*steps_out, h, w, 256*width]`, steps_out).
    """
    if len(temporal) != len(CONV_SPECS):
        raise ValueError(f"temporal schedule needs {len(CONV_SPECS)} entries, got {temporal}")
    for i, ((filters, kernel, stride, normalise, pool), (extent, t_stride)) in enumerate(
            zip(CONV_SPECS, temporal), start=1):
        if (extent, t_stride) != (1, 1):
            windows = TemporalWindows(steps, extent, t_stride, name=f"{prefix}time{i}")
            x = windows(x)
            steps = windows.output_steps
        x = keras.layers.Conv2D(scaled(filters, width), kernel, strides=stride, padding="same",
                                activation="relu", kernel_initializer=kernel_init,
                                name=f"{prefix}conv{i}")(x)
        if normalise:
            x = LocalResponseNorm(name=f"{prefix}norm{i}")(x)
        if pool and (i < len(CONV_SPECS) or last_pool):
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"{prefix}pool{i}")(x)
    return x, steps


def apply_head(x, *, num_classes: int, width: float = 1.0, dropout: float = 0.5,
               kernel_init: str = DEFAULT_KERNEL_INIT):
    """FC(4096)-dropout-FC(4096)-dropout-softmax classifier (float32 under mixed precision).

    `kernel_init` initialises fc6 and fc7 (ReLU layers); the softmax layer keeps
    Glorot, which suits a layer without a rectifier.

    Layer names `fc6`, `fc7`, `predictions` are what transfer learning replaces.
    """
    for name in ("fc6", "fc7"):
        x = keras.layers.Dense(scaled(FC_UNITS, width), activation="relu",
                               kernel_initializer=kernel_init, name=name)(x)
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                              name="predictions")(x)
