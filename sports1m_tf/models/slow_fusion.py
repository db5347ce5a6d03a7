"""Slow fusion: temporal extent 4, 2, 2 with stride 2 in conv1-3 on 10 frames: 10 → 4 → 2 → 1."""
from sports1m_tf.models.trunk import NO_FUSION

T = 10
TEMPORAL = ((4, 2), (2, 2), (2, 2)) + NO_FUSION[3:]


def frames(clip_frames: int = 16) -> list[int]:
    start = (clip_frames - T) // 2
    return list(range(start, start + T))
