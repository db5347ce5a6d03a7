"""Dead ReLU channels of a training run, checkpoint by checkpoint.

    python benchmarks/dead_units.py --model_dir=RUN [--steps=500,1000] [--batches=8]

Why it exists: in the motion study one slow-fusion seed stalled at 86% while
the other two reached 99-100%, and what set it apart was not the data or the
pipeline but its conv2: most of its channels had stopped firing. A ReLU channel
whose pre-activation is negative on every input gets no gradient and never
recovers, so a run that loses many early in training keeps a narrower network
for good. This script restores each `ckpt-STEP` of a `sports1m-train
--model_dir` (or the given --steps), feeds it the run's own validation clips
(`run_config.json`'s `val_files`, centre crops) and counts, per ReLU layer
(conv1..conv5, fc6, fc7), the channels that are never positive on any of them
("dead") and those positive on under 1% of positions ("rare"). Prints one line
per checkpoint and writes everything to --output (JSON) when given.
"""
from __future__ import annotations

import json
from typing import Sequence

from absl import app, flags, logging

from sports1m_tf import cli


FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "A sports1m-train --model_dir.", required=True)
    flags.DEFINE_list("steps", [], "Checkpoint steps (default: every checkpoint there).")
    flags.DEFINE_integer("batches", 8, "Validation batches of 64 clips fed to each checkpoint.")
    flags.DEFINE_string("output", None, "JSON file for the counts.")


def relu_layers(model) -> list:
    """The layers whose output is a ReLU: every conv and hidden FC layer, in order."""
    return [layer for layer in model.layers
            if getattr(getattr(layer, "activation", None), "__name__", "") == "relu"]


def firing_rates(model, clips) -> dict[str, list[float]]:
    """Per ReLU layer, the fraction of positions (batch, time, space) where each channel is > 0."""
    import keras
    import numpy as np

    layers = relu_layers(model)
    probe = keras.Model(model.input, [layer.output for layer in layers])
    totals, batches = None, 0
    for frames, _ in clips:
        outputs = probe(frames, training=False)
        rates = [np.mean(np.asarray(o) > 0, axis=tuple(range(o.ndim - 1))) for o in outputs]
        totals = rates if totals is None else [t + r for t, r in zip(totals, rates)]
        batches += 1
    if not batches:
        raise ValueError("no validation clips to probe the model with")
    return {layer.name: (t / batches).tolist() for layer, t in zip(layers, totals)}


def summarise_rates(rates: dict[str, list[float]]) -> dict[str, dict[str, int]]:
    """Dead (never positive) and rare (< 1% positive) channel counts per layer."""
    return {name: {"channels": len(r), "dead": sum(v == 0.0 for v in r),
                   "rare": sum(v < 0.01 for v in r)} for name, r in rates.items()}


def main(argv: Sequence[str]) -> None:
    del argv
    from sports1m_tf import run_folder
    from sports1m_tf.data.clip_dataset import clip_dataset

    config = run_folder.load_run_config(FLAGS.model_dir)
    steps = [int(s) for s in FLAGS.steps] or run_folder.checkpoint_steps(FLAGS.model_dir)
    if not steps:
        raise app.UsageError(f"{FLAGS.model_dir}: no ckpt-STEP checkpoints to probe")
    if not config.get("val_files"):
        raise app.UsageError(f"{FLAGS.model_dir}/run_config.json: no val_files to probe with")
    clips = clip_dataset(config["val_files"], model=config["model"], training=False,
                         batch_size=64, num_classes=config["num_classes"],
                         multires=config["multires"], input_size=config["input_size"]
                         ).take(FLAGS.batches).cache()
    results = []
    for step in steps:
        model = run_folder.restore_model(FLAGS.model_dir, step)
        counts = summarise_rates(firing_rates(model, clips))
        results.append({"step": step, "layers": counts})
        logging.info("step %d: %s", step, "  ".join(
            f"{name} {c['dead']}/{c['channels']} dead ({c['rare']} rare)"
            for name, c in counts.items()))
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump({"model_dir": FLAGS.model_dir, "batches": FLAGS.batches,
                       "checkpoints": results}, f, indent=1)
        logging.info("wrote %s", FLAGS.output)


run = cli.entry(main, define=define_flags)


if __name__ == "__main__":
    run()
