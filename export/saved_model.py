"""`export_model`: a Keras model → a TF Serving SavedModel `EXPORT_DIR/NAME/VERSION/`.

Layout written (what TF Serving watches and loads):

  EXPORT_DIR/models.config                  model config listing every model here
  EXPORT_DIR/NAME/VERSION/saved_model.pb    signatures of `export.signatures`, tag `serve`
  EXPORT_DIR/NAME/VERSION/variables/
  EXPORT_DIR/NAME/VERSION/assets/class_names.txt
  EXPORT_DIR/NAME/VERSION/assets.extra/tf_serving_warmup_requests
  EXPORT_DIR/NAME/VERSION/assets.extra/model_info.json  what the model reads (see below)

`model_info.json` tells clients which frames of a 16-frame clip the model
reads (`frames`), its family, crop and stored frame size, so that a client
decodes only what matters (`sports1m-predict` converts only those frames).

A version is written under a temporary name unique to the process and renamed
into place when complete, so a server polling NAME/ never loads a half-written
version; a failed export (a full disk, an error) removes it. `exporting` is the
lock of one export of a NAME at a time (`NAME/.sports1m-export.lock`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import uuid
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from export import signatures
from export.frame_bounds import DEFAULT_MAX_CLIPS, FrameBounds, check_bounds, default_max_pixels
from export.video_prediction import MODEL_INFO_FILE
from sports1m_tf.models import describe
from tfrecord_tools import fileio, schema

CLASS_NAMES_FILE = "class_names.txt"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MODELS_CONFIG = "models.config"
EXPORT_LOCK = ".sports1m-export.lock"
STAGING_PREFIX = ".tmp-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def versions(model_root: str) -> list[int]:
    """The complete versions under `model_root` (integer folders with a saved_model.pb)."""
    if not os.path.isdir(model_root):
        return []
    return sorted(int(d) for d in os.listdir(model_root)
                  if d.isdigit() and os.path.exists(os.path.join(model_root, d, "saved_model.pb")))


def next_version(model_root: str) -> int:
    """One more than the highest integer folder under `model_root` (1 when none)."""
    taken = [int(d) for d in os.listdir(model_root) if d.isdigit()] \
        if os.path.isdir(model_root) else []
    return max(taken, default=0) + 1


def export_class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """Validates the class names (one line each in the asset); `class_N` when none are given."""
    if class_names is None:
        logging.warning("no class names given: exporting class_0 .. class_%d", num_classes - 1)
        return [f"class_{i}" for i in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a model with {num_classes} classes")
    bad = [n for n in names if not n or "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"class names must be non-empty single lines; got {bad[:3]!r}")
    return names


def write_class_names(path: str, names: Sequence[str]) -> str:
    """One class name a line (what `model_class_names` reads back); returns `path`."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")
    return path


def serving_apis():
    """The tensorflow-serving-api protos (model, predict, prediction_log), or a clear error."""
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError as e:
        raise ImportError("warmup requests need tensorflow-serving-api (pip install "
                          "'sports1m_tf[serving]'), or export with warmup=False "
                          "(sports1m-export --nowarmup)") from e
    return model_pb2, predict_pb2, prediction_log_pb2


def predict_request(model_name: str, signature: str, value: np.ndarray):
    """A TF Serving `PredictRequest` feeding `value` to a signature's input.

    Args:
      model_name: The served model's name.
      signature: A key of `signatures.SIGNATURE_INPUTS`.
      value: uint8 frames or an object array of JPEG bytes.

    Returns:
      A `tensorflow_serving.apis.predict_pb2.PredictRequest`.
    """
    model_pb2, predict_pb2, _ = serving_apis()
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
    request.inputs[signatures.SIGNATURE_INPUTS[signature]].CopyFrom(tf.make_tensor_proto(value))
    return request


