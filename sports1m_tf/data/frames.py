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


def decode_crops(encoded: tf.Tensor, sizes: tf.Tensor, offsets: tf.Tensor,
                 flips: tf.Tensor | None, size: int, count: int) -> tf.Tensor:
    """Decodes a batch of clips, each frame only in its clip's crop window, mirrored where asked.

    The same pixels as `decode_frames` with the window at `offsets` and then a
    left-right mirror (same MCU-aligned window and margin). Every per-clip
    number is computed for the whole batch at once and each frame costs a few
    ops: in a per-clip map the arithmetic around the decode cost as much as
    decoding a 200×200 frame.

    Args:
      encoded: string [count, T]. JPEG bytes; T static.
      sizes: int32 [count, 2]. Height and width of each clip's frames.
      offsets: int32 [count, 2]. `(y, x)` of each clip's window.
      flips: bool [count] (mirror the clip) or None (no mirroring).
      size: Crop size.
      count: Clips (static).

    Returns:
      uint8 [count, T, size, size, 3].
    """
    frames_per_clip = encoded.shape[1]
    y, x, width = offsets[:, 0], offsets[:, 1], sizes[:, 1]
    left = tf.maximum(x - 1, 0) // 16 * 16
    right = tf.minimum(x + size + 1, width)
    asked = tf.unstack(tf.stack([y, left, tf.fill([count], size), right - left], axis=1),
                       num=count)
    zeros = tf.zeros([count], tf.int32)
    begins = tf.unstack(tf.stack([zeros, x - left, zeros], axis=1), num=count)
    crop = [size, size, 3]
    if flips is not None:
        # Each frame goes on as one of two pieces of its batch, the other empty: as
        # it is, or mirrored. Only the clips that flip pay for the (slow, 3-byte)
        # pixel reverse; a piece of the whole tensor is a view, not a copy.
        flipped = tf.cast(flips, tf.int32)
        full = tf.fill([count], size)
        kept, mirrored = (tf.unstack(tf.stack([n, full, full, tf.fill([count], 3)], axis=1),
                                     num=count) for n in (1 - flipped, flipped))
    else:
        kept = mirrored = [None] * count
    pieces = []
    for clip, window, begin, keep, mirror in zip(tf.unstack(encoded, num=count), asked,
                                                 begins, kept, mirrored):
        for frame in tf.unstack(clip, num=frames_per_clip):
            out = tf.slice(tf.io.decode_and_crop_jpeg(frame, window, channels=3), begin, crop)
            if keep is None:
                pieces.append(out)
                continue
            out = out[tf.newaxis]
            pieces.append(tf.slice(out, [0, 0, 0, 0], keep))
            # The 3-D middle-axis reverse is the fast one.
            turned = tf.reverse(tf.reshape(tf.slice(out, [0, 0, 0, 0], mirror), [-1, size, 3]),
                                [1])
            pieces.append(tf.reshape(turned, [-1, size, size, 3]))
    joined = tf.stack(pieces) if flips is None else tf.concat(pieces, 0)
    return tf.reshape(joined, [count, frames_per_clip, size, size, 3])
