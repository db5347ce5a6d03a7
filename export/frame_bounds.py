"""How much work one request, or one frame of a video file, may ask of an exported model.

A JPEG header can claim any size: 629 bytes that say 13000×13000 decode to
507 MB. The served graph (`export.signatures`) therefore reads every frame's
size from its header before it decodes anything, and refuses frames over
`max_pixels`, frames whose shorter side is below the model's input (nothing
can be cut from them that the model was trained on), and requests of more than
`max_clips` clips. `sports1m-predict` applies the same bounds to the frames of
a video file (`export.video_input`). The bounds are chosen at export and
recorded in the SavedModel's `model_info.json`.

No TensorFlow here: decoding worker processes import this module.
"""
from __future__ import annotations

import dataclasses

from tfrecord_tools import schema

# Frames up to this many times the trained frame's side are taken: 1600×1600
# (2.56 million pixels) for 200-pixel frames, so a 1920×1080 frame fits and a
# decoded frame stays below 8 MB.
DEFAULT_SIDE_FACTOR = 8
# Clips per request: the paper scores 20 clips a video; well above that, a
# request still cannot ask for unbounded work.
DEFAULT_MAX_CLIPS = 256


@dataclasses.dataclass(frozen=True)
class FrameBounds:
    """The bounds a served model enforces.

    Attributes:
      max_pixels: int. Most pixels (height × width) of one frame.
      min_side: int. Least shorter side of a frame: the model's input (crop) size.
      max_clips: int. Most clips in one request.
    """
    max_pixels: int
    min_side: int
    max_clips: int = DEFAULT_MAX_CLIPS

    def to_json(self) -> dict:
        return {"max_frame_pixels": int(self.max_pixels), "min_frame_side": int(self.min_side),
                "max_clips": int(self.max_clips)}


def least_side(bounds: FrameBounds, frame_size: int) -> int:
    """The side of the largest square frame every bound must let through: the model's
    own frames, and the 200×200 frames `export.video_input` cuts for any model."""
    return max(bounds.min_side, int(frame_size), schema.FRAME_SIZE)


def default_max_pixels(frame_size: int) -> int:
    """The default pixel bound for a model trained on `frame_size`-pixel frames."""
    return (DEFAULT_SIDE_FACTOR * max(int(frame_size), schema.FRAME_SIZE)) ** 2


def check_bounds(bounds: FrameBounds, frame_size: int) -> None:
    """Fails unless the model's own frames pass `bounds` and a request can hold a clip.

    Args:
      bounds: the bounds to export with.
      frame_size: the stored frame size the model was trained on.

    Raises:
      ValueError: naming the bound that refuses what the model needs.
    """
    if bounds.max_clips < 1:
        raise ValueError(f"max_clips must be at least 1, got {bounds.max_clips}")
    side = least_side(bounds, frame_size)
    if bounds.max_pixels < side * side:
        raise ValueError(f"max_frame_pixels {bounds.max_pixels} is below {side}x{side} "
                         f"({side * side} pixels), the frames clients cut for this model "
                         "(sports1m-predict sends 200x200): it would refuse them")


def from_model_info(info: dict) -> FrameBounds:
    """The bounds recorded in a `model_info.json` (defaults for models exported before
    the bounds were recorded there)."""
    return FrameBounds(
        max_pixels=int(info.get("max_frame_pixels") or default_max_pixels(info["frame_size"])),
        min_side=int(info.get("min_frame_side") or info["input_size"]),
        max_clips=int(info.get("max_clips") or DEFAULT_MAX_CLIPS))


def frame_problem(height: int, width: int, bounds: FrameBounds) -> str | None:
    """Why a frame of `height`×`width` is refused, or None when it is within `bounds`."""
    if height * width > bounds.max_pixels:
        return (f"frames of {width}x{height} ({height * width:,} pixels) are over the model's "
                f"bound of {bounds.max_pixels:,} pixels (raise it with --max_frame_pixels)")
    if min(height, width) < bounds.min_side:
        return (f"frames of {width}x{height}: the shorter side is below the model's input of "
                f"{bounds.min_side} pixels")
    return None
