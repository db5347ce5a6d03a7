"""A training run's folder: `run_config.json`, `ckpt-STEP` checkpoints, `model.keras`.

Layout of `--model_dir` (the contract between training, evaluation, export and
transfer learning):
  run_config.json   how to rebuild the model, the class names, the training flags
  checkpoint        tf.train.CheckpointManager's index of the ckpt-STEP files
  ckpt-STEP.*       tf.train.Checkpoint(model=, optimizer=, step=, plateau=)
  model.keras       the final model
  model.json        its step and weights digest, checked by a rerun of a finished run
  best_model.keras  the model at the best validation clip Hit@1 so far (with validation)
  best_model.json   its step and validation clip Hit@1
  train/, validation/   TensorBoard events
  .sports1m-train.lock  the writer's lock (`writer_lock`): one training process per folder
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Iterator

from absl import logging

from sports1m_tf import cli
from tfrecord_tools import fileio

RUN_CONFIG_FILE = "run_config.json"
FINAL_MODEL_FILE = "model.keras"
FINAL_MODEL_INFO = "model.json"
LOCK_FILE = ".sports1m-train.lock"
BEST_MODEL_FILE = "best_model.keras"
BEST_MODEL_INFO = "best_model.json"
CHECKPOINT_NAME = "ckpt"
# Keys of run_config.json that `build_model` needs.
MODEL_KEYS = ("model", "num_classes", "multires", "width", "input_size", "dropout",
              "clip_frames")
# Settings added after the first runs: a run_config.json without them used these values.
_OLDER_RUN_DEFAULTS = {"input_scale": 1.0, "optimizer": "sgd"}


def write_run_config(model_dir: str, config: dict) -> str:
    """Writes `run_config.json` (atomically) and returns its path."""
    missing = [k for k in MODEL_KEYS if k not in config]
    if missing:
        raise ValueError(f"run config lacks {missing}")
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, RUN_CONFIG_FILE)
    fileio.write_text_atomic(path, json.dumps(config, indent=1, sort_keys=True) + "\n")
    return path


def load_run_config(model_dir: str) -> dict:
    """Reads a training run's `run_config.json`.

    Raises:
      FileNotFoundError: the folder has no run_config.json (names the folder).
      ValueError: the file is not JSON or lacks the model keys.
    """
    path = os.path.join(model_dir, RUN_CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{model_dir}: no {RUN_CONFIG_FILE}; is this a "
                                "sports1m-train --model_dir?")
    try:
        with open(path) as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in MODEL_KEYS if k not in config]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    return config


def is_run_folder(folder: str | None) -> bool:
    """True when `folder` is a training run's folder (it holds a run config)."""
    return bool(folder) and os.path.isfile(os.path.join(folder, RUN_CONFIG_FILE))


def run_folder_of(model_file: str) -> str | None:
    """The run folder a `.keras` file was written in (`model.keras`, `best_model.keras`),
    or None for a model file that stands alone."""
    folder = os.path.dirname(os.path.abspath(model_file))
    return folder if is_run_folder(folder) else None


def run_record(model_dir: str | None) -> dict:
    """What a run recorded, read leniently: {} without a run config, and no check that
    it can rebuild a model (`load_run_config` checks that)."""
    if not is_run_folder(model_dir):
        return {}
    with open(os.path.join(model_dir, RUN_CONFIG_FILE), encoding="utf-8") as f:
        return json.load(f)


def run_class_names(model_dir: str | None) -> list[str] | None:
    """The class names a run recorded, or None (no run folder, or none recorded)."""
    names = run_record(model_dir).get("class_names")
    return list(names) if names else None


def build_from_run_config(config: dict):
    """The (untrained) model a run config describes."""
    from sports1m_tf.models import build_model
    return build_model(config["model"], config["num_classes"], multires=config["multires"],
                       width=config["width"], input_size=config["input_size"],
                       dropout=config["dropout"], clip_frames=config["clip_frames"],
                       # Runs written before the option existed used raw pixels.
                       input_scale=config.get("input_scale", 1.0))


def checkpoint_steps(model_dir: str) -> list[int]:
    """Steps of the complete `ckpt-STEP` checkpoints in `model_dir`, ascending."""
    if not os.path.isdir(model_dir):
        return []
    pattern = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.index$")
    return sorted(int(m.group(1)) for f in os.listdir(model_dir)
                  if (m := pattern.match(f)))


def finished_step(model_dir: str, train_steps: int) -> int | None:
    """The run's latest checkpoint step when it is already at or past `train_steps`, else None.

    Resuming such a run has nothing to do (and must not rewrite its files).
    """
    steps = checkpoint_steps(model_dir)
    return steps[-1] if steps and steps[-1] >= train_steps else None


def checkpoint_path(model_dir: str, step: int | None = None) -> str | None:
    """The prefix of checkpoint `step` (default: the latest), or None if there is none.

    Raises:
      FileNotFoundError: `step` is given but has no checkpoint (lists those there are).
    """
    import tensorflow as tf
    if step is None:
        return tf.train.latest_checkpoint(model_dir)
    path = os.path.join(model_dir, f"{CHECKPOINT_NAME}-{int(step)}")
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"{model_dir}: no checkpoint for step {step}; "
                                f"steps there: {checkpoint_steps(model_dir)}")
    return path


