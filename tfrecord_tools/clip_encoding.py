"""The clip `tf.train.SequenceExample` serialised without importing TensorFlow.

The project's one record serializer (the converter, tests and benchmarks write
with it). Importing TensorFlow costs ≈3.5 s and ≈400 MB per process, which
converter workers (one per core, many per Beam worker) would pay only to
concatenate a few byte strings. The protobuf wire format of `example.proto` is
small enough to write directly; `tests/test_convert.py` checks that TensorFlow
parses the result into a message equal to the one an independent `tf.train`
encoder builds (`tests/reference_records.py`).

Wire format used (tensorflow/core/example/{example,feature}.proto):
  SequenceExample{context: Features = 1, feature_lists: FeatureLists = 2}
  Features{map<string, Feature> feature = 1}   FeatureLists{map<string, FeatureList> = 1}
  Feature{bytes_list = 1 | float_list = 2 | int64_list = 3}   FeatureList{repeated Feature = 1}
  BytesList{repeated bytes = 1}  FloatList{packed float = 1}  Int64List{packed int64 = 1}
"""
from __future__ import annotations

import struct
from typing import Sequence

from tfrecord_tools import schema

_LEN = 2  # wire type "length-delimited"


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | _LEN) + _varint(len(payload)) + payload


def _bytes_feature(values: Sequence[bytes]) -> bytes:
    return _field(1, b"".join(_field(1, v) for v in values))


def _int64_feature(values: Sequence[int]) -> bytes:
    return _field(3, _field(1, b"".join(_varint(int(v)) for v in values)))


def _float_feature(values: Sequence[float]) -> bytes:
    return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))


def _map(entries: dict[str, bytes]) -> bytes:
    return b"".join(_field(1, _field(1, k.encode()) + _field(2, v)) for k, v in entries.items())


def encode_clip(
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
    """Serialises one clip (keys: `tfrecord_tools.schema`; docs/design.md, "Clip records").

    Args:
      label_indices: ints. Class indices.
      label_strings: strs. Class names, parallel to `label_indices`.
      encoded_frames: One encoded image per frame.
      frame_timestamps_us: ints. Microseconds from the video's start, per frame.
      frame_rate: Frames per second of the stored frames.

    Returns:
      The serialised `tf.train.SequenceExample`.
    """
    if len(encoded_frames) != len(frame_timestamps_us):
        raise ValueError(
            f"{media_id}: {len(encoded_frames)} frames but {len(frame_timestamps_us)} timestamps")
    context = {
        schema.MEDIA_ID: _bytes_feature([media_id.encode()]),
        schema.LABEL_INDEX: _int64_feature(label_indices),
        schema.LABEL_STRING: _bytes_feature([s.encode() for s in label_strings]),
        schema.START_TIMESTAMP: _int64_feature([frame_timestamps_us[0]]),
        schema.END_TIMESTAMP: _int64_feature([frame_timestamps_us[-1]]),
        schema.IMAGE_FORMAT: _bytes_feature([image_format.encode()]),
        schema.IMAGE_HEIGHT: _int64_feature([height]),
        schema.IMAGE_WIDTH: _int64_feature([width]),
        schema.IMAGE_CHANNELS: _int64_feature([3]),
        schema.FRAME_RATE: _float_feature([frame_rate]),
    }
    feature_lists = {
        schema.IMAGE_ENCODED: b"".join(_field(1, _bytes_feature([f])) for f in encoded_frames),
        schema.IMAGE_TIMESTAMP: b"".join(
            _field(1, _int64_feature([t])) for t in frame_timestamps_us),
    }
    return _field(1, _map(context)) + _field(2, _map(feature_lists))
