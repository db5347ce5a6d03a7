"""Single-frame model: the middle frame of the clip, no temporal connectivity."""
from sports1m_tf.models.trunk import NO_FUSION
from tfrecord_tools.schema import CLIP_FRAMES

TEMPORAL = NO_FUSION


def frames(clip_frames: int = CLIP_FRAMES) -> list[int]:
    """The middle frame of the clip."""
    return [clip_frames // 2]
