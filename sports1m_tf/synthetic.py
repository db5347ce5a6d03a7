"""Built-in synthetic video data: small labelled datasets as real video files.

The task has a known answer to the paper's question. MOTION classes show the
same kind of object (a textured disc of random colour, size and position on a
textured background, with camera jitter) and differ ONLY in how it moves, so a
single frame carries no information about the class. APPEARANCE classes differ
in what is seen (shape and colour) and move at random (any of the motions).

Every motion is unchanged by a horizontal flip (up/down, zoom in/out, vertical
and horizontal shaking, still), so the paper's flip augmentation stays on.

Why single frames are uninformative: each coordinate of the object (x, y,
log-scale) is a sum of two phase functions in [0, 1), a slow drift (sawtooth:
steady motion that wraps around) and a fast shake (triangle wave, 4-8 frames a
period), each started at a uniform random phase, or frozen at it when that
component does not move. A uniform phase pushed through a sawtooth, a triangle
wave or a constant stays uniform, so at EVERY frame the object's x, y and
log-scale have the same distribution for every motion class; colour,
texture, background and camera jitter are drawn the same way for all of them.
The price is that a drifting object jumps back to the other end of its range
once per 25-60 frames (a steady motion cannot stay inside a bounded range).
Every motion is visible within 10 frames (the fusion models' window).

Run:
  sports1m-synth --output_dir=/tmp/synth --classes=mixed --videos_per_class=8 \
      --num_frames=48 --size=96 --seed=0
  sports1m-convert --manifest=/tmp/synth/train.csv ...   # one manifest per split
"""
from __future__ import annotations

import json
import os
import time
from typing import Mapping, Sequence

import cv2
import numpy as np
from absl import app, flags, logging

from sports1m_tf import cli

# ---------------------------------------------------------------------------
# Classes
# ---------------------------------------------------------------------------
# Motion class -> (coordinate, component, direction). Each coordinate (x, y,
# log-scale s) is the sum of a slow DRIFT (a sawtooth: steady motion that
# wraps around) and a fast SHAKE (a triangle wave of a few frames' period);
# a component that does not move is frozen at a random phase. Image y grows
# downwards, so "up" is a decreasing y phase.
MOTIONS: dict[str, tuple[str | None, str | None, int]] = {
    "move_up": ("y", "drift", -1),
    "move_down": ("y", "drift", +1),
    "zoom_in": ("s", "drift", +1),
    "zoom_out": ("s", "drift", -1),
    "shake_vertical": ("y", "shake", +1),
    "shake_horizontal": ("x", "shake", +1),
    "still": (None, None, 0),
}
MOTION_CLASSES: tuple[str, ...] = tuple(MOTIONS)

# Appearance class -> (shape, hue in OpenCV units 0..179). Motion objects are
# always discs of any hue, so these are told apart by shape AND colour.
APPEARANCES: dict[str, tuple[str, int]] = {
    "red_square": ("square", 0),
    "green_triangle": ("triangle", 60),
    "blue_cross": ("cross", 120),
    "yellow_ring": ("ring", 28),
}
APPEARANCE_CLASSES: tuple[str, ...] = tuple(APPEARANCES)

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "motion": MOTION_CLASSES,
    "appearance": APPEARANCE_CLASSES,
    "mixed": MOTION_CLASSES + APPEARANCE_CLASSES,
}

FOURCCS = {"mp4": "mp4v", "avi": "MJPG"}
DEFAULT_SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}

# ---------------------------------------------------------------------------
# Rendering constants (fractions of the frame size unless stated)
# ---------------------------------------------------------------------------
_SPRITE = 64             # sprite raster, pixels
_OBJECT_DIAMETER = 0.28  # at scale 1
_SCALE_RANGE = (0.5, 1.6)
_RANGE_CENTRED = 0.45    # extent of object-centre drift, centre-biased
_RANGE_ANYWHERE = 0.80   # extent when not centre-biased
_SPEED_RANGE = (0.008, 0.016)     # drift speed, fraction of frame size per frame
_ZOOM_RATE_RANGE = (0.02, 0.04)   # log-scale drift, cycles per frame
_SHAKE_AMPLITUDE = 0.07           # peak to peak, fraction of frame size
_SHAKE_SCALE = 0.0                # log-scale has no shake component
_SHAKE_PERIOD_RANGE = (4.0, 8.0)  # frames
_JITTER = 1.0 / 48       # camera wobble bound (fraction of frame size, at least 1 px)


