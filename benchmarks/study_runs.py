"""What the motion and multires studies share: their records, recipe flags, runs and tables.

A study's dataset is generated and converted once per settings (cached under a
folder named by their hash); each run trains with the project's loop, is
scored on the test videos with `sports1m_tf.evaluation.evaluate.evaluate`, and is
kept in the study's JSON so that a killed study restarted with the same flags
skips the runs it finished.
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from typing import Sequence

from absl import flags, logging

SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------
def model_spec(name: str) -> tuple[str, bool]:
    """`slow_fusion_multires` -> ("slow_fusion", True); `early_fusion` -> ("early_fusion", False)."""
    if name.endswith("_multires"):
        return name[:-len("_multires")], True
    return name, False


def make_records(root: str, *, classes: str, videos_per_class: int, num_frames: int,
                 video_size: int, frame_size: int, centre_bias: bool, seed: int,
                 workers: int = 2) -> dict:
    """Synthetic videos and their train/val/test clip records under `root`, reused when
    the same settings made them before.

    Returns:
      dict: `files` (split -> shard glob), `classes` (names, index order).
    """
    from sports1m_tf import synthetic
    from tfrecord_tools.convert import convert

    settings = dict(classes=classes, videos_per_class=videos_per_class, num_frames=num_frames,
                    video_size=video_size, frame_size=frame_size, centre_bias=centre_bias,
                    seed=seed)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    folder = os.path.join(root, f"{classes}_{'centre' if centre_bias else 'anywhere'}"
                                f"_seed{seed}_{key}")
    records, done = os.path.join(folder, "records"), os.path.join(folder, "done.json")
    if not os.path.exists(done):
        started = time.time()
        data = synthetic.make_dataset(os.path.join(folder, "synth"), classes=classes,
                                      videos_per_class=videos_per_class, num_frames=num_frames,
                                      size=video_size, centre_bias=centre_bias, seed=seed)
        for split in SPLITS:
            convert(data["manifests"][split], output_dir=records, labels=data["classes_file"],
                    split=split, num_shards=2, workers=workers, frame_size=frame_size,
                    seed=seed, progress=False)
        with open(done, "w") as f:
            json.dump({**settings, "class_names": data["classes"]}, f)
        logging.info("dataset %s ready in %.0f s", folder, time.time() - started)
    with open(done) as f:
        names = json.load(f)["class_names"]
    return {"files": {s: os.path.join(records, f"{s}-*") for s in SPLITS}, "classes": names}


# sports1m-train's flags that make a training recipe: a study takes them from a file of
# configs/ (--flagfile=configs/motion_cpu.flags or configs/paper.flags), so that the
# recipe is written once.
RECIPE_FLAGS = ("optimizer", "learning_rate", "momentum", "weight_decay", "lr_schedule",
                "input_scale", "kernel_init", "dropout", "batch_size", "shuffle_buffer")


def define_size_flags() -> None:
    """The video and model sizes both studies take, with the same defaults."""
    flags.DEFINE_integer("num_frames", 32, "Frames per video (16 per clip).")
    flags.DEFINE_integer("video_size", 64, "Rendered frame size.")
    flags.DEFINE_integer("frame_size", 64, "Stored (converted) frame size.")
    flags.DEFINE_integer("input_size", 56, "Model input (crop) size; multires streams see half.")
    flags.DEFINE_float("width", 0.25, "Width multiplier.")


def define_place_flags(study: str) -> None:
    """Where a study works and writes: --workers, --work_dir, --output."""
    import common
    flags.DEFINE_integer("workers", 2, "Conversion processes.")
    flags.DEFINE_string("work_dir", f"/tmp/sports1m_{study}",
                        "Videos, records and runs (datasets are reused when rerun).")
    common.define_output(study, "JSON output.")


def define_recipe_flags() -> None:
    """Declares `RECIPE_FLAGS` as sports1m-train declares them (its defaults: the
    paper's recipe, configs/paper.flags)."""
    from sports1m_tf.settings import define_flags as define_train_flags

    train_flags = flags.FlagValues()
    define_train_flags(flag_values=train_flags)
    for name in RECIPE_FLAGS:
        if name not in flags.FLAGS:
            flags.FLAGS[name] = train_flags[name]
            flags.FLAGS.register_flag_by_module(__name__, train_flags[name])


def recipe_settings() -> dict:
    """The parsed `RECIPE_FLAGS`, as `sports1m_tf.training.train.make_config` fields."""
    return {name: flags.FLAGS[name].value for name in RECIPE_FLAGS}


def _logged(events_dir: str, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a scalar written with `tf.summary.scalar`, in the order written."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(events_dir, size_guidance={"tensors": 0})
    events.Reload()
    if tag not in events.Tags()["tensors"]:
        return []
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]


def logged_scalar(events_dir: str, tag: str) -> list[float]:
    """The values of a scalar written with `tf.summary.scalar`, in step order."""
    return [value for _, value in _logged(events_dir, tag)]


def validation_curve(model_dir: str) -> dict[int, float]:
    """Validation clip Hit@1 by step; a step validated again after a resume keeps its
    latest value."""
    return dict(_logged(os.path.join(model_dir, "validation"), "clip_hit_at_1"))


def select_by_validation(model_dir: str) -> dict | None:
    """The run's model of best validation clip Hit@1: `best_model.keras` when the run
    kept one, else (runs from before sports1m-train kept it) the best of the kept
    checkpoints. The first of equal bests. None without validation or checkpoints.

    Returns:
      dict: `keras_model` or `checkpoint` (for `evaluate.load_members`), `step`,
      `val_clip_hit_at_1`, `source` (how it was chosen, for the JSON).
    """
    from sports1m_tf import run_folder

    info = run_folder.load_best_info(model_dir)
    if info:
        return {"keras_model": os.path.join(model_dir, run_folder.BEST_MODEL_FILE),
                "step": info["step"], "val_clip_hit_at_1": info["val_clip_hit_at_1"],
                "source": run_folder.BEST_MODEL_FILE}
    curve = validation_curve(model_dir)
    kept = [s for s in run_folder.checkpoint_steps(model_dir) if s in curve]
    if not kept:
        return None
    step = max(sorted(kept), key=lambda s: curve[s])
    return {"checkpoint": run_folder.checkpoint_path(model_dir, step), "step": step,
            "val_clip_hit_at_1": curve[step],
            "source": f"best of the kept checkpoints, steps {min(kept)}-{max(kept)}"}


def score_selected(data: dict, model_dir: str) -> dict:
    """Test Hit@1 of `select_by_validation`'s model, as `selected_*` fields ({} when
    there is none). The test split plays no part in the choice."""
    import keras

    from sports1m_tf.evaluation import evaluate
    from sports1m_tf.settings import EvalConfig

    chosen = select_by_validation(model_dir)
    if chosen is None:
        return {}
    members = evaluate.load_members(
        checkpoints=[chosen["checkpoint"]] if "checkpoint" in chosen else (),
        keras_models=[chosen["keras_model"]] if "keras_model" in chosen else ())
    output_dir = os.path.join(model_dir, "selected_test_report")
    report = evaluate.evaluate(members, data["files"]["test"], output_dir=output_dir,
                               class_names=data["classes"], write_tensorboard=False,
                               config=EvalConfig(progress=False))
    keras.backend.clear_session()
    return {"selected_step": chosen["step"], "selected_from": chosen["source"],
            "selected_val_clip_hit_at_1": chosen["val_clip_hit_at_1"],
            "selected_video_hit_at_1": report["video_hit_at_1"],
            "selected_clip_hit_at_1": report["clip_hit_at_1"],
            "selected_per_class_video_hit_at_1": per_class_hits(
                os.path.join(output_dir, "video_probs.npz"))}


def train_and_evaluate(data: dict, model_dir: str, *, model: str, seed: int,
                       **train_settings) -> dict:
    """Trains one model from scratch on `data`, then scores it on the test videos.

    Args:
      data: from `make_records`.
      model_dir: str. The run's folder: carried on from its checkpoint when
        `resume_step` finds one, otherwise deleted first.
      model: str. A model name, `_multires` suffix for the multires variant.
      seed: int. Initialisation and data-order seed.
      **train_settings: more `sports1m_tf.training.train.make_config` fields.

    Returns:
      dict: `clip_hit_at_1`, `video_hit_at_1` (test), `val_clip_hit_at_1`,
      `train_seconds` (wall, the whole call: from `resumed_from_step` when an
      earlier checkpoint of the same run was carried on), `train_clips_per_s` (median of the
      logged windows after the first, so step time only: no start-up, tracing
      or validation), `steps`, `test_videos`; and `score_selected`'s `selected_*`
      (the same test scores of the model of best validation Hit@1).
    """
    import shutil

    import keras

    from sports1m_tf.evaluation import evaluate
    from sports1m_tf.settings import EvalConfig
    from sports1m_tf.training.train import make_config, train

    name, multires = model_spec(model)
    config = make_config(model=name, multires=multires, seed=seed, model_dir=model_dir,
                         train_files=[data["files"]["train"]], val_files=[data["files"]["val"]],
                         **train_settings)
    resumed_from = resume_step(model_dir, config)
    if not resumed_from:
        shutil.rmtree(model_dir, ignore_errors=True)
    started = time.time()
    result = train(config)
    seconds = time.time() - started
    report = evaluate.evaluate([result["model"]], data["files"]["test"],
                               output_dir=os.path.join(model_dir, "test_report"),
                               class_names=data["classes"], write_tensorboard=False,
                               config=EvalConfig(progress=False))
    speeds = logged_scalar(os.path.join(model_dir, "train"), "clips_per_second")
    keras.backend.clear_session()
    selected = score_selected(data, model_dir)
    return {"clip_hit_at_1": report["clip_hit_at_1"], "video_hit_at_1": report["video_hit_at_1"],
            "per_class_video_hit_at_1": per_class_hits(
                os.path.join(model_dir, "test_report", "video_probs.npz")),
            "val_clip_hit_at_1": (result["validation"] or {}).get("hit_at_1"),
            "train_seconds": round(seconds, 1),
            "train_clips_per_s": statistics.median(speeds[1:] or speeds) if speeds else None,
            "steps": result["step"], "resumed_from_step": resumed_from,
            "test_videos": report["videos"], **selected}


# Settings that only say how long a run goes and how often it reports: a run's
# checkpoint made with other values of these is still a prefix of the run asked for.
_LENGTH_FIELDS = ("train_steps", "checkpoint_every", "log_every", "keep_checkpoints")
# Settings added after some runs were made, with the value those runs had.
_ADDED_LATER = {"kernel_init": "glorot_uniform", "lr_schedule": "plateau"}


def resume_step(model_dir: str, config) -> int:
    """The step of `model_dir`'s checkpoint of this very run, stopped at or before its
    end; 0 when there is none.

    A step lets `train` carry on from it: a study killed mid-run loses at most
    `checkpoint_every` steps, and one rerun with a larger --train_steps extends its
    finished runs instead of repeating them (constant learning rate, plateau state
    in the checkpoint: the same run as one trained that long in one go, up to the
    data order after the restart). Anything else about the run differs: start afresh.
    """
    import dataclasses

    from sports1m_tf import run_folder

    step = max(run_folder.checkpoint_steps(model_dir), default=0)
    if not step or step > config.train_steps:
        return 0
    try:
        previous = run_folder.load_run_config(model_dir)
    except (OSError, ValueError):
        return 0
    # A cosine curve is drawn over the whole run: another length is another run.
    lengths = ("checkpoint_every", "log_every", "keep_checkpoints") \
        if config.lr_schedule == "cosine" else _LENGTH_FIELDS
    wanted = {k: v for k, v in dataclasses.asdict(config).items() if k not in lengths}
    wanted = json.loads(json.dumps(wanted))  # tuples -> lists, as run_config.json holds them
    # None: resolved by `train` from the data (num_classes), which checks it itself.
    same = all(previous.get(k, _ADDED_LATER.get(k)) == v
               for k, v in wanted.items() if v is not None)
    return step if same else 0


def per_class_hits(video_probs: str) -> dict[str, float]:
    """Video Hit@1 per class, from the `video_probs.npz` that `evaluate` writes."""
    import numpy as np

    with np.load(video_probs) as f:
        probs, labels, names = f["member_probs"].mean(axis=1), f["labels"], f["class_names"]
    hit = labels[np.arange(len(labels)), probs.argmax(axis=1)]
    return {str(n): float(hit[labels[:, c]].mean()) for c, n in enumerate(names)
            if labels[:, c].any()}


def load_finished(path: str, settings: dict) -> list[dict]:
    """Runs already in the study's JSON when it was written with the same settings."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        previous = json.load(f)
    return previous.get("runs", []) if previous.get("settings") == settings else []


def save(path: str, settings: dict, runs: list[dict], **extra) -> None:
    """Writes the study's JSON atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"settings": settings, "runs": runs, **extra}, f, indent=1)
    os.replace(path + ".tmp", path)


def summarise(values: Sequence[float | None]) -> dict:
    """`mean`, sample `std` (0 for one value), `min`, `max`, `n`."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def cell(stats: dict, scale: float = 100.0, digits: int = 1) -> str:
    """`mean ± std (min–max)` for a Markdown table (percent by default)."""
    if not stats["n"]:
        return "–"
    f = lambda x: f"{scale * x:.{digits}f}"
    text = f"{f(stats['mean'])} ± {f(stats['std'])}"
    return text + (f" ({f(stats['min'])}–{f(stats['max'])})" if stats["n"] > 1 else "")
