"""The motion study: do the temporal models win where only motion tells classes apart?

    nice -n 10 python benchmarks/motion_study.py --flagfile=configs/motion_cpu.flags   # the study
    python benchmarks/motion_study.py --flagfile=configs/motion_cpu.flags --seeds=0 \
        --models=single_frame,slow_fusion --class_sets=motion --train_steps=100    # a quick look

The training recipe is sports1m-train's flags (defaults: the paper's), read from a
file of configs/; docs/studies/motion.md has the results and what they taught.

For each class set of `sports1m_tf.synthetic` (`motion`: 7 classes that differ
only in how a textured disc moves, so one frame is at chance; `appearance`: 4
shapes/colours that move at random) and each seed, a dataset is generated
(videos, then clip records with `tfrecord_tools.convert`), every model is
trained from scratch with `sports1m_tf.training.train.train` (the project's loop)
and scored on the test videos with `sports1m_tf.evaluation.evaluate.evaluate` (every clip
in 4 views, averaged per video: video Hit@1). Flipping stays on: every
synthetic motion is unchanged by a horizontal flip.

Prints a Markdown table (mean ± sample std over seeds, then min–max) and writes
every run to --output (JSON). Finished runs are kept there: a killed study
restarted with the same flags skips them, and a run it was in the middle of
carries on from its last checkpoint (every 1,000 steps). Rerun with a larger
--train_steps (and another --output), a run whose folder holds the shorter run
with otherwise identical settings is extended, not repeated. Also used by
multires_study.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from typing import Sequence

from absl import app, flags, logging

from sports1m_tf import cli


SPLITS = ("train", "val", "test")
MODELS = ("single_frame", "early_fusion", "late_fusion", "slow_fusion", "slow_fusion_multires")


# ---------------------------------------------------------------------------
# Shared by both studies
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

    chosen = select_by_validation(model_dir)
    if chosen is None:
        return {}
    members = evaluate.load_members(
        checkpoints=[chosen["checkpoint"]] if "checkpoint" in chosen else (),
        keras_models=[chosen["keras_model"]] if "keras_model" in chosen else ())
    output_dir = os.path.join(model_dir, "selected_test_report")
    report = evaluate.evaluate(members, data["files"]["test"], output_dir=output_dir,
                               class_names=data["classes"], write_tensorboard=False,
                               show_progress=False)
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
                               show_progress=False)
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


# ---------------------------------------------------------------------------
# Control: a small plain 3-D CNN on the same records
# ---------------------------------------------------------------------------
CONTROL = "conv3d_control"


def train_control(data: dict, *, seed: int, steps: int, batch_size: int,
                  input_size: int) -> dict:
    """A 3-layer Conv3D net (inputs scaled to about ±2, global max pooling, Adam 1e-3) trained
    on the same records, batches and frames (slow fusion's 10) as the paper's models.

    Not a model of the paper: it tells whether the data and the input pipeline carry
    learnable motion, independently of how the paper's networks train.

    Returns:
      dict as `train_and_evaluate` (video Hit@1 = argmax of the mean over the 4
      views of every test clip of a video, as `sports1m-eval`).
    """
    import keras
    import numpy as np

    from sports1m_tf.data import clip_dataset, eval_dataset

    keras.utils.set_random_seed(seed)
    num_classes = len(data["classes"])
    layers = keras.layers
    frames = keras.Input((10, input_size, input_size, 3), dtype="uint8")
    x = layers.Rescaling(1 / 64.0, offset=-117 / 64.0)(frames)
    x = layers.Conv3D(16, (4, 5, 5), strides=(2, 2, 2), activation="relu")(x)
    x = layers.Conv3D(32, (2, 3, 3), strides=(2, 2, 2), activation="relu")(x)
    x = layers.Conv3D(32, (2, 3, 3), activation="relu")(x)
    x = layers.GlobalMaxPooling3D()(x)
    x = layers.Dense(64, activation="relu")(x)
    model = keras.Model(frames, layers.Dense(num_classes, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    train = clip_dataset(data["files"]["train"], model="slow_fusion", training=True,
                         batch_size=batch_size, num_classes=num_classes, input_size=input_size,
                         seed=seed, repeat=-1)
    started = time.time()
    model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    seconds = time.time() - started
    test = eval_dataset(data["files"]["test"], model="slow_fusion", batch_size=64,
                        num_classes=num_classes, input_size=input_size)
    videos: dict[bytes, list] = {}
    clip_hits, clips = 0, 0
    for batch in test:
        probs = model(batch["frames"], training=False).numpy()
        labels = batch["labels"].numpy()
        for media_id, p, y, view in zip(batch["media_id"].numpy(), probs, labels,
                                        batch["view_index"].numpy()):
            entry = videos.setdefault(media_id, [np.zeros(num_classes), y])
            entry[0] += p
            if view == 0:  # clip Hit@1 on the centre view, as sports1m-eval
                clip_hits += int(y[p.argmax()] > 0)
                clips += 1
    video_hits = [float(y[p.argmax()] > 0) for p, y in videos.values()]
    keras.backend.clear_session()
    return {"clip_hit_at_1": clip_hits / max(clips, 1),
            "video_hit_at_1": float(np.mean(video_hits)), "val_clip_hit_at_1": None,
            "train_seconds": round(seconds, 1), "train_clips_per_s": None, "steps": steps,
            "test_videos": len(videos)}


# ---------------------------------------------------------------------------
# The motion study
# ---------------------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
    define_recipe_flags()
    flags.DEFINE_list("models", list(MODELS),
                      f"Models (`_multires` suffix: multires variant; {CONTROL}: a plain "
                      "3-D CNN trained with Adam, the data/pipeline control).")
    flags.DEFINE_list("class_sets", ["motion", "appearance"], "Synthetic class sets.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (data, initialisation, sampling).")
    flags.DEFINE_integer("videos_per_class", 500,
                         "Videos per class, 60/20/20% train/val/test. With 150 the nets "
                         "memorise each training video's unique look instead of its motion.")
    flags.DEFINE_integer("num_frames", 32, "Frames per video (16 per clip).")
    flags.DEFINE_integer("video_size", 64, "Rendered frame size.")
    flags.DEFINE_integer("frame_size", 64, "Stored (converted) frame size.")
    flags.DEFINE_integer("input_size", 56, "Model input (crop) size.")
    flags.DEFINE_float("width", 0.25, "Width multiplier.")
    flags.DEFINE_integer("train_steps", 3000,
                         "Optimiser steps per run on the motion classes (slow fusion needs "
                         "~2500 to separate the shakes from `still`).")
    flags.DEFINE_integer("appearance_train_steps", 400,
                         "Optimiser steps per run on the appearance classes (every model is "
                         "at ~100% well before).")
    flags.DEFINE_integer("eval_every", 500, "Steps between validations.")
    flags.DEFINE_integer("checkpoint_every", 1000,
                         "Steps between checkpoints (a killed run loses at most this many; "
                         "benchmarks/dead_units.py probes each one).")
    flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept per run.")
    flags.DEFINE_integer("workers", 2, "Conversion processes.")
    flags.DEFINE_string("work_dir", "/tmp/sports1m_motion_study",
                        "Videos, records and runs (datasets are reused when rerun).")
    flags.DEFINE_string("output", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "results", "motion_study.json"), "JSON output.")


def study_settings() -> dict:
    return {name: FLAGS[name].value for name in (
        "videos_per_class", "num_frames", "video_size", "frame_size", "input_size", "width",
        "train_steps", "appearance_train_steps", "batch_size", "shuffle_buffer", "optimizer", "learning_rate", "input_scale", "dropout",
        "eval_every", "kernel_init", "lr_schedule", "weight_decay")}


def table(runs: list[dict], models: Sequence[str], class_sets: Sequence[str],
          prefix: str = "") -> str:
    """Markdown: video Hit@1 (and clip Hit@1) per model and class set, over seeds.
    `prefix="selected_"`: of the models chosen by validation."""
    head = ["model"] + [f"{c}: video Hit@1 (%)" for c in class_sets] + \
           [f"{c}: clip Hit@1 (%)" for c in class_sets]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for model in models:
        row = [model]
        for key in (prefix + "video_hit_at_1", prefix + "clip_hit_at_1"):
            for c in class_sets:
                row.append(cell(summarise([r.get(key) for r in runs
                                           if r["model"] == model and r["class_set"] == c])))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def class_table(runs: list[dict], models: Sequence[str], class_set: str,
                prefix: str = "") -> str:
    """Markdown: test video Hit@1 (%) per class of one class set, mean over seeds."""
    from sports1m_tf import synthetic

    names = synthetic.resolve_classes(class_set)
    lines = ["| model | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    for model in models:
        mine = [r.get(prefix + "per_class_video_hit_at_1") or {} for r in runs
                if r["model"] == model and r["class_set"] == class_set]
        if not any(mine):
            continue
        row = [cell(summarise([m.get(n) for m in mine]), digits=0).split(" (")[0]
               for n in names]
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def study_records(class_set: str, seed: int) -> dict:
    """`make_records` of one class set and seed, at the study's flags."""
    return make_records(FLAGS.work_dir, classes=class_set,
                        videos_per_class=FLAGS.videos_per_class, num_frames=FLAGS.num_frames,
                        video_size=FLAGS.video_size, frame_size=FLAGS.frame_size,
                        centre_bias=True, seed=seed, workers=FLAGS.workers)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from sports1m_tf import synthetic

    for model in FLAGS.models:
        if model_spec(model)[0] not in MODELS and model != CONTROL:
            raise app.UsageError(f"unknown model {model!r}")
    settings = study_settings()
    runs = load_finished(FLAGS.output, settings)
    done = {(r["class_set"], r["model"], r["seed"]) for r in runs}
    if done:
        logging.info("%d runs already in %s", len(done), FLAGS.output)
    total = len(FLAGS.class_sets) * len(FLAGS.seeds) * len(FLAGS.models)
    # Seed-major: a study stopped early still has every class set for its first seeds.
    for seed in map(int, FLAGS.seeds):
        for class_set in FLAGS.class_sets:
            todo = [m for m in FLAGS.models if (class_set, m, seed) not in done]
            if not todo:
                continue
            data = study_records(class_set, seed)
            steps = FLAGS.appearance_train_steps if class_set == "appearance" else \
                FLAGS.train_steps
            for model in todo:
                logging.info("run %d/%d: %s, %s classes, seed %d", len(runs) + 1, total, model,
                             class_set, seed)
                if model == CONTROL:
                    result = train_control(data, seed=seed, steps=steps,
                                           batch_size=FLAGS.batch_size,
                                           input_size=FLAGS.input_size)
                else:
                    result = train_and_evaluate(
                        data, os.path.join(FLAGS.work_dir, "runs",
                                           f"{class_set}_{model}_s{seed}"),
                        model=model, seed=seed, width=FLAGS.width,
                        input_size=FLAGS.input_size, train_steps=steps,
                        **recipe_settings(),
                        eval_every=FLAGS.eval_every,
                        checkpoint_every=min(steps, FLAGS.checkpoint_every),
                        keep_checkpoints=FLAGS.keep_checkpoints,
                        log_every=max(1, steps // 10))
                runs.append({"class_set": class_set, "model": model, "seed": seed, **result})
                logging.info("%s on %s (seed %d): video Hit@1 %.3f, clip Hit@1 %.3f", model,
                             class_set, seed, result["video_hit_at_1"], result["clip_hit_at_1"])
                save(FLAGS.output, settings, runs)
    # Runs made before the study scored the validation-selected model get it now
    # (from their folders' kept checkpoints); a folder that is gone stays without.
    for r in runs:
        model_dir = os.path.join(FLAGS.work_dir, "runs",
                                 f"{r['class_set']}_{r['model']}_s{r['seed']}")
        if "selected_from" in r or r["model"] == CONTROL or not os.path.isdir(model_dir):
            continue
        r.update(score_selected(study_records(r["class_set"], r["seed"]), model_dir)
                 or {"selected_from": None})
        save(FLAGS.output, settings, runs)
    chance = {c: 1.0 / len(synthetic.resolve_classes(c)) for c in FLAGS.class_sets}
    text = table(runs, FLAGS.models, FLAGS.class_sets)
    for class_set in FLAGS.class_sets:
        text += f"\n\nPer class, {class_set} classes (video Hit@1 %, mean ± std):\n\n"
        text += class_table(runs, FLAGS.models, class_set)
    if any(r.get("selected_from") for r in runs):
        text += ("\n\nThe model of best validation clip Hit@1 of each run (test scores; "
                 "steps in the JSON's selected_step):\n\n")
        text += table(runs, FLAGS.models, FLAGS.class_sets, prefix="selected_")
        for class_set in FLAGS.class_sets:
            text += f"\n\nPer class, {class_set} classes, selected by validation:\n\n"
            text += class_table(runs, FLAGS.models, class_set, prefix="selected_")
    save(FLAGS.output, settings, runs, table=text, chance=chance)
    print(text)
    print("\nchance: " + ", ".join(f"{c} {100 * p:.1f}%" for c, p in chance.items()) +
          f"; {len(FLAGS.seeds)} seeds, mean ± sample std (min–max); {FLAGS.output}")


def run() -> None:
    define_flags()
    cli.entry(main)()


if __name__ == "__main__":
    run()
