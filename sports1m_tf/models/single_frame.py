"""Single-frame model: the middle frame of the clip, no temporal connectivity."""
from sports1m_tf.models.trunk import NO_FUSION

TEMPORAL = NO_FUSION


def frames(clip_frames: int = 16) -> list[int]:
    return [clip_frames // 2]
