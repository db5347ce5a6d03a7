"""Late fusion: two single-frame towers 15 frames apart, shared weights, merged at fc6.

Both frames run through the same conv layers (time folded into the batch), so the
towers share one set of kernels; `MergeTime` concatenates them before fc6.
"""
from sports1m_tf.models.trunk import NO_FUSION
from tfrecord_tools.schema import CLIP_FRAMES

TEMPORAL = NO_FUSION


def frames(clip_frames: int = CLIP_FRAMES) -> list[int]:
    """The first and the last frame of the clip."""
    return [0, clip_frames - 1]
