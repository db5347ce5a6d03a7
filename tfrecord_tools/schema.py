"""The clip record: one `tf.train.SequenceExample` per clip, MediaSequence keys.

Writers (the converter's `clip_encoding.encode_clip`) and readers
(`sports1m_tf.data`, evaluation, the baseline) share these names so that the
Model Garden video reader and MediaPipe read the same files. The record's
contract is written out in docs/design.md ("Clip records").
"""
from __future__ import annotations


# Context features.
MEDIA_ID = "clip/media_id"
LABEL_INDEX = "clip/label/index"
LABEL_STRING = "clip/label/string"
START_TIMESTAMP = "clip/start/timestamp"
END_TIMESTAMP = "clip/end/timestamp"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
FRAME_RATE = "image/frame_rate"
# Feature lists (one entry per frame).
IMAGE_ENCODED = "image/encoded"
IMAGE_TIMESTAMP = "image/timestamp"

CLIP_FRAMES = 16
FRAME_SIZE = 200