def resolve_classes(classes: str | Sequence[str]) -> list[str]:
    """Expands a class-set name or checks a list of class names.

    Args:
      classes: "mixed", "motion", "appearance", a comma-separated string of
        class names, or a sequence of class names.

    Returns:
      The class names, in order (index = position).
    """
    if isinstance(classes, str):
        names = list(CLASS_SETS[classes]) if classes in CLASS_SETS else [
            c.strip() for c in classes.split(",") if c.strip()]
    else:
        names = list(classes)
    unknown = [c for c in names if c not in MOTIONS and c not in APPEARANCES]
    if unknown or not names:
        raise ValueError(f"unknown classes {unknown or names}; choose from sets "
                         f"{sorted(CLASS_SETS)} or names {list(CLASS_SETS['mixed'])}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate class names in {names}")
    return names


def split_counts(videos_per_class: int,
                 splits: Mapping[str, float | int]) -> dict[str, int]:
    """Videos per class in each split.

    Args:
      videos_per_class: Videos per class in all splits together (ignored
        when `splits` holds integer counts).
      splits: split name -> fraction (floats summing to 1) or count (ints).

    Returns:
      split name -> number of videos per class (largest-remainder rounding;
      every split with a positive fraction gets at least one video when the
      total allows).
    """
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in splits.values()):
        return {k: int(v) for k, v in splits.items()}
    total = sum(splits.values())
    if total <= 0:
        raise ValueError(f"split fractions must sum to a positive number, got {dict(splits)}")
    exact = {k: videos_per_class * v / total for k, v in splits.items()}
    counts = {k: int(np.floor(x)) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[
            :videos_per_class - sum(counts.values())]:
        counts[k] += 1
    # Steal from the largest split for any positive-fraction split left empty.
    for k in counts:
        if counts[k] == 0 and splits[k] > 0:
            donor = max(counts, key=counts.get)
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[k] = 1
    return counts


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    """Smooth value noise in [0, 1], shape [size, size, channels]."""
    coarse = rng.random((cells, cells, channels), dtype=np.float32)
    out = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(size, size, channels), 0.0, 1.0)


