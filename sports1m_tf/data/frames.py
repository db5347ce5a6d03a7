"""JPEG frames → uint8 tensors, decoding only the frames and the window asked for."""
from __future__ import annotations

import tensorflow as tf


def frame_shape(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Height and width (int32 scalars) of the first of `encoded` [T], read from its header."""
    shape = tf.io.extract_jpeg_shape(encoded[0])
    return shape[0], shape[1]


def decode_frames(encoded: tf.Tensor, window: tf.Tensor | None = None,
                  size: int | None = None, frame_width: tf.Tensor | None = None) -> tf.Tensor:
    """Decodes JPEG frames, optionally only the crop `window`, to the same pixels as a full decode.

    With a window, `tf.io.decode_and_crop_jpeg` skips the rows below it and the
    columns outside it. Two details, both measured:
      * an unaligned left edge made it slower than a full decode, so the
        window asked for starts at a multiple of 16 (an MCU boundary);
      * the decoder upsamples chroma at the asked window's left and right
        columns as if they were the image's edges (values off by up to 14), so
        the asked window keeps at least one column of margin on each side
        (where the image has one) and the margin is sliced off.
    The frames are decoded by one op each (T is small and static), not by
    `tf.map_fn`: its while loop costs tens of microseconds per clip, and a
    function with control flow cannot run on tf.data's single-threaded executor.

    Args:
      encoded: string [T]. JPEG bytes, one per frame; T must be static.
      window: int32 [4] `[y, x, height, width]` or None for whole frames.
      size: Crop size (height = width = size) with a window.
      frame_width: int32 []. Width of the stored frames, needed with a window.

    Returns:
      uint8 [T, H, W, 3] (H = W = size with a window).
    """
    if window is None:
        decode = lambda e: tf.io.decode_jpeg(e, channels=3)
    else:
        x = window[1]
        left = tf.maximum(x - 1, 0) // 16 * 16
        right = tf.minimum(x + size + 1, frame_width)
        asked = tf.stack([window[0], left, size, right - left])
        margin = tf.stack([0, x - left, 0])
        decode = lambda e: tf.slice(tf.io.decode_and_crop_jpeg(e, asked, channels=3), margin,
                                    [size, size, 3])
    decoded = [decode(e) for e in tf.unstack(encoded, num=encoded.shape[0])]
    # One frame: a view, not a copy into a stacked tensor.
    return decoded[0][tf.newaxis] if len(decoded) == 1 else tf.stack(decoded)
