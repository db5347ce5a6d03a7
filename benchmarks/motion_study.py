"""The motion study: do the temporal models win where only motion tells classes apart?

    nice -n 10 python benchmarks/motion_study.py --recipe=motion_cpu   # the study
    python benchmarks/motion_study.py --recipe=motion_cpu --seeds=0 \
        --models=single_frame,slow_fusion --class_sets=motion --train_steps=100    # a quick look

The training recipe is sports1m-train's flags (defaults: the paper's), read from a
packaged recipe (--recipe) or a flag file; docs/studies/motion.md has the results and what they taught.

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
with otherwise identical settings is extended, not repeated. What it shares with
multires_study.py is in study_runs.py.
"""
from __future__ import annotations

import os
import time
from typing import Sequence

from absl import app, flags, logging

from sports1m_tf import cli

import study_runs


MODELS = ("single_frame", "early_fusion", "late_fusion", "slow_fusion", "slow_fusion_multires")




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
    study_runs.define_recipe_flags()
    flags.DEFINE_list("models", list(MODELS),
                      f"Models (`_multires` suffix: multires variant; {CONTROL}: a plain "
                      "3-D CNN trained with Adam, the data/pipeline control).")
    flags.DEFINE_list("class_sets", ["motion", "appearance"], "Synthetic class sets.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (data, initialisation, sampling).")
    flags.DEFINE_integer("videos_per_class", 500,
                         "Videos per class, 60/20/20% train/val/test. With 150 the nets "
                         "memorise each training video's unique look instead of its motion.")
    study_runs.define_size_flags()
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
    study_runs.define_place_flags("motion_study")


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
                row.append(study_runs.cell(study_runs.summarise([r.get(key) for r in runs
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
        row = [study_runs.cell(study_runs.summarise([m.get(n) for m in mine]), digits=0).split(" (")[0]
               for n in names]
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def study_records(class_set: str, seed: int) -> dict:
    """`make_records` of one class set and seed, at the study's flags."""
    return study_runs.make_records(FLAGS.work_dir, classes=class_set,
                        videos_per_class=FLAGS.videos_per_class, num_frames=FLAGS.num_frames,
                        video_size=FLAGS.video_size, frame_size=FLAGS.frame_size,
                        centre_bias=True, seed=seed, workers=FLAGS.workers)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from sports1m_tf import synthetic

    for model in FLAGS.models:
        if study_runs.model_spec(model)[0] not in MODELS and model != CONTROL:
            raise app.UsageError(f"unknown model {model!r}")
    settings = study_settings()
    runs = study_runs.load_finished(FLAGS.output, settings)
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
                    result = study_runs.train_and_evaluate(
                        data, os.path.join(FLAGS.work_dir, "runs",
                                           f"{class_set}_{model}_s{seed}"),
                        model=model, seed=seed, width=FLAGS.width,
                        input_size=FLAGS.input_size, train_steps=steps,
                        **study_runs.recipe_settings(),
                        eval_every=FLAGS.eval_every,
                        checkpoint_every=min(steps, FLAGS.checkpoint_every),
                        keep_checkpoints=FLAGS.keep_checkpoints,
                        log_every=max(1, steps // 10))
                runs.append({"class_set": class_set, "model": model, "seed": seed, **result})
                logging.info("%s on %s (seed %d): video Hit@1 %.3f, clip Hit@1 %.3f", model,
                             class_set, seed, result["video_hit_at_1"], result["clip_hit_at_1"])
                study_runs.save(FLAGS.output, settings, runs)
    # Runs made before the study scored the validation-selected model get it now
    # (from their folders' kept checkpoints); a folder that is gone stays without.
    for r in runs:
        model_dir = os.path.join(FLAGS.work_dir, "runs",
                                 f"{r['class_set']}_{r['model']}_s{r['seed']}")
        if "selected_from" in r or r["model"] == CONTROL or not os.path.isdir(model_dir):
            continue
        r.update(study_runs.score_selected(study_records(r["class_set"], r["seed"]), model_dir)
                 or {"selected_from": None})
        study_runs.save(FLAGS.output, settings, runs)
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
    study_runs.save(FLAGS.output, settings, runs, table=text, chance=chance)
    print(text)
    print("\nchance: " + ", ".join(f"{c} {100 * p:.1f}%" for c, p in chance.items()) +
          f"; {len(FLAGS.seeds)} seeds, mean ± sample std (min–max); {FLAGS.output}")


run = cli.entry(main, define=define_flags)


if __name__ == "__main__":
    run()