def _hsv_to_bgr(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    hsv = np.stack([h, s, v], axis=-1).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A low-contrast textured background, uint8 BGR [size, size, 3]."""
    hue = rng.integers(0, 180)
    tex = 0.7 * _smooth_noise(rng, size, 5, 1)[..., 0] + 0.3 * _smooth_noise(rng, size, 17, 1)[..., 0]
    h = np.full((size, size), hue, np.float32)
    s = np.full((size, size), rng.uniform(30, 110), np.float32)
    v = 70 + 110 * tex
    return _hsv_to_bgr(h, s, v)


def _mask(shape: str) -> np.ndarray:
    """Anti-aliased alpha mask of a shape, uint8 [_SPRITE, _SPRITE]."""
    n = _SPRITE
    big = np.zeros((4 * n, 4 * n), np.uint8)  # drawn at 4x then area-downsampled
    c, r = 2 * n, int(1.9 * n)
    if shape == "disc":
        cv2.circle(big, (c, c), r, 255, -1)
    elif shape == "square":
        q = int(r * 0.8)
        cv2.rectangle(big, (c - q, c - q), (c + q, c + q), 255, -1)
    elif shape == "triangle":
        pts = np.array([[c, c - r], [c - int(r * 0.95), c + int(r * 0.75)],
                        [c + int(r * 0.95), c + int(r * 0.75)]], np.int32)
        cv2.fillPoly(big, [pts], 255)
    elif shape == "cross":
        w = int(r * 0.35)
        cv2.rectangle(big, (c - r, c - w), (c + r, c + w), 255, -1)
        cv2.rectangle(big, (c - w, c - r), (c + w, c + r), 255, -1)
    elif shape == "ring":
        cv2.circle(big, (c, c), r, 255, -1)
        cv2.circle(big, (c, c), int(r * 0.55), 0, -1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return cv2.resize(big, (n, n), interpolation=cv2.INTER_AREA)


_MASKS: dict[str, np.ndarray] = {}


def _sprite(rng: np.random.Generator, shape: str, hue: float) -> np.ndarray:
    """A textured object, uint8 BGRA [_SPRITE, _SPRITE, 4].

    The texture is high-contrast blobs so that motion inside the object (zoom)
    shows in frame differences and optical flow.
    """
    if shape not in _MASKS:
        _MASKS[shape] = _mask(shape)
    tex = _smooth_noise(rng, _SPRITE, 7, 1)[..., 0]
    h = np.full((_SPRITE, _SPRITE), hue % 180, np.float32)
    s = np.full((_SPRITE, _SPRITE), rng.uniform(150, 255), np.float32)
    v = 60 + 195 * tex
    return np.dstack([_hsv_to_bgr(h, s, v), _MASKS[shape]])


def _phase(wave: str | None, start: float, rate: float, direction: int,
           t: np.ndarray) -> np.ndarray:
    """Phase in [0, 1) per frame; uniform at every t when `start` is uniform.

    wave: None (frozen), "drift" (sawtooth) or "shake" (triangle). `rate` is
    in cycles per frame.
    """
    if wave is None:
        return np.full(t.shape, start)
    x = start + direction * rate * t
    if wave == "drift":
        return np.mod(x, 1.0)
    return 1.0 - np.abs(2.0 * np.mod(x, 1.0) - 1.0)


def render_video(class_name: str, *, num_frames: int, size: int, centre_bias: bool,
                 rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Renders one video of a class.

    Args:
      class_name: A name from MOTION_CLASSES or APPEARANCE_CLASSES.
      size: Frame height and width, pixels.
      centre_bias: Object centre drifts within the central 45% of the
        frame (True) or within the central 80% (False), plus the shake.
      rng: the generator; the video is a function of its state.

    Returns:
      (frames, params): uint8 BGR frames [num_frames, size, size, 3] and the
      drawn parameters, for inspection: motion, shape, hue, speed_px,
      zoom_rate, shake_period, and per frame the object centre `cx`, `cy` [num_frames],
      its `diameter` [num_frames] (pixels) and the camera offset `camera`
      [num_frames, 2] (pixels, sub-pixel).
    """
    if class_name in MOTIONS:
        motion, shape, hue = class_name, "disc", float(rng.uniform(0, 180))
    elif class_name in APPEARANCES:
        shape, base_hue = APPEARANCES[class_name]
        motion = MOTION_CLASSES[rng.integers(len(MOTION_CLASSES))]
        hue = base_hue + float(rng.uniform(-6, 6))
    else:
        raise ValueError(f"unknown class {class_name!r}")
    coord, component, direction = MOTIONS[motion]

    jitter = max(1.0, size * _JITTER)
    margin = int(np.ceil(jitter)) + 1
    bg = _background(rng, size + 2 * margin)
    sprite = _sprite(rng, shape, hue)
    extent = size * (_RANGE_CENTRED if centre_bias else _RANGE_ANYWHERE)
    lo, hi = np.log(_SCALE_RANGE[0]), np.log(_SCALE_RANGE[1])
    # Extent of each coordinate for (drift, shake), in pixels or log-scale.
    spans = {"x": (extent, size * _SHAKE_AMPLITUDE), "y": (extent, size * _SHAKE_AMPLITUDE),
             "s": (hi - lo, _SHAKE_SCALE)}

    # Every random number is drawn whatever the class, so the draws stay
    # aligned. Drift rates are in cycles per frame; the speed in pixels does
    # not depend on the extent, so motion looks alike in both position settings.
    speed_px = size * rng.uniform(*_SPEED_RANGE)
    drift_rate = {"x": speed_px / extent, "y": speed_px / extent,
                  "s": rng.uniform(*_ZOOM_RATE_RANGE)}
    shake_rate = 1.0 / rng.uniform(*_SHAKE_PERIOD_RANGE)
    t = np.arange(num_frames, dtype=np.float64)
    value = {}
    for k in ("x", "y", "s"):
        drift = _phase("drift" if (k, component) == (coord, "drift") else None,
                       rng.random(), drift_rate[k], direction, t)
        shake = _phase("shake" if (k, component) == (coord, "shake") else None,
                       rng.random(), shake_rate, direction, t)
        value[k] = (drift - 0.5) * spans[k][0] + (shake - 0.5) * spans[k][1]
    cx = size / 2 + value["x"]
    cy = size / 2 + value["y"]
    scale = np.exp(0.5 * (lo + hi) + value["s"]) * size * _OBJECT_DIAMETER / _SPRITE

    # Camera jitter: a smooth sub-pixel wobble (two sinusoids per axis, periods
    # of 10-40 frames), shared by background and object.
    periods = rng.uniform(10.0, 40.0, (2, 2))
    offsets = rng.uniform(0.0, 2 * np.pi, (2, 2))
    cam = 0.5 * jitter * np.sin(2 * np.pi * t[:, None, None] / periods + offsets).sum(-1)

    frames = np.empty((num_frames, size, size, 3), np.uint8)
    half = _SPRITE / 2.0
    for i in range(num_frames):
        jx, jy = cam[i]
        shift = np.array([[1.0, 0.0, -margin - jx], [0.0, 1.0, -margin - jy]])
        frame = cv2.warpAffine(bg, shift, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        k = scale[i]
        m = np.array([[k, 0.0, cx[i] - jx - k * half], [0.0, k, cy[i] - jy - k * half]])
        warped = cv2.warpAffine(sprite, m, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = warped[..., 3:4].astype(np.float32) * (1.0 / 255.0)
        frame += alpha * (warped[..., :3].astype(np.float32) - frame)
        frames[i] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    params = dict(motion=motion, shape=shape, hue=hue, speed_px=float(speed_px),
                  zoom_rate=float(drift_rate["s"]), shake_period=float(1 / shake_rate), cx=cx, cy=cy,
                  diameter=scale * _SPRITE, camera=cam)
    return frames, params


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------
def write_video(path: str, frames: np.ndarray | Sequence[np.ndarray], fps: float = 24.0,
                fourcc: str = "mp4v") -> str:
    """Writes frames to a video file with OpenCV.

    Args:
      path: Output file; the container follows the extension (.mp4, .avi).
      frames: uint8 BGR frames, [T, H, W, 3] (or a list of [H, W, 3]).
      fourcc: Four-character codec code ("mp4v", "MJPG", ...).

    Returns:
      `path`.
    """
    frames = list(frames)
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot open a {fourcc!r} writer")
    try:
        for f in frames:
            if f.shape[:2] != (h, w):
                raise ValueError(f"{path}: frame of shape {f.shape} in a {h}x{w} video")
            writer.write(np.ascontiguousarray(f, dtype=np.uint8))
    finally:
        writer.release()
    return path


def make_dataset(
    output_dir: str,
    *,
    classes: str | Sequence[str] = "mixed",
    videos_per_class: int = 8,
    splits: Mapping[str, float | int] | None = None,
    num_frames: int = 48,
    size: int = 96,
    fps: float = 24.0,
    centre_bias: bool = True,
    seed: int = 0,
    formats: Sequence[str] = ("mp4", "avi"),
) -> dict:
    """Writes a labelled synthetic video dataset and its manifests.

    Layout: `output_dir/videos/<class>/<class>_<NNN>.<ext>`, one manifest per
    split `output_dir/<split>.csv` (lines `videos/<class>/<file>,<class>`, path
    relative to the manifest's folder, no header), `output_dir/classes.txt`
    (one name a line, index = line number) and `output_dir/synthetic.json`
    (the settings and class groups). Video i of a class uses
    `formats[i % len(formats)]`.

    Args:
      classes: "mixed", "motion", "appearance", or a list of class names.
      videos_per_class: Videos per class over all splits.
      splits: split -> fraction, or split -> count per class. Defaults to
        train 0.6, val 0.2, test 0.2.
      size: Frame height and width.
      fps: Frame rate written in the files.
      centre_bias: Objects near the centre (True) or anywhere (False).
      seed: Same seed and settings -> same frames.
      formats: containers to use, from "mp4" (mp4v) and "avi" (MJPG).

    Returns:
      dict with `output_dir`, `manifests` (split -> path), `classes_file`,
      `classes` (names, index order), `motion_classes`, `appearance_classes`,
      `videos` (split -> list of (absolute path, class name)) and `settings`.
    """
    names = resolve_classes(classes)
    counts = split_counts(videos_per_class, splits or DEFAULT_SPLITS)
    bad = [f for f in formats if f not in FOURCCS]
    if bad or not formats:
        raise ValueError(f"unknown formats {bad or list(formats)}; choose from {sorted(FOURCCS)}")
    if size < 16 or size % 2 or num_frames < 1:
        raise ValueError(f"size must be an even number >= 16 and num_frames >= 1, "
                         f"got size={size}, num_frames={num_frames}")
    os.makedirs(output_dir, exist_ok=True)
    output_dir = os.path.abspath(output_dir)

    start = time.time()
    videos: dict[str, list[tuple[str, str]]] = {s: [] for s in counts}
    total = len(names) * sum(counts.values())
    done = 0
    for ci, name in enumerate(names):
        index = 0
        for split, n in counts.items():
            for _ in range(n):
                # One generator per video, keyed by the class NAME so that a
                # video does not change when other classes are added.
                key = [seed, index] + list(name.encode())
                rng = np.random.default_rng(key)
                frames, _ = render_video(name, num_frames=num_frames, size=size,
                                         centre_bias=centre_bias, rng=rng)
                ext = formats[index % len(formats)]
                path = os.path.join(output_dir, "videos", name, f"{name}_{index:03d}.{ext}")
                write_video(path, frames, fps, FOURCCS[ext])
                videos[split].append((path, name))
                index += 1
                done += 1
        logging.info("synthetic: %d/%d videos (%.1f videos/s)", done, total,
                     done / max(time.time() - start, 1e-9))

    manifests = {}
    for split, items in videos.items():
        manifests[split] = os.path.join(output_dir, f"{split}.csv")
        with open(manifests[split], "w") as f:
            for path, name in items:
                f.write(f"{os.path.relpath(path, output_dir)},{name}\n")
    classes_file = os.path.join(output_dir, "classes.txt")
    with open(classes_file, "w") as f:
        f.write("".join(n + "\n" for n in names))
    settings = dict(classes=names, videos_per_class=sum(counts.values()), splits=counts,
                    num_frames=num_frames, size=size, fps=fps, centre_bias=centre_bias,
                    seed=seed, formats=list(formats))
    result = dict(
        output_dir=output_dir,
        manifests=manifests,
        classes_file=classes_file,
        classes=names,
        motion_classes=[n for n in names if n in MOTIONS],
        appearance_classes=[n for n in names if n in APPEARANCES],
        videos=videos,
        settings=settings,
    )
    with open(os.path.join(output_dir, "synthetic.json"), "w") as f:
        json.dump({k: v for k, v in result.items() if k != "videos"}, f, indent=2)
    logging.info("synthetic: wrote %d videos to %s in %.1f s", total, output_dir,
                 time.time() - start)
    return result


# ---------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
    """Declares the command's flags (at run time, not import: other commands' modules,
    imported in one process by tests, declare flags of the same names)."""
    flags.DEFINE_string("output_dir", None, "Folder for videos, manifests and classes.txt.")
    flags.DEFINE_string("classes", "mixed",
                        "mixed, motion, appearance, or comma-separated class names.")
    flags.DEFINE_integer("videos_per_class", 8, "Videos per class over all splits.")
    flags.DEFINE_list("splits", ["train=0.6", "val=0.2", "test=0.2"],
                      "split=fraction (floats) or split=count (ints) per class.")
    flags.DEFINE_integer("num_frames", 48, "Frames per video.")
    flags.DEFINE_integer("size", 96, "Frame height and width in pixels (even).")
    flags.DEFINE_float("fps", 24.0, "Frame rate written in the files.")
    flags.DEFINE_boolean("centre_bias", True, "Objects near the centre (else anywhere).")
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_list("formats", ["mp4", "avi"], "Containers: mp4 (mp4v) and/or avi (MJPG).")


def _parse_splits(items: Sequence[str]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise app.UsageError(f"--splits entry {item!r} is not split=value")
        out[name] = float(value) if "." in value else int(value)
    if len({type(v) for v in out.values()}) > 1:
        # Mixed ints and floats: treat all as fractions.
        out = {k: float(v) for k, v in out.items()}
    return out


def main(argv: Sequence[str]) -> None:
    del argv
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    result = make_dataset(
        FLAGS.output_dir, classes=FLAGS.classes, videos_per_class=FLAGS.videos_per_class,
        splits=_parse_splits(FLAGS.splits), num_frames=FLAGS.num_frames, size=FLAGS.size,
        fps=FLAGS.fps, centre_bias=FLAGS.centre_bias, seed=FLAGS.seed,
        formats=tuple(FLAGS.formats))
    for split, path in result["manifests"].items():
        print(f"{split}: {path} ({len(result['videos'][split])} videos)")
    print(f"classes: {result['classes_file']} ({len(result['classes'])}: "
          f"motion {result['motion_classes']}, appearance {result['appearance_classes']})")


run = cli.entry(main, define=define_flags)


if __name__ == "__main__":
    run()
