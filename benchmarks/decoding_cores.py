"""Decoding cores one accelerator needs: each model's input cost per clip against its FLOPs.

For every model (single, early, late, slow fusion; full frame and multires):
  * the training input's clips per CPU-second: `clip_dataset` in training mode
    (random crop, flip, batching) on the input-pipeline benchmark's records
    (16 frames of 200×200 JPEG a clip), reading the model's frames (1, 10, 2, 10)
    at its crop (170 full frame, 178 multires); CPU seconds of this process;
  * training FLOPs per clip: 3 × forward × 2 FLOPs per MAC, the forward MACs
    counted by `benchmarks/model_cost.py` (run here as a subprocess, no timing);
  * the clips/s an accelerator trains at a given utilisation of its peak
    (default: one H100, 989 dense bf16 TFLOPS, at 40%), and the decoding cores that
    takes: accelerator clips/s ÷ clips per CPU-second.

Run (≈1.5 minutes):
  nice -n 5 python benchmarks/decoding_cores.py
  python benchmarks/decoding_cores.py --peak_tflops=312 --utilisation=0.5   # an A100
Writes benchmarks/results/decoding_cores.json.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import input_pipeline  # noqa: E402  (its records and its flags)

import common

FLAGS = flags.FLAGS
flags.DEFINE_float("peak_tflops", 989.0, "The accelerator's dense peak (H100 SXM bf16: 989).")
flags.DEFINE_float("utilisation", 0.4, "Fraction of the peak the training step reaches.")
MODELS = ("single_frame", "early_fusion", "late_fusion", "slow_fusion")
HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "results", "decoding_cores.json")


def forward_gmacs() -> dict[str, float]:
    """GMAC per clip of every model variant, from `model_cost.py --nomeasure`."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "cost.json")
        subprocess.run([sys.executable, os.path.join(HERE, "model_cost.py"), "--nomeasure",
                        f"--models={','.join(MODELS)}", f"--output={out}"], check=True,
                       capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        with open(out) as f:
            return {row["model"]: row["gmac_per_clip"] for row in json.load(f)["models"]}


def clips_per_cpu_second(pattern: str, model: str, multires: bool) -> float:
    from sports1m_tf.data import clip_dataset
    dataset = clip_dataset(pattern, model=model, multires=multires, training=True,
                           batch_size=FLAGS.batch_size, num_classes=487, repeat=-1)
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    batches, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < FLAGS.seconds:
        next(iterator)
        batches += 1
    return batches * FLAGS.batch_size / (time.process_time() - cpu)


def main(argv):
    del argv
    from sports1m_tf.models import frames_needed
    gmacs = forward_gmacs()
    accelerator_flops = FLAGS.peak_tflops * 1e12 * FLAGS.utilisation
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_cores_") as folder:
        pattern, _ = input_pipeline.write_records(folder, FLAGS.clips)
        for model in MODELS:
            for multires in (False, True):
                name = model + ("_multires" if multires else "")
                rate = clips_per_cpu_second(pattern, model, multires)
                train_gflop = 6 * gmacs[name]
                accelerator_clips = accelerator_flops / (train_gflop * 1e9)
                rows.append({"model": name, "frames": len(frames_needed(model)),
                             "crop": 178 if multires else 170,
                             "clips_per_cpu_s": round(rate, 1),
                             "train_gflop_per_clip": round(train_gflop, 2),
                             "accelerator_clips_per_s": round(accelerator_clips),
                             "cores": round(accelerator_clips / rate, 1)})
                logging.info("%s", rows[-1])
    result = {"peak_tflops": FLAGS.peak_tflops, "utilisation": FLAGS.utilisation,
              "seconds_per_model": FLAGS.seconds, "batch_size": FLAGS.batch_size,
              "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(),
              "rows": rows}
    common.write_results(FLAGS.output, result, indent=2)
    common.print_table(
        ["model", "frames", "crop", "clips per CPU-second", "training GFLOP/clip",
         f"clips/s at {FLAGS.utilisation:.0%} of {FLAGS.peak_tflops:.0f} TFLOPS", "cores"],
        ([r["model"], r["frames"], r["crop"], f"{r['clips_per_cpu_s']:,.0f}",
          f"{r['train_gflop_per_clip']:.2f}", f"{r['accelerator_clips_per_s']:,}",
          f"{r['cores']:,.0f}"] for r in rows))


def run():
    common.run(main, output=OUTPUT, clips=256, seconds=5.0)


if __name__ == "__main__":
    run()