def restore_model(model_dir: str, step: int | None = None):
    """Builds a run's model and loads its weights.

    Args:
      model_dir: A `sports1m-train --model_dir`.
      step: Checkpoint to restore; defaults to the latest. Without any
        checkpoint, `model.keras` is loaded instead.

    Returns:
      The `keras.Model` (float32 softmax `[batch, num_classes]`).

    Raises:
      FileNotFoundError: neither a checkpoint nor model.keras (names the folder).
    """
    import keras
    import tensorflow as tf

    import sports1m_tf.models  # noqa: F401  (registers the custom layers for loading)

    path = checkpoint_path(model_dir, step)
    if path is None:
        final = os.path.join(model_dir, FINAL_MODEL_FILE)
        if not os.path.exists(final):
            raise FileNotFoundError(f"{model_dir}: no checkpoint and no {FINAL_MODEL_FILE}")
        return keras.saving.load_model(final, compile=False)
    model = build_from_run_config(load_run_config(model_dir))
    status = tf.train.Checkpoint(model=model).restore(path).expect_partial()
    status.assert_existing_objects_matched()
    return model


def write_dir(model_dir: str, is_chief: bool, task_id: int = 0) -> str:
    """Where this task saves checkpoints: `model_dir` for the chief, else a temporary folder.

    MultiWorkerMirroredStrategy needs every worker to take part in a save; the
    others write to a temporary folder that `discard_write_dir` deletes. Its name
    depends only on the run and the task, so a worker killed mid-run and
    restarted reuses (and finally deletes) the same folder.
    """
    if is_chief:
        return model_dir
    run = hashlib.sha1(os.path.abspath(model_dir).encode()).hexdigest()[:12]
    folder = os.path.join(tempfile.gettempdir(), f"sports1m_{run}_worker{task_id}_ckpt")
    os.makedirs(folder, exist_ok=True)
    return folder


def discard_write_dir(directory: str, model_dir: str) -> None:
    """Deletes a non-chief task's temporary checkpoint folder."""
    if os.path.abspath(directory) != os.path.abspath(model_dir):
        shutil.rmtree(directory, ignore_errors=True)


def remove_partial_checkpoints(model_dir: str) -> list[str]:
    """Removes what a checkpoint save that failed part-way (a full disk) left: TensorFlow
    writes `ckpt-STEP_temp/` and `checkpoint.tmp*` before renaming them into place.

    Returns:
      The checkpoint prefixes (`MODEL_DIR/ckpt-STEP`) whose save was cut short.
    """
    if not os.path.isdir(model_dir):
        return []
    cut = []
    for name in sorted(os.listdir(model_dir)):
        if name.startswith(CHECKPOINT_NAME + "-") and name.endswith("_temp"):
            cut.append(os.path.join(model_dir, name[:-len("_temp")]))
        elif not name.startswith("checkpoint.tmp"):
            continue
        fileio.remove_quietly(os.path.join(model_dir, name))
    return cut


def load_best_info(model_dir: str) -> dict | None:
    """`best_model.json` of a run (`step`, `val_clip_hit_at_1`); None when absent."""
    path = os.path.join(model_dir, BEST_MODEL_INFO)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable best-model record ({e})") from e


def weights_digest(model) -> str:
    """SHA-256 of the model's weights: identifies them across processes and runs."""
    import numpy as np
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.numpy())).tobytes())
    return digest.hexdigest()


def save_final_model(model, model_dir: str, step: int) -> str:
    """Writes the run's `model.keras` atomically, then `model.json` (its step and weights
    digest, what a rerun checks the file against); returns the model's path."""
    path = os.path.join(model_dir, FINAL_MODEL_FILE)
    with fileio.atomic_path(path) as tmp:
        model.save(tmp)
    fileio.write_text_atomic(os.path.join(model_dir, FINAL_MODEL_INFO), json.dumps(
        {"step": int(step), "weights_sha256": weights_digest(model)}) + "\n")
    return path


def final_model_problem(model_dir: str, step: int) -> str | None:
    """What is wrong with a finished run's `model.keras`, or None when it is sound.

    Sound: it loads, and its weights digest and step equal those `model.json`
    recorded when it was written (a run from before the record: it loads). A cut
    file (a full disk, a copy that stopped) or another file in its place is not.
    """
    import keras

    import sports1m_tf.models  # noqa: F401  (registers the custom layers for loading)
    path = os.path.join(model_dir, FINAL_MODEL_FILE)
    if not os.path.exists(path):
        return f"{path} is missing"
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001  (any failure to load means: rewrite it)
        return f"{path} does not load ({type(e).__name__}): it is cut short or damaged"
    info_path = os.path.join(model_dir, FINAL_MODEL_INFO)
    if not os.path.exists(info_path):
        return None
    try:
        info = json.loads(fileio.read_text(info_path))
    except ValueError:
        return f"{info_path} is not valid JSON"
    if info.get("step") != step:
        return f"{path} is of step {info.get('step')}, the run's last checkpoint of step {step}"
    if info.get("weights_sha256") != weights_digest(model):
        return f"{path}'s weights differ from those recorded in {info_path}"
    return None


