"""Early fusion: conv1 spans all T = 10 frames (11×11×3×10, valid in time): one output step.

What the family adds to the shared trunk (`trunk.py`) is which frames it reads
and the (temporal extent, temporal stride) of each convolution.
"""
from tfrecord_tools.schema import CLIP_FRAMES

T = 10
TEMPORAL = (
    (T, 1),  # conv1: all 10 frames at once: 10 → 1 step
    (1, 1),  # conv2
    (1, 1),  # conv3
    (1, 1),  # conv4
    (1, 1),  # conv5
)


def frames(clip_frames: int = CLIP_FRAMES) -> list[int]:
    """The middle `T` frames of the clip."""
    start = (clip_frames - T) // 2
    return list(range(start, start + T))
