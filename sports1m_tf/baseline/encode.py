"""One clip's work, run in worker processes: decode JPEGs → descriptors → histograms.

No TensorFlow here: workers are spawned processes that import only NumPy and
OpenCV (and start in well under a second). A failure comes back as a string
naming the problem, so one bad clip never stops a pool.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from sports1m_tf.baseline import descriptors as desc_lib
from sports1m_tf.baseline.histograms import clip_histograms
from sports1m_tf.baseline.vocabulary import Vocabulary

_STATE: dict = {}


def init_worker(settings: desc_lib.DescriptorSettings, vocabulary_path: str | None) -> None:
    """Per-process setup: one OpenCV thread (processes give the parallelism), the vocabulary."""
    cv2.setNumThreads(1)
    _STATE["settings"] = settings
    _STATE["quadrants"] = desc_lib.patch_quadrants(settings)
    _STATE["vocabulary"] = Vocabulary.load(vocabulary_path) if vocabulary_path else None


def needed_frames(num_frames: int, settings: desc_lib.DescriptorSettings) -> list[int]:
    """Indices of the stored frames the descriptors read (so only those travel and decode)."""
    pairs = desc_lib.frame_indices(num_frames, settings)
    return sorted({i for pair in pairs for i in pair})


def _descriptors(num_frames: int, frames: dict[int, bytes]) -> dict[str, np.ndarray]:
    settings = _STATE["settings"]
    pairs = desc_lib.frame_indices(num_frames, settings)
    decoded = {}
    for i, data in frames.items():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"frame {i} is not a decodable image")
        decoded[i] = image
    return desc_lib.clip_descriptors(decoded, pairs, settings)


def sample_clip(task: tuple) -> tuple[str, dict[str, np.ndarray] | None, str | None]:
    """Random descriptors of one clip, for fitting the vocabulary.

    Args:
      task: (source, num_frames, {frame index: JPEG bytes}, rows per type, seed).

    Returns:
      (source, {type: float32 [<= rows, D]} or None, error or None).
    """
    source, num_frames, frames, rows, seed = task
    try:
        d = _descriptors(num_frames, frames)
    except Exception as e:  # noqa: BLE001 - any decode/shape failure skips the clip
        return source, None, f"{type(e).__name__}: {e}"
    rng = np.random.default_rng(seed)
    return source, {t: x[rng.permutation(len(x))[:rows]] for t, x in d.items()}, None


def encode_clip(task: tuple) -> tuple[str, str, dict[str, np.ndarray] | None, str | None]:
    """Pyramid histograms of one clip.

    Args:
      task: (source, media id, num_frames, {frame index: JPEG bytes}).

    Returns:
      (source, media id, {type: float32 [5, K]} or None, error or None).
    """
    source, media_id, num_frames, frames = task
    try:
        d = _descriptors(num_frames, frames)
        return source, media_id, clip_histograms(d, _STATE["quadrants"], _STATE["vocabulary"]), None
    except Exception as e:  # noqa: BLE001
        return source, media_id, None, f"{type(e).__name__}: {e}"


def select(encoded: Sequence[bytes], settings: desc_lib.DescriptorSettings) -> dict[int, bytes]:
    """The encoded frames a clip's descriptors need, by index."""
    return {i: encoded[i] for i in needed_frames(len(encoded), settings)}
