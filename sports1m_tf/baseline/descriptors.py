"""Dense local descriptors on frames: HOG, hue-saturation colour, optical-flow orientation.

Every descriptor type is computed on the same grid of square patches, so one
patch index names the same image region for all three and the same pyramid
cell. Geometry, for `patch_size` P on a frame resized to `frame_size` S: cells
of P/4 pixels, patches of 4×4 cells, one patch every 2 cells (stride P/2).

HOG is written here with NumPy on OpenCV gradients: OpenCV 5 moved
`cv2.HOGDescriptor` to opencv_contrib's `xobjdetect` (opencv/opencv#25198), and
the contrib wheel cannot be installed beside `opencv-python-headless`. The layout
is Dalal–Triggs: 9 unsigned orientation bins interpolated linearly, cell
histograms, 2×2-cell blocks at a one-cell stride normalised with L2-Hys, so a
patch of 4×4 cells holds 3×3 blocks: 324 values. (Left out: the spatial
trilinear vote and the Gaussian block window of the original.)
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

FEATURE_TYPES: tuple[str, ...] = ("hog", "colour", "motion")
PYRAMID_CELLS = 5  # 1×1 (the whole frame) + 2×2 (quadrants)


@dataclasses.dataclass(frozen=True)
class DescriptorSettings:
    """How local descriptors are sampled.

    Args:
      frame_size: Frames are resized to this square size first.
      patch_size: Patch side, a multiple of 4 dividing into `frame_size`
        cells. Defaults to 32.
      frames_per_clip: Frames of each clip described (evenly spaced).
        Defaults to 4.
      flow_gap: The motion descriptor of frame t uses the optical flow from
        t to t + flow_gap. Defaults to 2.
      flow_bins: Flow orientation bins (plus one bin for static pixels).
        Defaults to 8.
      static_flow: Flow magnitude (pixels at `frame_size`) below which a
        pixel counts as static. Defaults to 0.3.
    """
    frame_size: int = 128
    patch_size: int = 32
    frames_per_clip: int = 4
    flow_gap: int = 2
    hue_bins: int = 8
    saturation_bins: int = 4
    flow_bins: int = 8
    static_flow: float = 0.3

    def __post_init__(self):
        cell = self.patch_size // 4
        if self.patch_size % 4 or self.patch_size < 8 or self.frame_size % cell:
            raise ValueError(f"patch_size must be a multiple of 4 (>= 8) and frame_size a "
                             f"multiple of patch_size/4; got {self.patch_size}, {self.frame_size}")
        if self.frame_size < self.patch_size or self.frames_per_clip < 1 or self.flow_gap < 1:
            raise ValueError(f"bad descriptor settings: {self}")

    @property
    def cell(self) -> int:
        return self.patch_size // 4

    def dims(self) -> dict[str, int]:
        """Descriptor length per type."""
        return {"hog": 9 * 4 * 9, "colour": self.hue_bins * self.saturation_bins,
                "motion": 4 * (self.flow_bins + 1)}


def patch_origins(settings: DescriptorSettings) -> np.ndarray:
    """Top-left corner of every patch, in cells: int [N, 2] as (row, col), row-major."""
    n_cells = settings.frame_size // settings.cell
    starts = np.arange(0, n_cells - 4 + 1, 2)
    rows, cols = np.meshgrid(starts, starts, indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=1)


def patch_quadrants(settings: DescriptorSettings) -> np.ndarray:
    """The 2×2 pyramid cell (0..3, row-major) holding each patch's centre: int [N]."""
    centres = (patch_origins(settings) + 2) * settings.cell
    half = settings.frame_size / 2
    return ((centres[:, 0] >= half) * 2 + (centres[:, 1] >= half)).astype(np.int64)


def _cell_sums(per_pixel: np.ndarray, cell: int) -> np.ndarray:
    """Sums a [H, W, B] map over cell×cell squares: [H/cell, W/cell, B]."""
    h, w, b = per_pixel.shape
    return per_pixel.reshape(h // cell, cell, w // cell, cell, b).sum(axis=(1, 3))


def _gather_patches(cells: np.ndarray, origins: np.ndarray, size: int) -> np.ndarray:
    """Stacks the size×size cell windows at `origins`: [N, size, size, B]."""
    r = origins[:, 0, None, None] + np.arange(size)[None, :, None]
    c = origins[:, 1, None, None] + np.arange(size)[None, None, :]
    return cells[r, c]


def _orientation_votes(angle: np.ndarray, weight: np.ndarray, bins: int,
                       period: float) -> np.ndarray:
    """Per-pixel votes [H, W, bins], split linearly between the two nearest bin centres."""
    pos = angle / period * bins - 0.5
    low = np.floor(pos)
    frac = (pos - low).astype(np.float32)
    low = low.astype(np.int64) % bins
    high = (low + 1) % bins
    votes = np.zeros(angle.shape + (bins,), np.float32)
    np.put_along_axis(votes, low[..., None], (weight * (1 - frac))[..., None], axis=-1)
    # `high` may equal `low` only when bins == 1.
    high_votes = np.take_along_axis(votes, high[..., None], axis=-1) + (weight * frac)[..., None]
    np.put_along_axis(votes, high[..., None], high_votes, axis=-1)
    return votes


def hog(gray: np.ndarray, settings: DescriptorSettings) -> np.ndarray:
    """Dense HOG, one 324-d descriptor per patch.

    Args:
      gray: float32 [S, S], the frame in grey levels.
      settings: the geometry.

    Returns:
      float32 [N, 324].
    """
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=1)
    magnitude, angle = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    cells = _cell_sums(_orientation_votes(np.mod(angle, 180.0), magnitude, 9, 180.0),
                       settings.cell)
    # Blocks of 2×2 cells at a one-cell stride, L2-Hys normalised.
    blocks = np.concatenate([cells[:-1, :-1], cells[:-1, 1:], cells[1:, :-1], cells[1:, 1:]],
                            axis=-1)
    blocks /= np.sqrt((blocks ** 2).sum(-1, keepdims=True) + 1e-6)
    blocks = np.minimum(blocks, 0.2)
    blocks /= np.sqrt((blocks ** 2).sum(-1, keepdims=True) + 1e-6)
    patches = _gather_patches(blocks, patch_origins(settings), 3)
    return patches.reshape(len(patches), -1).astype(np.float32)


