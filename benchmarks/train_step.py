"""Training-step throughput of every model at full size, against the machine's matmul rate.

For each model, full-frame and multires, the step that `sports1m-train` runs
(`sports1m_tf.training.optimization.make_train_step`: strategy.run of forward + backward +
SGD with momentum and decoupled weight decay) on a batch of random uint8 clips
held in memory, so that the figure is the step's own cost:
  * clips/s (wall) and CPU seconds per step of this process;
  * achieved GFLOP/s = clips/s × training FLOPs per clip, where training
    FLOPs ≈ 3 × forward (forward, input gradients, weight gradients), the
    forward counted from the layers' traced shapes (2 FLOPs per MAC; LRN,
    pooling and ReLU not counted);
  * that rate as a fraction of a large float32 NumPy matmul's GFLOP/s,
    measured in the same process (and TensorFlow's own matmul);
  * the multires speed-up (clips/s multires / full) against the FLOP ratio
    (FLOPs full / multires), the bound on that speed-up.
Each configuration runs in a subprocess twice, with TF_ENABLE_ONEDNN_OPTS=0 and
=1 (it must be set before TensorFlow is imported).

Run (full size is slow on 2 cores: ≈ 1 min per model and setting):
  nice -n 5 python benchmarks/train_step.py --steps=3
  python benchmarks/train_step.py --models=single_frame,slow_fusion --batch_size=32 --steps=5
  python benchmarks/train_step.py --onednn=1        # one setting only
Writes benchmarks/results/train_step.json.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

import common

flags.DEFINE_list("models", ["single_frame", "early_fusion", "late_fusion", "slow_fusion"],
                  "Models; each runs full-frame and multires.")
flags.DEFINE_integer("batch_size", 32, "Clips per step (paper: 32).")
flags.DEFINE_integer("steps", 3, "Timed steps per configuration (after 2 warm-up steps).")
flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing, allocation).")
flags.DEFINE_float("width", 1.0, "Width multiplier (1.0 = the paper's size).")
flags.DEFINE_integer("num_classes", 487, "Classes.")
flags.DEFINE_list("onednn", ["0", "1"], "TF_ENABLE_ONEDNN_OPTS values to compare.")
flags.DEFINE_integer("matmul_size", 4096, "Square float32 matmul size for the peak rate.")
common.define_output("train_step", "JSON output.")
flags.DEFINE_string("precision", "float32", "Keras dtype policy (float32, mixed_bfloat16).")
flags.DEFINE_bool("xla", False, "XLA-compile the forward and backward pass.")
flags.DEFINE_string("child", None, "Internal: run one configuration (model:multires).")
FLAGS = flags.FLAGS


def numpy_matmul_gflops(n: int, repeats: int = 5) -> float:
    """Best-of GFLOP/s of an n×n float32 NumPy matmul (2 n³ FLOPs)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best / 1e9


