"""A Keras model → `EXPORT_DIR/NAME/VERSION/model.tflite` for LiteRT (phones, edge devices).

Layout written:

  EXPORT_DIR/NAME/VERSION/model.tflite       one signature, `serving_default`
  EXPORT_DIR/NAME/VERSION/model_info.json    as a SavedModel's, plus `format` and `quantize`
  EXPORT_DIR/NAME/VERSION/class_names.txt    one class a line

The file's signature takes ONE clip, `clip` uint8 [1, 16, S, S, 3] RGB at the
stored frame size S the model was trained on (the converter's frames: centre
square, area-resized), and does `serving_default`'s preprocessing inside:
gathers the model's frames, cuts the centre crop, subtracts the mean. Outputs:
`probabilities` float32 [1, C] and `embedding` float32 [1, d] (the
`embedding_layer`'s activations, centre view).

Quantization (`quantize`):
- `none`: float32 weights and arithmetic; equals the SavedModel within 1e-5.
- `float16`: float16 weights (half the file), float32 arithmetic.
- `int8`: full-integer: int8 weights and activations, calibrated on a
  representative set of clips; the input stays uint8 and both outputs are
  dequantized to float32, so callers feed and read the same types in every mode.

The version folder is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Callable, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from export import saved_model, signatures
from tfrecord_tools import schema

QUANTIZATIONS = ("none", "float16", "int8")
TFLITE_FILE = "model.tflite"
MODEL_INFO_NAME = "model_info.json"
INPUT_NAME = "clip"
# Ops named in the converter's error messages ('tf.Foo' op is neither a custom op ...).
_OP_IN_MESSAGE = re.compile(r"'((?:tf|tfl)\.[A-Za-z0-9_]+)' op")


class ConversionError(ValueError):
    """The converter refused the model; the message names the ops that did not convert."""


def clip_function(model: keras.Model, frame_size: int = schema.FRAME_SIZE,
                  clip_frames: int = schema.CLIP_FRAMES,
                  embedding_layer: str = signatures.DEFAULT_EMBEDDING_LAYER
                  ) -> tuple[Callable, list[tf.TensorSpec]]:
    """The function converted: one stored-size clip → probabilities and embedding (centre view).

    Returns:
      (fn, input_signature): `clip` uint8 [1, clip_frames, frame_size,
      frame_size, 3] → {`probabilities` float32 [1, C], `embedding` float32 [1, d]}.
    """
    info = saved_model.model_info(model, clip_frames, frame_size, embedding_layer)
    both = keras.Model(model.input, [model.output, model.get_layer(embedding_layer).output])

    def serving_default(clip):
        frames = signatures.centre_view(signatures.select_frames(clip, info["frames"]),
                                        info["input_size"])
        probabilities, embedding = both(frames, training=False)
        return {"probabilities": probabilities, "embedding": embedding}

    spec = [tf.TensorSpec([1, clip_frames, frame_size, frame_size, 3], tf.uint8, name=INPUT_NAME)]
    return serving_default, spec


def failed_ops(message: str) -> list[str]:
    """The op names a converter error message mentions, in order, once each."""
    return list(dict.fromkeys(_OP_IN_MESSAGE.findall(message)))


def convert(model: keras.Model, quantize: str = "none", *,
            representative: Iterable[np.ndarray] | None = None,
            frame_size: int = schema.FRAME_SIZE, clip_frames: int = schema.CLIP_FRAMES,
            embedding_layer: str = signatures.DEFAULT_EMBEDDING_LAYER) -> bytes:
    """The model as a TFLite flatbuffer.

    Args:
      model: a `sports1m_tf.models` model.
      quantize: `none`, `float16` or `int8` (see the module docstring).
      representative: for `int8`: uint8 clips [1, 16, S, S, 3] to calibrate the
        activations' ranges on (a hundred or so from the data the model will see).
      frame_size: S, the stored frame size the model was trained on.
      clip_frames: Frames per clip.
      embedding_layer: The layer of the second output.

    Raises:
      ValueError: an unknown `quantize`, or `int8` without clips.
      ConversionError: the converter failed; names the ops that did not convert.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    clips = list(representative or []) if quantize == "int8" else []
    if quantize == "int8" and not clips:
        raise ValueError("int8 quantization needs representative clips")
    fn, spec = clip_function(model, frame_size, clip_frames, embedding_layer)
    with tempfile.TemporaryDirectory() as scratch:
        # From a SavedModel: the converter freezes its variables (from a concrete
        # function it kept them as resources the interpreter cannot read).
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", fn, input_signature=spec)
        archive.write_out(scratch, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch)
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([c] for c in clips)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            return converter.convert()
        except Exception as e:  # noqa: BLE001 - the converter raises several unrelated types
            raise conversion_error(e, quantize) from e


def conversion_error(error: Exception, quantize: str) -> ConversionError:
    """A `ConversionError` naming the ops the converter's message names."""
    message = str(error)
    ops = failed_ops(message)
    first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    named = (f"ops that do not convert: {', '.join(ops)}" if ops
             else f"the converter said: {first[:300]}")
    return ConversionError(f"TFLite conversion (--quantize={quantize}) failed; {named}")


def export_tflite(model: keras.Model, export_dir: str, name: str, version: int | None = None,
                  *, class_names: Sequence[str] | None = None, quantize: str = "none",
                  representative: Iterable[np.ndarray] | None = None,
                  clip_frames: int = schema.CLIP_FRAMES, frame_size: int = schema.FRAME_SIZE,
                  embedding_layer: str = signatures.DEFAULT_EMBEDDING_LAYER) -> str:
    """Writes `EXPORT_DIR/NAME/VERSION/model.tflite` with its model_info.json and class names.

    Args: as `saved_model.export_model`, and `quantize`, `representative` as `convert`.

    Returns:
      str, the version folder.
    """
    info = saved_model.model_info(model, clip_frames, frame_size, embedding_layer)
    names = saved_model.export_class_names(class_names, info["num_classes"])
    flatbuffer = convert(model, quantize, representative=representative, frame_size=frame_size,
                         clip_frames=clip_frames, embedding_layer=embedding_layer)
    staging, final = saved_model.new_version_folders(export_dir, name, version)
    try:
        os.makedirs(staging)
        with open(os.path.join(staging, TFLITE_FILE), "wb") as f:
            f.write(flatbuffer)
        saved_model.write_model_info(staging, dict(info, format="tflite", quantize=quantize),
                                     MODEL_INFO_NAME)
        saved_model.write_class_names(os.path.join(staging, saved_model.CLASS_NAMES_FILE),
                                      names)
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info("exported %s (%s, %s, %d bytes) to %s", name, info["name"], quantize,
                 len(flatbuffer), final)
    return final
