"""Spatial-pyramid histograms of visual words and the video-level vector.

Layout of the video vector, for feature types in `FEATURE_TYPES` order with K_t
words each: for each type, 5 blocks of K_t values (pyramid cell 0 = the whole
frame, cells 1..4 = the 2×2 quadrants, row-major); each block sums to 1.
Dimension = 5 × Σ K_t.
"""
from __future__ import annotations

import numpy as np

from sports1m_tf.baseline.descriptors import FEATURE_TYPES, PYRAMID_CELLS
from sports1m_tf.baseline.vocabulary import Vocabulary, soft_assign


def vector_dimension(sizes: dict[str, int]) -> int:
    """Length of the video vector for vocabulary sizes {type: K}."""
    return PYRAMID_CELLS * sum(sizes[t] for t in FEATURE_TYPES)


def block_slices(sizes: dict[str, int]) -> list[tuple[str, int, slice]]:
    """(feature type, pyramid cell, slice of the video vector) for every block."""
    out, start = [], 0
    for t in FEATURE_TYPES:
        for cell in range(PYRAMID_CELLS):
            out.append((t, cell, slice(start, start + sizes[t])))
            start += sizes[t]
    return out


def clip_histograms(descriptors: dict[str, np.ndarray], quadrants: np.ndarray,
                    vocabulary: Vocabulary) -> dict[str, np.ndarray]:
    """Un-normalised pyramid histograms of one clip (sums of soft votes).

    Args:
      descriptors: feature type -> float32 [F * N, D] (from `clip_descriptors`).
      quadrants: int [N], the 2×2 pyramid cell of each patch (`patch_quadrants`).
      vocabulary: the codebooks.

    Returns:
      feature type -> float32 [5, K]: row 0 the whole frame, rows 1..4 the quadrants.
      Histograms of several clips of a video are summed before `video_vector`.
    """
    out = {}
    for t in FEATURE_TYPES:
        votes = soft_assign(descriptors[t], vocabulary.centres[t], vocabulary.sigma2[t],
                            vocabulary.neighbours)
        cell = np.tile(quadrants, len(votes) // len(quadrants))
        membership = np.eye(PYRAMID_CELLS - 1, dtype=np.float32)[cell]  # [F * N, 4]
        out[t] = np.concatenate([votes.sum(0, keepdims=True), membership.T @ votes])
    return out


def video_vector(histograms: dict[str, np.ndarray]) -> np.ndarray:
    """The video-level vector: every pyramid block normalised to sum 1, concatenated.

    Args:
      histograms: feature type -> [5, K] summed over the video's clips and frames.

    Returns:
      float32 [5 × Σ K] (see the module docstring for the layout).
    """
    blocks = []
    for t in FEATURE_TYPES:
        h = histograms[t].astype(np.float64)
        totals = h.sum(1, keepdims=True)
        if np.any(totals <= 0):
            raise ValueError(f"empty {t} pyramid block: no descriptor fell in it")
        blocks.append((h / totals).ravel())
    return np.concatenate(blocks).astype(np.float32)
