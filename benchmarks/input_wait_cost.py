"""What measuring the input wait costs a training step.

The step times its wait for the next batch inside its graph (two host
timestamps, `sports1m_tf.training.optimization._timed_next`), and the loop fetches one
more scalar a step. This times a tiny model's step (where any overhead shows
most), in one process, alternating call by call:
  * untimed: the step with a plain `next(iterator)` and only the loss fetched
    (the loop as it was before the wait was measured);
  * timed: the project's step and step runner (`distribute.make_step_runner`).
Batches come from memory, so the input never waits. Then, closer up, a
function that only takes the next batch, with and without the timestamps
(`--next_calls` calls each). Prints the per-call wall and CPU time of
each and their difference; writes JSON.

Run:
  python benchmarks/input_wait_cost.py            # ≈ 1 min on 2 cores
"""
from __future__ import annotations

import statistics

from absl import flags

import common

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 2000, "Training steps of each variant, alternated one by one.")
flags.DEFINE_integer("batch_size", 8, "Clips per step.")
flags.DEFINE_integer("next_calls", 5000, "Calls of each next-batch-only function.")
common.define_output("input_wait_cost")


def _steps(timed: bool):
    """`(run(count) -> None)` of the tiny model's step, timed or not."""
    import keras
    import numpy as np
    import tensorflow as tf

    from sports1m_tf import distribute
    from sports1m_tf.training import optimization
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


def _next_only(timed: bool):
    """`run(count)` of a function that only takes the next batch (and fetches a scalar)."""
    import tensorflow as tf

    from sports1m_tf.training import optimization
    iterator = iter(tf.data.Dataset.from_tensors(tf.zeros([8, 32, 32, 3], tf.uint8)).map(
        lambda frames: (frames, tf.zeros([8, 4]))).repeat())

    @tf.function
    def take(it):
        if timed:
            return optimization._timed_next(it)[2]
        return tf.reduce_sum(next(it)[1])

    def run(count):
        for _ in range(count):
            float(take(iterator))
    return run


def _alternate(runs: dict, count: int) -> dict:
    """Per-call wall and CPU µs of each run: calls alternated one by one, so that the
    load of a shared machine hits both alike; medians and quartiles over the calls."""
    for run in runs.values():
        run(20)  # warm-up
    calls = {name: {"wall": [], "cpu": []} for name in runs}
    for _ in range(count):
        for name, run in runs.items():
            with common.Stopwatch().running() as watch:
                run(1)
            calls[name]["wall"].append(watch.wall * 1e6)
            calls[name]["cpu"].append(watch.cpu * 1e6)
    quartiles = {name: {k: [round(q, 1) for q in statistics.quantiles(v, n=4)]
                        for k, v in figures.items()} for name, figures in calls.items()}
    medians = {name: {k: q[1] for k, q in figures.items()} for name, figures in quartiles.items()}
    return {"calls": count, "median_us_per_call": medians, "quartiles_us_per_call": quartiles,
            "overhead_us_per_call": {k: round(medians["timed"][k] - medians["untimed"][k], 1)
                                     for k in ("wall", "cpu")}}


def main(argv):
    del argv
    result = {"batch_size": FLAGS.batch_size,
              "model": "single_frame width 0.0625, 32 px",
              "machine_before": common.machine_load(),
              "train_step": _alternate({"untimed": _steps(False), "timed": _steps(True)},
                                       FLAGS.steps),
              "next_only": _alternate({"untimed": _next_only(False), "timed": _next_only(True)},
                                      FLAGS.next_calls),
              "machine_after": common.machine_load()}
    for part in ("train_step", "next_only"):
        medians, over = result[part]["median_us_per_call"], result[part]["overhead_us_per_call"]
        for name, m in medians.items():
            print(f"{part:10s} {name:8s} {m['wall']:8.1f} µs wall  {m['cpu']:8.1f} µs CPU")
        print(f"{part:10s} measuring the input wait: {over['wall']:+.1f} µs wall "
              f"({over['wall'] / medians['untimed']['wall']:+.1%}), {over['cpu']:+.1f} µs CPU")
    print(common.load_line())
    common.write_results(FLAGS.output, result)


if __name__ == "__main__":
    common.run(main)
