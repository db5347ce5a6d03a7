"""JPEG frames → uint8 tensors, decoding only the frames and the window asked for."""
from __future__ import annotations

import tensorflow as tf


def frame_shape(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Height and width (int32 scalars) of the first of `encoded` [T], read from its header."""
    shape = tf.io.extract_jpeg_shape(encoded[0])
    return shape[0], shape[1]


def decode_frames(encoded: tf.Tensor, window: tf.Tensor | None = None,
                  size: int | None = None) -> tf.Tensor:
    """Decodes JPEG frames, optionally only the crop `window`.

    With a window, `tf.io.decode_and_crop_jpeg` skips the rows below it and the
    columns outside it; it is asked for a window whose left edge is rounded
    down to a multiple of 16 pixels (an MCU boundary; an unaligned left edge
    made it slower than a full decode in our measurements) and the few extra
    columns are sliced off. T == 1 (single-frame models) is decoded without
    `tf.map_fn`, whose while loop costs tens of microseconds per clip.

    Args:
      encoded: string [T]. JPEG bytes, one per frame.
      window: int32 [4] `[y, x, height, width]` or None for whole frames.
      size: int. Crop size (height = width = size) with a window.

    Returns:
      uint8 [T, H, W, 3] (H = W = size with a window).
    """
    if window is None:
        decode = lambda e: tf.io.decode_jpeg(e, channels=3)
        frame_spec = tf.TensorSpec([None, None, 3], tf.uint8)
    else:
        left = window[1] % 16
        aligned = tf.stack([window[0], window[1] - left, window[2], window[3] + left])
        decode = lambda e: tf.io.decode_and_crop_jpeg(e, aligned, channels=3)[:, left:left + size]
        frame_spec = tf.TensorSpec([size, size, 3], tf.uint8)
    if encoded.shape[0] == 1:
        frames = decode(encoded[0])[tf.newaxis]
    else:
        frames = tf.map_fn(decode, encoded, fn_output_signature=frame_spec,
                           parallel_iterations=1)
    if window is not None:
        frames = tf.ensure_shape(frames, [encoded.shape[0], size, size, 3])
    return frames
