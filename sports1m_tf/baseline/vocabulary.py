"""Visual vocabularies: one k-means codebook per descriptor type, and soft assignment.

Soft assignment is the "kernel codebook" of van Gemert et al.: a descriptor
votes for its `neighbours` nearest words with Gaussian weights
exp(-d² / 2σ²), normalised to sum 1, where σ² is the mean squared distance from
a descriptor to its nearest word on the fitting sample. Hard assignment loses
the information of descriptors that sit between words; a kernel over ALL words
would blur every histogram towards the mean.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
from absl import logging


@dataclasses.dataclass
class Vocabulary:
    """Codebooks per descriptor type.

    Args:
      centres: feature type -> float32 [K, D] words.
      sigma2: feature type -> float, the kernel width σ².
      neighbours: Words each descriptor votes for.
    """
    centres: dict[str, np.ndarray]
    sigma2: dict[str, float]
    neighbours: int = 5

    @property
    def sizes(self) -> dict[str, int]:
        return {t: len(c) for t, c in self.centres.items()}

    def digest(self) -> str:
        """A short hash of the words (names cached features computed with them)."""
        h = hashlib.sha256(json.dumps([self.sigma2, self.neighbours], sort_keys=True).encode())
        for t in sorted(self.centres):
            h.update(t.encode())
            h.update(np.ascontiguousarray(self.centres[t], np.float32).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str) -> None:
        arrays = {f"centres/{t}": c for t, c in self.centres.items()}
        arrays["meta"] = np.frombuffer(json.dumps(
            {"sigma2": self.sigma2, "neighbours": self.neighbours}).encode(), np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        with np.load(path) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            centres = {k.split("/", 1)[1]: data[k].astype(np.float32)
                       for k in data.files if k.startswith("centres/")}
        return cls(centres, {k: float(v) for k, v in meta["sigma2"].items()},
                   int(meta["neighbours"]))


def _squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d2, 0.0)


def fit_vocabulary(samples: dict[str, np.ndarray], sizes: dict[str, int], *,
                   neighbours: int = 5, seed: int = 0) -> Vocabulary:
    """Fits one MiniBatchKMeans codebook per descriptor type.

    Args:
      samples: feature type -> float32 [M, D] descriptors sampled from training clips.
      sizes: feature type -> K, the number of words (capped at M).
      neighbours: Words each descriptor votes for in `soft_assign`.

    Returns:
      The Vocabulary.
    """
    from sklearn.cluster import MiniBatchKMeans  # deferred: slow import, not needed by workers

    centres, sigma2 = {}, {}
    for t, x in samples.items():
        if len(x) == 0:
            raise ValueError(f"no {t} descriptors to fit a vocabulary on")
        k = min(sizes[t], len(x))
        if k < sizes[t]:
            logging.warning("vocabulary %s: only %d descriptors, using %d words instead of %d",
                            t, len(x), k, sizes[t])
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=max(1024, 3 * k),
                             n_init=3, max_no_improvement=20)
        km.fit(x)
        centres[t] = km.cluster_centers_.astype(np.float32)
        nearest = _squared_distances(x[:20000], centres[t]).min(1)
        sigma2[t] = float(max(nearest.mean(), 1e-8))
        logging.info("vocabulary %s: %d words from %d descriptors of %d dims (sigma^2 %.4g)",
                     t, k, len(x), x.shape[1], sigma2[t])
    return Vocabulary(centres, sigma2, neighbours)


def soft_assign(x: np.ndarray, centres: np.ndarray, sigma2: float, neighbours: int) -> np.ndarray:
    """Soft votes of descriptors for words.

    Args:
      x: float32 [N, D] descriptors.
      centres: float32 [K, D] words.
      neighbours: Nearest words that get a vote (1 = hard assignment).

    Returns:
      float32 [N, K]; each row sums to 1 and has at most `neighbours` non-zeros.
    """
    d2 = _squared_distances(x.astype(np.float32), centres)
    n, k = d2.shape
    m = min(neighbours, k)
    nearest = np.argpartition(d2, m - 1, axis=1)[:, :m] if m < k else np.tile(np.arange(k), (n, 1))
    near_d2 = np.take_along_axis(d2, nearest, axis=1)
    # Subtracting the row minimum keeps exp() finite however far the descriptor is.
    w = np.exp(-(near_d2 - near_d2.min(1, keepdims=True)) / (2.0 * sigma2))
    w /= w.sum(1, keepdims=True)
    out = np.zeros((n, k), np.float32)
    np.put_along_axis(out, nearest, w.astype(np.float32), axis=1)
    return out
