"""What measuring the input wait costs a training step.

The step times its wait for the next batch inside its graph (two host
timestamps, `sports1m_tf.optimization._timed_next`), and the loop fetches one
more scalar a step. This times a tiny model's step (where any overhead shows
most), in one process, alternating rounds of:
  * untimed: the step with a plain `next(iterator)` and only the loss fetched
    (the loop as it was before the wait was measured);
  * timed: the project's step and step runner (`distribute.make_step_runner`).
Batches come from memory, so the input never waits. Prints the per-step wall
and CPU time of both and their difference; writes JSON.

Run:
  python benchmarks/input_wait_cost.py            # ≈ 1 min on 2 cores
"""
from __future__ import annotations

import json
import os
import statistics
import time

from absl import flags

from sports1m_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 300, "Steps per round.")
flags.DEFINE_integer("rounds", 6, "Rounds of each variant, alternated.")
flags.DEFINE_integer("batch_size", 8, "Clips per step.")
flags.DEFINE_string("output", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                           "input_wait_cost.json"), "JSON output path.")


def _steps(timed: bool):
    """`(run(count) -> None)` of the tiny model's step, timed or not."""
    import keras
    import numpy as np
    import tensorflow as tf

    from sports1m_tf import distribute, optimization
    from sports1m_tf.models import build_model
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = build_model("single_frame", 4, width=0.0625, input_size=32)
        optimizer = keras.optimizers.SGD(1e-3, momentum=0.9)
        optimizer.build(model.trainable_variables)
        step = optimization.step_counter()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (FLAGS.batch_size, 1, 32, 32, 3), dtype=np.uint8)
    target = np.eye(4, dtype=np.float32)[rng.integers(0, 4, FLAGS.batch_size)]
    dataset = tf.data.Dataset.from_tensors((frames, target)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    if timed:
        return distribute.make_step_runner(
            optimization.make_train_step(strategy, model, optimizer, step), iterator)
    untimed_next = optimization._timed_next
    optimization._timed_next = lambda it: (*next(it), tf.constant(0.0, tf.float64))
    try:
        train_step = optimization.make_train_step(strategy, model, optimizer, step)
        train_step(iterator)  # traced now, with the plain next
    finally:
        optimization._timed_next = untimed_next

    def run(count):
        for _ in range(count):
            float(train_step(iterator)[0])
    return run


def main(argv):
    del argv
    runs = {"untimed": _steps(False), "timed": _steps(True)}
    for run in runs.values():
        run(20)  # warm-up
    per_step = {name: {"wall": [], "cpu": []} for name in runs}
    for _ in range(FLAGS.rounds):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run(FLAGS.steps)
            per_step[name]["wall"].append((time.perf_counter() - wall) / FLAGS.steps * 1e6)
            per_step[name]["cpu"].append((time.process_time() - cpu) / FLAGS.steps * 1e6)
    medians = {name: {k: statistics.median(v) for k, v in figures.items()}
               for name, figures in per_step.items()}
    result = {"steps_per_round": FLAGS.steps, "rounds": FLAGS.rounds,
              "batch_size": FLAGS.batch_size, "model": "single_frame width 0.0625, 32 px",
              "load_average": os.getloadavg(), "cpu_count": os.cpu_count(),
              "median_us_per_step": medians,
              "overhead_us_per_step": {k: medians["timed"][k] - medians["untimed"][k]
                                       for k in ("wall", "cpu")},
              "rounds_us_per_step": per_step}
    os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(result, f, indent=2)
    for name, m in medians.items():
        print(f"{name:8s} {m['wall']:8.0f} µs/step wall  {m['cpu']:8.0f} µs/step CPU")
    over = result["overhead_us_per_step"]
    print(f"measuring the input wait: {over['wall']:+.0f} µs/step wall "
          f"({over['wall'] / medians['untimed']['wall']:+.1%}), {over['cpu']:+.0f} µs/step CPU; "
          f"load average {result['load_average'][0]:.1f} on {result['cpu_count']} cores")
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    cli.entry(main)()
