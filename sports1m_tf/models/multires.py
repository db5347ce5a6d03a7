"""Multiresolution ("foveated") streams (docs/design.md, "Models").

The context stream sees the whole frame at half resolution, the fovea stream the
centre half at full resolution; each is its family's own trunk without the last
pool (ending at 7×7×256 for 178-pixel frames), with its own weights.
"""
from __future__ import annotations

import keras

STREAMS = ("fovea", "context")


def stream_input(x, stream: str, size: int):
    """Cuts a stream's view from time-folded frames `[B*T, size, size, 3]`.

    Returns `[B*T, size // 2, size // 2, 3]`.
    """
    half = size // 2
    if stream == "context":
        # Averaging 2×2 blocks is an exact area downsample by 2 (no resize kernel).
        x = keras.layers.Cropping2D(((0, size - 2 * half),) * 2, name="context_even")(x) \
            if size % 2 else x
        return keras.layers.AveragePooling2D(2, name="context_downsample")(x)
    if stream == "fovea":
        top = (size - half) // 2
        crop = (top, size - half - top)
        return keras.layers.Cropping2D((crop, crop), name="fovea_crop")(x)
    raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
