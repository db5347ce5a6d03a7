"""Input wait of real training runs on this machine, and the verdict each run logs.

Converts synthetic videos into 200×200 clip records (as the paper stores them),
then runs `sports1m-train`'s loop in this process for models from one far
lighter than its input to one far heavier, and reads back from each run's
TensorBoard events the input wait, clips/s and the step time split, averaged
over the log intervals after the first (which holds the step's tracing).
Writes JSON and prints a table with the verdict lines.

Run:
  python benchmarks/input_bound.py      # ≈ 2 min on 2 cores
"""
from __future__ import annotations

import logging
import os
import tempfile

from absl import flags

import common

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 24, "Training steps per run.")
flags.DEFINE_integer("log_every", 3, "Steps per log interval.")
common.define_output("input_bound")

# (label, settings): lightest first.
RUNS = (
    ("single_frame width 1/16, 32-pixel crops, batch 128",
     dict(model="single_frame", width=0.0625, input_size=32, batch_size=128)),
    ("single_frame width 1/16, 170-pixel crops, batch 32",
     dict(model="single_frame", width=0.0625, input_size=170, batch_size=32)),
    ("single_frame width 1/2, 170-pixel crops, batch 8",
     dict(model="single_frame", width=0.5, input_size=170, batch_size=8)),
)
SCALARS = ("input_wait_fraction", "clips_per_second", "input_wait_seconds_per_step",
           "compute_seconds_per_step", "trainer_cpu_cores")


class _Verdicts(logging.Handler):
    """Keeps the verdict lines the training loop logs."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        text = record.getMessage()
        if text.startswith(("input-bound:", "input is not the limit:")):
            self.lines.append(text)


def _records(folder: str) -> list[str]:
    from sports1m_tf import synthetic
    from tfrecord_tools.convert import convert
    videos = synthetic.make_dataset(os.path.join(folder, "videos"), classes="appearance",
                                    splits={"train": 4}, num_frames=48, size=200, seed=0)
    out = os.path.join(folder, "records")
    convert(videos["manifests"]["train"], output_dir=out, split="train", num_shards=4,
            clips_per_video=3, frame_size=200, progress=False)
    return [os.path.join(out, "train-*")]


def _means(model_dir: str) -> dict:
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(model_dir, "train"), size_guidance={"tensors": 0})
    events.Reload()
    means = {}
    for tag in SCALARS:
        values = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)][1:]
        means[tag] = sum(values) / len(values)
    return means


def main(argv):
    del argv
    from sports1m_tf.training import train
    handler = _Verdicts()
    logging.getLogger("absl").addHandler(handler)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        records = _records(folder)
        for i, (label, settings) in enumerate(RUNS):
            del handler.lines[:]
            config = train.make_config(
                **settings, train_files=records, model_dir=os.path.join(folder, f"run{i}"),
                strategy="one_device", train_steps=FLAGS.steps, log_every=FLAGS.log_every,
                checkpoint_every=FLAGS.steps, shuffle_buffer=64)
            train.train(config)
            rows.append({"run": label, **settings, **_means(config.model_dir),
                         "verdicts": list(handler.lines)})
    result = {"steps": FLAGS.steps, "log_every": FLAGS.log_every,
              "records": "synthetic appearance videos, 200x200 JPEG q90, 16-frame clips",
              "machine": common.machine_load(), "runs": rows}
    print(f"{'run':52s} {'wait':>5s} {'clips/s':>8s} {'input ms':>9s} {'compute ms':>10s} "
          f"{'cores':>5s}")
    for r in rows:
        print(f"{r['run']:52s} {r['input_wait_fraction']:5.0%} {r['clips_per_second']:8.1f} "
              f"{r['input_wait_seconds_per_step'] * 1e3:9.1f} "
              f"{r['compute_seconds_per_step'] * 1e3:10.1f} {r['trainer_cpu_cores']:5.2f}")
        for line in r["verdicts"]:
            print(f"    {line}")
    print(common.load_line())
    common.write_results(FLAGS.output, result)


if __name__ == "__main__":
    common.run(main)