def tf_matmul_gflops(n: int, repeats: int = 5) -> float:
    """The same with `tf.linalg.matmul` (shows what oneDNN does to TensorFlow's kernels)."""
    import tensorflow as tf
    a = tf.random.uniform((n, n))
    b = tf.random.uniform((n, n))
    (a @ b).numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        (a @ b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best / 1e9


def forward_flops(model) -> int:
    """FLOPs of one clip's forward pass (2 per multiply-accumulate of convs and dense layers)."""
    import keras
    layers = [layer for layer in model.layers
              if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    probe = keras.Model(model.input, [layer.output for layer in layers])
    outputs = probe(np.zeros((1,) + model.input_shape[1:], np.uint8))
    # Convolution outputs are [time steps, h, w, c] per clip (time folded into batch).
    return sum(2 * int(np.prod(out.shape)) * int(np.prod(layer.kernel.shape[:-1]))
               for layer, out in zip(layers, outputs))


def run_child(spec: str) -> dict:
    """Times one model's training step in this process; returns its figures."""
    import keras
    import tensorflow as tf

    from sports1m_tf.models import build_model
    from sports1m_tf.training.optimization import make_train_step

    name, multires = spec.split(":")
    multires = multires == "1"
    keras.mixed_precision.set_global_policy(FLAGS.precision)
    device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
    strategy = tf.distribute.OneDeviceStrategy(device)
    with strategy.scope():
        model = build_model(name, FLAGS.num_classes, multires=multires, width=FLAGS.width)
        optimizer = keras.optimizers.SGD(1e-3, momentum=0.9, weight_decay=5e-4)
        optimizer.exclude_from_weight_decay(var_names=["bias"])
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (FLAGS.batch_size,) + model.input_shape[1:], dtype=np.uint8)
    target = np.eye(FLAGS.num_classes, dtype=np.float32)[
        rng.integers(0, FLAGS.num_classes, FLAGS.batch_size)]
    dataset = tf.data.Dataset.from_tensors((frames, target)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    train_step = make_train_step(strategy, model, optimizer, step, xla=FLAGS.xla)
    for _ in range(FLAGS.warmup):
        float(train_step(iterator)[0])
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.steps):
        float(train_step(iterator)[0])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    flops = forward_flops(model)
    clips_per_s = FLAGS.steps * FLAGS.batch_size / wall
    return {"model": name, "multires": multires, "forward_gflop_per_clip": flops / 1e9,
            "train_gflop_per_clip": 3 * flops / 1e9, "clips_per_s": clips_per_s,
            "seconds_per_step": wall / FLAGS.steps, "cpu_seconds_per_step": cpu / FLAGS.steps,
            "achieved_gflops": clips_per_s * 3 * flops / 1e9,
            "precision": FLAGS.precision, "xla": FLAGS.xla, "device": device,
            # 0: skip the machine's matmul rate (a GPU's peak comes from its data sheet).
            "tf_matmul_gflops": tf_matmul_gflops(FLAGS.matmul_size) if FLAGS.matmul_size else None,
            "numpy_matmul_gflops": (numpy_matmul_gflops(FLAGS.matmul_size)
                                    if FLAGS.matmul_size else None)}


def _child_command(spec: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), f"--child={spec}",
            f"--batch_size={FLAGS.batch_size}", f"--steps={FLAGS.steps}",
            f"--warmup={FLAGS.warmup}", f"--width={FLAGS.width}",
            f"--num_classes={FLAGS.num_classes}", f"--matmul_size={FLAGS.matmul_size}",
            f"--precision={FLAGS.precision}", f"--{'' if FLAGS.xla else 'no'}xla"]


def main(argv):
    del argv
    if FLAGS.child:
        print("RESULT " + json.dumps(run_child(FLAGS.child)), flush=True)
        return
    load_before = os.getloadavg()
    rows = []
    for name in FLAGS.models:
        for multires in (False, True):
            # Alternate the settings per configuration, so drifting load hits both.
            for onednn in FLAGS.onednn:
                spec = f"{name}:{int(multires)}"
                env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "2"}
                started = time.perf_counter()
                done = subprocess.run(_child_command(spec), env=env, capture_output=True,
                                      text=True)
                lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
                if done.returncode or not lines:
                    raise RuntimeError(f"{spec} (oneDNN {onednn}) failed:\n{done.stderr[-3000:]}")
                row = {**json.loads(lines[-1][len("RESULT "):]), "onednn": onednn}
                row["fraction_of_numpy_matmul"] = (row["achieved_gflops"]
                                                   / row["numpy_matmul_gflops"])
                rows.append(row)
                print(f"{name:13s} multires={int(multires)} oneDNN={onednn}: "
                      f"{row['clips_per_s']:6.2f} clips/s  {row['achieved_gflops']:6.1f} GFLOP/s "
                      f"= {row['fraction_of_numpy_matmul']:.0%} of NumPy matmul "
                      f"({row['numpy_matmul_gflops']:.0f}); TF matmul "
                      f"{row['tf_matmul_gflops']:.0f}  [{time.perf_counter() - started:.0f} s]",
                      flush=True)

    speedups = []
    for name in FLAGS.models:
        for onednn in FLAGS.onednn:
            full, multi = (next(r for r in rows if r["model"] == name and r["multires"] == m
                                and r["onednn"] == onednn) for m in (False, True))
            flop_ratio = full["train_gflop_per_clip"] / multi["train_gflop_per_clip"]
            speedup = multi["clips_per_s"] / full["clips_per_s"]
            speedups.append({"model": name, "onednn": onednn, "flop_ratio": flop_ratio,
                             "speedup": speedup, "fraction_of_flop_ratio": speedup / flop_ratio})
            print(f"multires {name:13s} oneDNN={onednn}: speed-up {speedup:.2f}x, FLOP ratio "
                  f"{flop_ratio:.2f}x ({speedup / flop_ratio:.0%})")
    result = {"settings": {k: FLAGS[k].value for k in ("models", "batch_size", "steps",
                                                       "warmup", "width", "num_classes",
                                                       "onednn", "matmul_size")},
              "cpu_count": os.cpu_count(), "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "rows": rows, "multires": speedups}
    common.write_results(FLAGS.output, result, indent=1)
    print(f"load average before {load_before}, after {os.getloadavg()}; wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
