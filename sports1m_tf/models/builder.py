"""`build_model`: name → the paper's CNN as one Keras functional model."""
from __future__ import annotations

import re

import keras

from sports1m_tf.model_names import REGISTRY
from sports1m_tf.models import early_fusion, late_fusion, single_frame, slow_fusion
from sports1m_tf.models.layers import FramePreprocessing, MergeTime, TimeToBatch
from sports1m_tf.models.multires import STREAMS, stream_input
from sports1m_tf.models.trunk import (DEFAULT_KERNEL_INIT, KERNEL_INITS, apply_head,
                                     apply_trunk)
from tfrecord_tools.schema import CLIP_FRAMES

_FAMILIES = {module.__name__.rsplit(".", 1)[-1]: module
             for module in (early_fusion, late_fusion, single_frame, slow_fusion)}
# name → (family module, input streams), from the registry table.
MODELS = {name: (_FAMILIES[family], streams) for name, (family, streams) in REGISTRY.items()}
FULL_FRAME_SIZE = 170
MULTIRES_FRAME_SIZE = 178


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")


def frames_needed(name: str, clip_frames: int = CLIP_FRAMES) -> list[int]:
    """Indices of the frames of a `clip_frames`-frame clip that model `name` reads."""
    _check_name(name)
    return MODELS[name][0].frames(clip_frames)


def uses_multires_input(name: str, multires: bool = False) -> bool:
    """Whether the model reads 178-pixel frames split into fovea/context streams."""
    _check_name(name)
    return multires or MODELS[name][1] != ("full",)


def default_input_size(name: str, multires: bool = False) -> int:
    """170 for full-frame models, 178 for multires models and their ablations."""
    return MULTIRES_FRAME_SIZE if uses_multires_input(name, multires) else FULL_FRAME_SIZE


def model_name(name: str, multires: bool = False) -> str:
    """The Keras model's name, from which `describe` recovers the configuration."""
    return f"{name}_multires" if multires and MODELS[name][1] == ("full",) else name


def build_model(name: str, num_classes: int = 487, *, multires: bool = False,
                width: float = 1.0, input_size: int | None = None,
                dropout: float = 0.5, clip_frames: int = CLIP_FRAMES,
                input_scale: float = 1.0,
                kernel_init: str = DEFAULT_KERNEL_INIT) -> keras.Model:
    """Builds one of the paper's video CNNs.

    Args:
      name: One of `single_frame`, `early_fusion`, `late_fusion`,
        `slow_fusion`, `fovea_only`, `context_only`.
      multires: Fovea + context streams.
      width: Multiplier on every conv and FC width. Defaults to 1.0.
      input_size: Square frame size; defaults to 170 (178 for multires).
      dropout: Dropout rate after fc6 and fc7. Defaults to 0.5.
      clip_frames: Frames per stored clip (which frames are read).
      input_scale: Multiplier on the mean-subtracted pixels. Defaults to 1
        (the paper's raw pixel units).
      kernel_init: Initializer of the ReLU layers' kernels, one of
        `KERNEL_INITS`. Only matters when training from scratch (a checkpoint
        overwrites it). Defaults to Keras's Glorot uniform; "he_normal" goes with
        Adam and `input_scale` 1/64.

    Returns:
      A `keras.Model` mapping uint8 `[batch, len(frames_needed(name)), S, S, 3]`
      to float32 softmax probabilities `[batch, num_classes]`.

    Example:
      >>> model = build_model("slow_fusion", 10, width=0.125, input_size=64)
      >>> model.input_shape
      (None, 10, 64, 64, 3)
    """
    _check_name(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    if not input_scale > 0:
        raise ValueError(f"input_scale must be positive, got {input_scale}")
    if kernel_init not in KERNEL_INITS:
        raise ValueError(f"kernel_init must be one of {KERNEL_INITS}, got {kernel_init!r}")
    family, streams = MODELS[name]
    if multires:
        if streams != ("full",):
            raise ValueError(f"{name} is already a single multires stream")
        streams = STREAMS
    size = input_size or default_input_size(name, multires)
    steps = len(family.frames(clip_frames))

    # Layers: preprocessing, one trunk per stream, the shared head.
    frames = keras.Input((steps, size, size, 3), dtype="uint8", name="frames")
    built_as = {"family": name, "multires": bool(multires), "clip_frames": int(clip_frames)}
    x = FramePreprocessing(scale=input_scale, built_as=built_as, name="preprocess")(frames)
    x = TimeToBatch(name="time_to_batch")(x)
    merged = []
    for stream in streams:
        if stream == "full":
            features, steps_out = apply_trunk(x, steps=steps, temporal=family.TEMPORAL,
                                              width=width, kernel_init=kernel_init)
        else:
            features, steps_out = apply_trunk(
                stream_input(x, stream, size), steps=steps, temporal=family.TEMPORAL,
                width=width, last_pool=False, prefix=f"{stream}_", kernel_init=kernel_init)
        merged.append(MergeTime(steps_out, name=f"{stream}_merge_time")(features))
    x = merged[0] if len(merged) == 1 else keras.layers.Concatenate(name="streams")(merged)
    outputs = apply_head(x, num_classes=num_classes, width=width, dropout=dropout,
                         kernel_init=kernel_init)
    return keras.Model(frames, outputs, name=model_name(name, multires))


def describe(model: keras.Model, clip_frames: int = CLIP_FRAMES) -> dict:
    """Reads how a built or loaded model was configured.

    The family, multires and clip length come from the config `build_model`
    stores in the model's preprocessing layer; models saved before it did are
    read from their name (`slow_fusion`, `slow_fusion_multires`, ...).

    Returns:
      dict with `name`, `multires`, `num_classes`, `input_size`, `frames`,
      `input_scale`.
    """
    built_as = _built_as(model)
    if built_as is not None:
        name, multires = built_as["family"], bool(built_as["multires"])
        clip_frames = int(built_as.get("clip_frames", clip_frames))
    else:
        match = re.fullmatch(r"(.+?)(_multires)?", model.name)
        name, multires = match.group(1), bool(match.group(2))
    if name not in MODELS:
        raise ValueError(f"model {model.name!r} was not built by sports1m_tf.models")
    return {
        "name": name,
        "multires": multires,
        "num_classes": int(model.output_shape[-1]),
        "input_size": int(model.input_shape[2]),
        "frames": frames_needed(name, clip_frames),
        "input_scale": _input_scale(model),
    }


def _built_as(model: keras.Model) -> dict | None:
    try:
        return getattr(model.get_layer("preprocess"), "built_as", None)
    except ValueError:  # a model without the preprocessing layer
        return None


def _input_scale(model: keras.Model) -> float:
    try:
        return float(model.get_layer("preprocess").scale)
    except ValueError:  # a model without the preprocessing layer
        return 1.0
