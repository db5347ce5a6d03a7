"""Representative clips for full-integer quantization: what the model will see, a hundred or so.

From clip records (a run's validation records: spread over as many videos as
possible, each video's share spread in time) or from video files (read as
`sports1m-predict` reads them). Either way a clip is uint8 [1, 16, S, S, 3] at
the stored frame size S, the model's frames filled and the others black, which
is what the TFLite file is fed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tfrecord_tools import schema


def clips_from_records(files: Sequence[str], frames: Sequence[int], frame_size: int,
                       count: int, clip_frames: int = schema.CLIP_FRAMES) -> list[np.ndarray]:
    """Up to `count` clips of clip records (see the module docstring).

    Raises:
      ValueError: the records' frames are not `frame_size` pixels.
    """
    from export.record_embeddings import clip_batches
    from sports1m_tf.data import clip_selection
    selection = clip_selection.spread_over_videos(clip_selection.list_clips(files), count)
    out = []
    for batch in clip_batches(files, frames, selection, batch_size=1):
        stored = batch["frames"].numpy()
        if stored.shape[2:4] != (frame_size, frame_size):
            raise ValueError(f"the records hold {stored.shape[2]}x{stored.shape[3]} frames, "
                             f"the model {frame_size}x{frame_size}")
        clip = np.zeros((1, clip_frames, frame_size, frame_size, 3), np.uint8)
        clip[:, list(frames)] = stored
        out.append(clip)
    return out


def clips_from_videos(paths: Sequence[str], frames: Sequence[int], frame_size: int,
                      count: int) -> list[np.ndarray]:
    """Up to `count` clips spread evenly over video files (an equal share each).

    Raises:
      video_input.VideoError: a file gives no clip (names the problem).
    """
    from export import video_input
    share = max(1, -(-count // max(len(paths), 1)))
    out = []
    for path in paths:
        clips = video_input.read_clips(path, share, frames=frames, size=frame_size)
        out.extend(clip[np.newaxis] for clip in clips)
    return out[:count]
