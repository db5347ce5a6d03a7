"""An independent encoder of the clip record, for tests only: built with `tf.train`.

The project writes records with one serializer, the converter's
`tfrecord_tools.clip_encoding.encode_clip` (no TensorFlow); this one builds the
same message through TensorFlow's protos so that a test can check the two agree.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfrecord_tools.schema import (END_TIMESTAMP, FRAME_RATE, IMAGE_CHANNELS, IMAGE_ENCODED,
                                   IMAGE_FORMAT, IMAGE_HEIGHT, IMAGE_TIMESTAMP, IMAGE_WIDTH,
                                   LABEL_INDEX, LABEL_STRING, MEDIA_ID, START_TIMESTAMP)


def make_clip_example(
    *,
    media_id: str,
    label_indices: Sequence[int],
    label_strings: Sequence[str],
    encoded_frames: Sequence[bytes],
    frame_timestamps_us: Sequence[int],
    frame_rate: float,
    height: int,
    width: int,
    image_format: str = "JPEG",
) -> bytes:
    """Serialises one clip with `tf.train` (the arguments of `encode_clip`).

    Args:
      media_id: str. The video's id (file stem or YouTube id).
      label_indices: ints. Class indices (several for a multi-label video).
      label_strings: strs. Class names, parallel to `label_indices`.
      encoded_frames: bytes. One encoded image per frame.
      frame_timestamps_us: ints. Microseconds from the video's start, per frame.
      frame_rate: float. Frames per second of the stored frames.
      height: int. Stored frame height.
      width: int. Stored frame width.
      image_format: str. Defaults to "JPEG".

    Returns:
      The serialised `tf.train.SequenceExample`.
    """
    if len(encoded_frames) != len(frame_timestamps_us):
        raise ValueError(
            f"{media_id}: {len(encoded_frames)} frames but {len(frame_timestamps_us)} timestamps")

    def _bytes(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    def _ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    context = {
        MEDIA_ID: _bytes([media_id.encode()]),
        LABEL_INDEX: _ints(label_indices),
        LABEL_STRING: _bytes([s.encode() for s in label_strings]),
        START_TIMESTAMP: _ints([frame_timestamps_us[0]]),
        END_TIMESTAMP: _ints([frame_timestamps_us[-1]]),
        IMAGE_FORMAT: _bytes([image_format.encode()]),
        IMAGE_HEIGHT: _ints([height]),
        IMAGE_WIDTH: _ints([width]),
        IMAGE_CHANNELS: _ints([3]),
        FRAME_RATE: tf.train.Feature(float_list=tf.train.FloatList(value=[float(frame_rate)])),
    }
    feature_lists = {
        IMAGE_ENCODED: tf.train.FeatureList(feature=[_bytes([f]) for f in encoded_frames]),
        IMAGE_TIMESTAMP: tf.train.FeatureList(feature=[_ints([t]) for t in frame_timestamps_us]),
    }
    example = tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=feature_lists),
    )
    return example.SerializeToString()