def colour(bgr: np.ndarray, settings: DescriptorSettings) -> np.ndarray:
    """Hue-saturation histogram per patch, L1-normalised then square-rooted.

    Args:
      bgr: uint8 [S, S, 3].
      settings: the geometry and bin counts.

    Returns:
      float32 [N, hue_bins * saturation_bins].
    """
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    h = (hsv[..., 0].astype(np.int64) * settings.hue_bins) // 180
    s = (hsv[..., 1].astype(np.int64) * settings.saturation_bins) // 256
    bins = settings.hue_bins * settings.saturation_bins
    one_hot = np.eye(bins, dtype=np.float32)[h * settings.saturation_bins + s]
    cells = _cell_sums(one_hot, settings.cell)
    patches = _gather_patches(cells, patch_origins(settings), 4).sum(axis=(1, 2))
    patches /= patches.sum(-1, keepdims=True)
    return np.sqrt(patches).astype(np.float32)


def motion(gray: np.ndarray, later_gray: np.ndarray, settings: DescriptorSettings) -> np.ndarray:
    """Histograms of optical-flow orientation (HOF) per patch, the paper's "cuboid" role.

    Farneback flow from `gray` to `later_gray`; per pixel a magnitude-weighted
    vote in `flow_bins` signed orientations, or a vote of weight `static_flow`
    in the static bin; four histograms per patch (its 2×2 quadrants of 2×2
    cells), each the MEAN vote per pixel, square-rooted. Averaging instead of
    L1-normalising keeps the speed: a fast and a slow patch moving the same
    way differ (camera wobble moves every patch a little; objects move more).

    Args:
      gray, later_gray: uint8 [S, S].
      settings: the geometry and bin counts.

    Returns:
      float32 [N, 4 * (flow_bins + 1)].
    """
    flow = cv2.calcOpticalFlowFarneback(gray, later_gray, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1], angleInDegrees=True)
    moving = magnitude >= settings.static_flow
    votes = _orientation_votes(angle, np.where(moving, magnitude, 0.0).astype(np.float32),
                               settings.flow_bins, 360.0)
    static = np.where(moving, 0.0, settings.static_flow).astype(np.float32)[..., None]
    cells = _cell_sums(np.concatenate([votes, static], axis=-1), settings.cell)
    patches = _gather_patches(cells, patch_origins(settings), 4)  # [N, 4, 4, B]
    n, _, _, b = patches.shape
    quads = patches.reshape(n, 2, 2, 2, 2, b).sum(axis=(2, 4)).reshape(n, 4 * b)
    quads /= (2 * settings.cell) ** 2  # pixels per quadrant
    return np.sqrt(quads).astype(np.float32)


def frame_indices(num_frames: int, settings: DescriptorSettings) -> list[tuple[int, int]]:
    """(frame, later frame) pairs described in a clip of `num_frames` stored frames."""
    gap = min(settings.flow_gap, num_frames - 1)
    if gap < 1:
        raise ValueError(f"a clip needs at least 2 frames for the motion descriptor, "
                         f"it has {num_frames}")
    anchors = np.linspace(0, num_frames - 1 - gap, settings.frames_per_clip)
    return [(int(a), int(a) + gap) for a in np.unique(np.round(anchors).astype(int))]


def clip_descriptors(frames: dict[int, np.ndarray], pairs: list[tuple[int, int]],
                     settings: DescriptorSettings) -> dict[str, np.ndarray]:
    """All local descriptors of one clip.

    Args:
      frames: frame index -> uint8 BGR [H, W, 3] (at least every index in `pairs`).
      pairs: (frame, later frame) pairs from `frame_indices`.
      settings: the descriptor settings.

    Returns:
      feature type -> float32 [len(pairs) * N, dim]; row j * N + i is patch i
      of pair j (so its pyramid quadrant is `patch_quadrants(settings)[i]`).
    """
    size = (settings.frame_size, settings.frame_size)
    resized = {i: cv2.resize(f, size, interpolation=cv2.INTER_AREA) for i, f in frames.items()}
    grays = {i: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for i, f in resized.items()}
    out: dict[str, list[np.ndarray]] = {t: [] for t in FEATURE_TYPES}
    for a, b in pairs:
        out["hog"].append(hog(grays[a].astype(np.float32), settings))
        out["colour"].append(colour(resized[a], settings))
        out["motion"].append(motion(grays[a], grays[b], settings))
    return {t: np.concatenate(v) for t, v in out.items()}
