"""Early fusion: conv1 spans all T = 10 frames (11×11×3×10, valid in time): one output step."""
from sports1m_tf.models.trunk import NO_FUSION

T = 10
TEMPORAL = ((T, 1),) + NO_FUSION[1:]


def frames(clip_frames: int = 16) -> list[int]:
    start = (clip_frames - T) // 2
    return list(range(start, start + T))
