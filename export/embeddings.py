"""Video files → embedding rows through a SavedModel's `embed_video` signature.

The clips are those `sports1m-predict` reads (the same decoding processes and
clip choice); each clip's embedding is its `embedding_layer` activations
averaged over the 4 evaluation views, and a video's is the mean over its clips
(as its prediction is the mean over every view of every clip). No TensorFlow at
import: `VideoModel` loads it at the first clip.
"""
from __future__ import annotations

import numpy as np

from export.video_prediction import FileHandler, VideoModel, too_short


class _Rows:
    """One file's clip embeddings so far (all of them, or their running sum)."""

    def __init__(self):
        self.embeddings: list[np.ndarray] = []
        self.seconds: list[np.ndarray] = []
        self.total = None
        self.clips = 0


class EmbeddingHandler(FileHandler):
    """Each file's embedding rows: one per clip (`per_clip`) or the video's mean.

    `finish` gives `{video, clips, embedding: float32 [rows, d], seconds: float64
    [rows, 2] or None}`.
    """

    def __init__(self, model: VideoModel, per_clip: bool):
        super().__init__(model)
        self.per_clip = per_clip

    def new_state(self) -> _Rows:
        return _Rows()

    def add_segment(self, state: _Rows, segment) -> None:
        if not len(segment.clips):
            return
        clips = self.model.embed(segment.clips)
        state.clips += len(clips)
        if self.per_clip:
            state.embeddings.append(clips)
            state.seconds.append(segment.clip_seconds)
        else:
            total = clips.sum(axis=0, dtype=np.float64)
            state.total = total if state.total is None else state.total + total

    def finish(self, path: str, state: _Rows) -> dict:
        if state.clips == 0:
            return too_short(path)
        if self.per_clip:
            return {"video": path, "clips": state.clips,
                    "embedding": np.concatenate(state.embeddings),
                    "seconds": np.concatenate(state.seconds)}
        return {"video": path, "clips": state.clips,
                "embedding": (state.total / state.clips).astype(np.float32)[np.newaxis],
                "seconds": None}
