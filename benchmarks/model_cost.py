"""Parameters, multiply-accumulates per clip and training throughput of every model.

    python benchmarks/model_cost.py                       # all models, full size, batch 32
    python benchmarks/model_cost.py --models=single_frame --steps=2 --batch_size=8
    python benchmarks/model_cost.py --precision=mixed_bfloat16

MACs are counted from the layers' actual output shapes (time folded into the
batch, so a slow-fusion conv1 counts its 4 temporal positions). Throughput is a
forward+backward+SGD update (`train_on_batch`) on random uint8 clips after one
warm-up step. Writes benchmarks/results/model_cost.json.
"""
from __future__ import annotations

import os
import time

from absl import app, flags

import common

flags.DEFINE_list("models", None, "Model names (default: all, each with and without multires).")
flags.DEFINE_integer("batch_size", 32, "Clips per step.")
flags.DEFINE_integer("steps", 3, "Timed steps per model (after one warm-up step).")
flags.DEFINE_float("width", 1.0, "Width multiplier.")
flags.DEFINE_integer("num_classes", 487, "Classes.")
flags.DEFINE_string("precision", "float32", "Keras dtype policy (float32, mixed_bfloat16, ...).")
flags.DEFINE_bool("measure", True, "Measure clips/s (else only count parameters and MACs).")
common.define_output("model_cost", "JSON output.")
FLAGS = flags.FLAGS


def count_macs(model) -> int:
    """Multiply-accumulates of one clip's forward pass, from the traced layer shapes."""
    import keras
    import numpy as np

    layers = [l for l in model.layers
              if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    probe = keras.Model(model.input, [l.output for l in layers])
    clip = np.zeros((1,) + model.input_shape[1:], np.uint8)
    macs = 0
    for layer, out in zip(layers, probe(clip)):
        fan_in = int(np.prod(layer.kernel.shape[:-1]))
        # out: [steps, h, w, c] for convs (time folded into the batch), [1, c] for dense.
        macs += int(np.prod(out.shape)) * fan_in
    return macs


def main(argv):
    del argv
    import keras
    import numpy as np

    from sports1m_tf.models import MODEL_NAMES, build_model

    keras.mixed_precision.set_global_policy(FLAGS.precision)
    variants = []
    for name in FLAGS.models or MODEL_NAMES:
        variants.append((name, False))
        if name not in ("fovea_only", "context_only"):
            variants.append((name, True))
    rows = []
    for name, multires in variants:
        model = build_model(name, FLAGS.num_classes, multires=multires, width=FLAGS.width)
        row = {"model": model.name, "parameters": model.count_params(),
               "gmac_per_clip": count_macs(model) / 1e9}
        if FLAGS.measure:
            model.compile(keras.optimizers.SGD(1e-3, momentum=0.9, weight_decay=5e-4),
                          "categorical_crossentropy")
            rng = np.random.default_rng(0)
            clips = rng.integers(0, 256, (FLAGS.batch_size,) + model.input_shape[1:], np.uint8)
            target = np.eye(FLAGS.num_classes, dtype=np.float32)[
                rng.integers(0, FLAGS.num_classes, FLAGS.batch_size)]
            model.train_on_batch(clips, target)
            start = time.perf_counter()
            for _ in range(FLAGS.steps):
                model.train_on_batch(clips, target)
            seconds = (time.perf_counter() - start) / FLAGS.steps
            row["clips_per_s"] = FLAGS.batch_size / seconds
            # Forward + backward ≈ 3× the forward MACs, 2 FLOPs per MAC.
            row["train_gflops_per_s"] = 6 * row["gmac_per_clip"] * row["clips_per_s"]
        rows.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()), flush=True)
        keras.backend.clear_session()

    by_name = {r["model"]: r for r in rows}
    for r in rows:
        base = by_name.get(r["model"].removesuffix("_multires"))
        if r["model"].endswith("_multires") and base:
            r["flop_ratio_full_over_multires"] = base["gmac_per_clip"] / r["gmac_per_clip"]
            if "clips_per_s" in r:
                r["speedup_multires"] = r["clips_per_s"] / base["clips_per_s"]
    print()
    common.print_table(
        ["model", "params (M)", "GMAC/clip", "clips/s", "GFLOP/s",
         "multires speed-up (FLOP ratio)"],
        ([r["model"], f"{r['parameters'] / 1e6:.1f}", f"{r['gmac_per_clip']:.3f}",
          f"{r.get('clips_per_s', float('nan')):.2f}",
          f"{r.get('train_gflops_per_s', float('nan')):.1f}",
          f"{r['speedup_multires']:.2f}× ({r['flop_ratio_full_over_multires']:.2f}×)"
          if "speedup_multires" in r else ""] for r in rows))
    common.write_results(FLAGS.output, {
        "settings": {"batch_size": FLAGS.batch_size, "steps": FLAGS.steps, "width": FLAGS.width,
                     "precision": FLAGS.precision,
                     "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")},
        "models": rows, "machine": common.machine_load()})

if __name__ == "__main__":
    app.run(main)
