"""The multires study: full frame vs fovea + context, accuracy and speed.

    nice -n 10 python benchmarks/multires_study.py --recipe=paper   # the study
    python benchmarks/multires_study.py --recipe=paper --seeds=0 \
        --train_steps=100 --videos_per_class=40                                     # a quick look

The training recipe is sports1m-train's flags (defaults: the paper's), read from a
packaged recipe (--recipe) or a flag file; docs/studies/multires.md has the results.

Single-frame and slow fusion, each full-frame and multires, trained on the same
synthetic data (the 4 appearance classes by default) with `sports1m_tf.training.train.train`, in one
run per (dataset, model, seed): test video and clip Hit@1 from
`sports1m_tf.evaluation.evaluate.evaluate`, and training speed in clips/s as the training
loop logs it (median of its logging windows after the first: step time only).
Two datasets: objects near the centre (`centre_bias=True`, the camera bias the
paper relies on: the fovea sees the object) and objects anywhere in the frame.

The paper: multires trains 2-4x faster at equal or better accuracy; the FLOP
ratio bounds the speed-up (benchmarks/model_cost.py). Both variants read the
same crop size (--input_size; the multires streams each see half of it).
Prints a Markdown table; every run goes to --output (JSON; a restarted study
skips finished runs).
"""
from __future__ import annotations

import os
from typing import Sequence

from absl import app, flags, logging

from sports1m_tf import cli


import study_runs

MODELS = ("single_frame", "single_frame_multires", "slow_fusion", "slow_fusion_multires")
FLAGS = flags.FLAGS


def define_flags() -> None:
    study_runs.define_recipe_flags()
    flags.DEFINE_list("models", list(MODELS), "Models (`_multires` suffix: multires variant).")
    flags.DEFINE_list("placements", ["centre", "anywhere"],
                      "Datasets: objects near the centre and/or anywhere.")
    flags.DEFINE_list("seeds", ["0", "1"], "Seeds (data, initialisation, sampling).")
    flags.DEFINE_string("classes", "appearance",
                        "Synthetic class set (appearance: the paper's SGD learns it within "
                        "the study's 600 steps).")
    flags.DEFINE_integer("videos_per_class", 100, "Videos per class, 60/20/20% train/val/test.")
    study_runs.define_size_flags()
    flags.DEFINE_integer("train_steps", 600, "Optimiser steps per run.")
    flags.DEFINE_integer("eval_every", 200, "Steps between validations.")
    study_runs.define_place_flags("multires_study")


def macs_per_clip(model: str, *, num_classes: int, width: float, input_size: int) -> int:
    """Multiply-accumulates of one clip's forward pass (Conv2D and Dense layers, from their
    output shapes; time is folded into the batch, so every temporal position counts)."""
    import keras
    import numpy as np

    from sports1m_tf.models import build_model

    name, multires = study_runs.model_spec(model)
    net = build_model(name, num_classes, multires=multires, width=width, input_size=input_size)
    layers = [l for l in net.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    probe = keras.Model(net.input, [l.output for l in layers])
    outputs = probe(np.zeros((1,) + net.input_shape[1:], np.uint8))
    macs = sum(int(np.prod(out.shape)) * int(np.prod(l.kernel.shape[:-1]))
               for l, out in zip(layers, outputs))
    keras.backend.clear_session()
    return macs


def table(runs: list[dict], models: Sequence[str], placements: Sequence[str],
          macs: dict[str, int]) -> str:
    """Markdown: per dataset and model, accuracy, speed and the multires speed-up."""
    lines = ["| objects | model | video Hit@1 (%) | clip Hit@1 (%) | MMAC/clip | "
             "training clips/s | speed-up over full frame (FLOP ratio) |", "|" + " --- |" * 7]
    for placement in placements:
        speeds = {}
        for model in models:
            chosen = [r for r in runs if r["model"] == model and r["placement"] == placement]
            speed = study_runs.summarise([r["train_clips_per_s"] for r in chosen])
            speeds[model] = speed["mean"]
            base = speeds.get(model.removesuffix("_multires"))
            full = model.removesuffix("_multires")
            ratio = (f"{speed['mean'] / base:.2f}x ({macs[full] / macs[model]:.2f}x)"
                     if model.endswith("_multires") and base and speed["mean"] else "")
            lines.append(
                f"| {placement} | {model} | "
                f"{study_runs.cell(study_runs.summarise([r['video_hit_at_1'] for r in chosen]))} | "
                f"{study_runs.cell(study_runs.summarise([r['clip_hit_at_1'] for r in chosen]))} | "
                f"{macs[model] / 1e6:.1f} | {study_runs.cell(speed, scale=1.0, digits=0)} | {ratio} |")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    bad = [p for p in FLAGS.placements if p not in ("centre", "anywhere")]
    if bad:
        raise app.UsageError(f"--placements: unknown {bad}; use centre and/or anywhere")
    settings = {name: FLAGS[name].value for name in (
        "classes", "videos_per_class", "num_frames", "video_size", "frame_size", "input_size",
        "width", "train_steps", "batch_size", "learning_rate", "dropout", "eval_every",
        "kernel_init")}
    runs = study_runs.load_finished(FLAGS.output, settings)
    done = {(r["placement"], r["model"], r["seed"]) for r in runs}
    for seed in map(int, FLAGS.seeds):
        for placement in FLAGS.placements:
            todo = [m for m in FLAGS.models if (placement, m, seed) not in done]
            if not todo:
                continue
            data = study_runs.make_records(
                FLAGS.work_dir, classes=FLAGS.classes, videos_per_class=FLAGS.videos_per_class,
                num_frames=FLAGS.num_frames, video_size=FLAGS.video_size,
                frame_size=FLAGS.frame_size, centre_bias=placement == "centre", seed=seed,
                workers=FLAGS.workers)
            for model in todo:
                logging.info("%s, objects %s, seed %d", model, placement, seed)
                result = study_runs.train_and_evaluate(
                    data, os.path.join(FLAGS.work_dir, "runs", f"{placement}_{model}_s{seed}"),
                    model=model, seed=seed, width=FLAGS.width, input_size=FLAGS.input_size,
                    train_steps=FLAGS.train_steps, eval_every=FLAGS.eval_every,
                    **study_runs.recipe_settings(),
                    checkpoint_every=FLAGS.train_steps,
                    log_every=max(1, FLAGS.train_steps // 10))
                runs.append({"placement": placement, "model": model, "seed": seed, **result})
                logging.info("%s (%s): video Hit@1 %.3f, %.0f clips/s", model, placement,
                             result["video_hit_at_1"], result["train_clips_per_s"] or 0)
                study_runs.save(FLAGS.output, settings, runs)
    from sports1m_tf import synthetic
    num_classes = len(synthetic.resolve_classes(FLAGS.classes))
    macs = {m: macs_per_clip(m, num_classes=num_classes, width=FLAGS.width,
                             input_size=FLAGS.input_size) for m in FLAGS.models}
    text = table(runs, FLAGS.models, FLAGS.placements, macs)
    study_runs.save(FLAGS.output, settings, runs, table=text, macs_per_clip=macs)
    print(text)
    print(f"\n{len(FLAGS.seeds)} seed(s), mean ± sample std (min–max); {FLAGS.output}")


run = cli.entry(main, define=define_flags)


if __name__ == "__main__":
    run()
