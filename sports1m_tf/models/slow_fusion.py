"""Slow fusion: the middle 10 frames, fused a little in each of conv1-3: 10 → 4 → 2 → 1 steps.

What the family adds to the shared trunk (`trunk.py`) is which frames it reads
and the (temporal extent, temporal stride) of each convolution; docs/design.md
("Models") compares the families.
"""
from tfrecord_tools.schema import CLIP_FRAMES

T = 10
TEMPORAL = (
    (4, 2),  # conv1: windows of 4 frames, stride 2: 10 → 4 steps
    (2, 2),  # conv2: 4 → 2
    (2, 2),  # conv3: 2 → 1
    (1, 1),  # conv4
    (1, 1),  # conv5
)


def frames(clip_frames: int = CLIP_FRAMES) -> list[int]:
    """The middle `T` frames of the clip."""
    start = (clip_frames - T) // 2
    return list(range(start, start + T))