def warmup_requests(model_name: str, clip_frames: int = schema.CLIP_FRAMES,
                    size: int = schema.FRAME_SIZE) -> list[bytes]:
    """One serialised TF Serving `PredictionLog` per signature, on stored-size frames.

    TF Serving replays them at load time so that the first real request does not
    pay for kernel initialisation.
    """
    _, _, prediction_log_pb2 = serving_apis()
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (1, clip_frames, size, size, 3), dtype=np.uint8)
    jpeg = np.array([[tf.io.encode_jpeg(frame, quality=90).numpy() for frame in clip[0]]],
                    dtype=object)
    inputs = {"serving_default": clip, "predict_video": clip, "predict_jpeg": jpeg,
              "predict_video_jpeg": jpeg, "embed_video": clip, "embed_video_jpeg": jpeg}
    return [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
        request=predict_request(model_name, signature, value))).SerializeToString()
        for signature, value in inputs.items()]


def write_warmup(version_dir: str, model_name: str, clip_frames: int = schema.CLIP_FRAMES) -> str:
    """Writes `assets.extra/tf_serving_warmup_requests`; returns its path."""
    path = os.path.join(version_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in warmup_requests(model_name, clip_frames):
            writer.write(record)
    return path


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_models_config(export_dir: str, serving_root: str | None = None) -> str:
    """Writes `EXPORT_DIR/models.config` listing every model with a complete version.

    Args:
      export_dir: The folder holding one sub-folder per model.
      serving_root: The folder as the server sees it (e.g. `/models` inside
        the tensorflow/serving container); defaults to `export_dir`'s absolute path.

    Returns:
      The config's path (TF Serving `--model_config_file`).
    """
    root = serving_root or os.path.abspath(export_dir)
    names = sorted(n for n in os.listdir(export_dir) if versions(os.path.join(export_dir, n)))
    entries = "".join(
        "  config {\n"
        f"    name: {_quote(n)}\n"
        f"    base_path: {_quote(root.rstrip('/') + '/' + n)}\n"
        '    model_platform: "tensorflow"\n'
        "  }\n" for n in names)
    path = os.path.join(export_dir, MODELS_CONFIG)
    fileio.write_text_atomic(path, "model_config_list {\n" + entries + "}\n")
    return path


def model_info(model: keras.Model, clip_frames: int, frame_size: int,
               embedding_layer: str = signatures.DEFAULT_EMBEDDING_LAYER) -> dict:
    """What `model_info.json` records: a `describe()` dict, the clip layout, and the layer
    the embeddings come from with their size `embedding_size` (d)."""
    info = describe(model, clip_frames)
    record = {key: info[key] for key in ("name", "multires", "num_classes", "input_size",
                                          "frames")}
    record.update(clip_frames=int(clip_frames), frame_size=int(frame_size),
                  embedding_layer=embedding_layer,
                  embedding_size=int(model.get_layer(embedding_layer).units))
    return record


def write_model_info(version_dir: str, record: dict,
                     relative_path: str = MODEL_INFO_FILE) -> str:
    """Writes a `model_info` dict to `version_dir/relative_path` (assets.extra/model_info.json
    for a SavedModel); returns its path."""
    path = os.path.join(version_dir, relative_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    return path


def new_version_folders(export_dir: str, name: str, version: int | None) -> tuple[str, str]:
    """(an empty staging folder, the version folder it is renamed to once complete).

    Args:
      export_dir: Folder of models.
      name: The model's folder under it.
      version: Defaults to the next free integer; an existing version fails.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"model name {name!r} must match {_NAME.pattern}")
    model_root = os.path.join(export_dir, name)
    os.makedirs(model_root, exist_ok=True)
    if version is None:
        version = next_version(model_root)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    final = os.path.join(model_root, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; pick another --version")
    # Not an integer name: TF Serving ignores the folder until the rename. Unique to
    # the process: two exports never write into one folder.
    staging = os.path.join(model_root,
                           f"{STAGING_PREFIX}{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    return staging, final


@contextlib.contextmanager
def exporting(export_dir: str, name: str) -> Iterator[None]:
    """Holds the lock of `EXPORT_DIR/NAME` for one export (`sports1m-export` takes it):
    one writer per name, decided by the kernel, so a killed export never blocks the
    next. Holding it, removes the staging folders killed exports left.

    Raises:
      fileio.LockHeld: another export of the name runs (names the folder and the holder).
    """
    model_root = os.path.join(export_dir, name)
    with fileio.exclusive_lock(os.path.join(model_root, EXPORT_LOCK), f"model folder {model_root}"):
        for entry in os.listdir(model_root):
            if entry.startswith(STAGING_PREFIX):
                fileio.remove_quietly(os.path.join(model_root, entry))
        yield


def export_model(model: keras.Model, export_dir: str, name: str, version: int | None = None,
                 *, class_names: Sequence[str] | None = None, warmup: bool = True,
                 serving_root: str | None = None,
                 clip_frames: int = schema.CLIP_FRAMES,
                 frame_size: int = schema.FRAME_SIZE,
                 embedding_layer: str = signatures.DEFAULT_EMBEDDING_LAYER,
                 max_frame_pixels: int | None = None,
                 max_clips: int = DEFAULT_MAX_CLIPS) -> str:
    """Exports a `sports1m_tf.models` model as a TF Serving SavedModel version.

    Args:
      model: keras.Model built by `sports1m_tf.models.build_model` (or loaded).
      export_dir: Folder of models (TF Serving's model base folder).
      name: Model name: the folder under `export_dir` and the served name.
      class_names: one name per class, shipped as `assets/class_names.txt`.
        Defaults to `class_0`, `class_1`, ... with a warning.
      warmup: Write `assets.extra/tf_serving_warmup_requests` (needs
        `tensorflow-serving-api`). Defaults to True.
      serving_root: How the server sees `export_dir`, for models.config.
      clip_frames: Frames per client clip.
      frame_size: Side of the stored frames the model was trained on (the
        converter's frame_size); the signatures bring client frames to it.
        Defaults to 200.
      embedding_layer: The layer `embed_video` answers with: `fc7` (default) or `fc6`.
      max_frame_pixels: Most pixels (height x width) of a client frame; larger
        ones are refused before decoding. Default: (8 x max(frame_size, 200))^2;
        at least max(frame_size, 200)^2.
      max_clips: Most clips in one request. Default 256.

    Returns:
      str, the version folder `EXPORT_DIR/NAME/VERSION`.

    Raises:
      fileio.DiskFull: the disk filled up (nothing of this version is left).

    Example:
      >>> model = build_model("single_frame", 3, width=0.0625, input_size=32)
      >>> export_model(model, "/tmp/serving", "tiny", class_names=["a", "b", "c"])
      '/tmp/serving/tiny/1'
    """
    if warmup:
        serving_apis()  # fail before the export, not after it
    info = model_info(model, clip_frames, frame_size, embedding_layer)
    names = export_class_names(class_names, info["num_classes"])
    bounds = FrameBounds(max_frame_pixels or default_max_pixels(frame_size), info["input_size"],
                         max_clips)
    check_bounds(bounds, frame_size)
    info.update(bounds.to_json())
    staging, final = new_version_folders(export_dir, name, version)
    try:
        _write_version(model, staging, name, names, info, clip_frames, frame_size,
                       embedding_layer, bounds, warmup)
        os.rename(staging, final)
    except BaseException as e:
        fileio.remove_quietly(staging)
        if fileio.is_disk_full(e):
            raise fileio.disk_full(e, final) from None
        raise
    write_models_config(export_dir, serving_root)
    logging.info("exported %s (%s, %d classes) to %s", name, info["name"], info["num_classes"],
                 final)
    return final


def _write_version(model: keras.Model, staging: str, name: str, names: list[str], info: dict,
                   clip_frames: int, frame_size: int, embedding_layer: str,
                   bounds: FrameBounds, warmup: bool) -> None:
    """Writes a whole version folder at `staging`."""
    with tempfile.TemporaryDirectory() as scratch:
        # The asset keeps the file's base name inside the SavedModel.
        vocab = write_class_names(os.path.join(scratch, CLASS_NAMES_FILE), names)
        table = signatures.class_name_table(vocab)
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.track(table)
        for signature, (fn, spec) in signatures.serving_functions(
                model, table, clip_frames, frame_size, embedding_layer, bounds).items():
            archive.add_endpoint(signature, fn, input_signature=spec)
        archive.write_out(staging, verbose=False)
    # After write_out: the archive has no hook for assets.extra.
    write_model_info(staging, info)
    if warmup:
        write_warmup(staging, name, clip_frames)