def ensure_final_model(model_dir: str, step: int) -> bool:
    """Checks a finished run's `model.keras`; rewrites it from checkpoint `step` if it is
    not sound (`final_model_problem`). Returns whether it was rewritten."""
    problem = final_model_problem(model_dir, step)
    if problem is None:
        return False
    logging.warning("%s: rewriting it from checkpoint %d", problem, step)
    save_final_model(restore_model(model_dir, step), model_dir, step)
    return True


_HELD: dict[str, int] = {}  # lock files this process holds → nesting depth


@contextlib.contextmanager
def writer_lock(model_dir: str) -> Iterator[None]:
    """One training process writes a run folder at a time (`fileio.exclusive_lock`).

    The kernel holds the lock for the process and drops it when the process ends
    however it ends, so a killed run never blocks the next. Nested use in one
    process (the command around `train()`) passes. Remote folders are not locked:
    there the user coordinates the writers.

    Raises:
      cli.UserError: another process trains in `model_dir` (the message names it).
    """
    path = fileio.join(model_dir, LOCK_FILE)
    path = path if fileio.is_remote(path) else os.path.abspath(path)
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(fileio.exclusive_lock(fileio.join(model_dir, LOCK_FILE),
                                                     f"run folder {model_dir}"))
        except fileio.LockHeld as e:
            raise cli.UserError(str(e)) from None
        _HELD[path] = 1
        try:
            yield
        finally:
            del _HELD[path]


def save_best_model(model, model_dir: str, step: int, hit_at_1: float) -> str:
    """Writes `best_model.keras` and its record; a kill midway leaves the old pair."""
    path = os.path.join(model_dir, BEST_MODEL_FILE)
    with fileio.atomic_path(path) as tmp:
        model.save(tmp)
    fileio.write_text_atomic(os.path.join(model_dir, BEST_MODEL_INFO),
                       json.dumps({"step": int(step), "val_clip_hit_at_1": float(hit_at_1)}))
    return path


def check_resumable(model_dir: str, run_config: dict) -> dict:
    """Checks that resuming in `model_dir` trains the same model; returns the config to record.

    Args:
      model_dir: A run folder holding a checkpoint.
      run_config: The new run's description (see `write_run_config`).

    Returns:
      `run_config` with the folder's `kernel_init`: the checkpoint's weights
      replace the initialisation, so the record keeps the one the run really
      started from (runs from before the setting: Glorot, the default).

    Raises:
      ValueError: the folder holds a run of another model (names the keys that differ).
    """
    if not os.path.exists(os.path.join(model_dir, RUN_CONFIG_FILE)):
        return run_config
    previous = load_run_config(model_dir)
    changed = {k: (previous[k], run_config[k]) for k in MODEL_KEYS
               if previous.get(k) != run_config.get(k)}
    for k, default in _OLDER_RUN_DEFAULTS.items():
        if previous.get(k, default) != run_config[k]:
            changed[k] = (previous.get(k, default), run_config[k])
    if changed:
        raise ValueError(f"{model_dir} holds a run of another model; (old, new): {changed}")
    from sports1m_tf.data import input_checks
    input_checks.check_class_names(previous.get("class_names"), run_config.get("class_names"),
                                   model_source=os.path.join(model_dir, RUN_CONFIG_FILE),
                                   data_source="--train_files' dataset.json")
    return {**run_config, "kernel_init": previous.get("kernel_init", "glorot_uniform")}


class BestModel:
    """`best_model.keras`: the weights of the best validation clip Hit@1 so far.

    It outlives checkpoint rotation. Its own record (`best_model.json`), not the
    plateau schedule's state, says what to beat: a kill between the two writes
    must not let a worse model replace it on resume. A fresh run drops a stale one.

    Args:
      resumed: The run continues from a checkpoint.
      writer: This task writes the files (the chief).
    """

    def __init__(self, model_dir: str, *, resumed: bool, writer: bool):
        self._model_dir, self._writer = model_dir, writer
        info = load_best_info(model_dir) if resumed else None
        self.hit_at_1 = info["val_clip_hit_at_1"] if info else -1.0
        self.step = info["step"] if info else None
        if writer and not resumed:
            for name in (BEST_MODEL_FILE, BEST_MODEL_INFO):
                if os.path.exists(os.path.join(model_dir, name)):
                    os.remove(os.path.join(model_dir, name))

    def offer(self, model, step: int, hit_at_1: float) -> bool:
        """Keeps `model` if `hit_at_1` beats the best so far; returns whether it did."""
        if hit_at_1 <= self.hit_at_1:
            return False
        self.hit_at_1, self.step = hit_at_1, step
        if self._writer:
            save_best_model(model, self._model_dir, step, hit_at_1)
        return True

    @property
    def path(self) -> str | None:
        """The kept model's file (None off the writer or before any validation)."""
        if not self._writer or self.step is None:
            return None
        return os.path.join(self._model_dir, BEST_MODEL_FILE)
