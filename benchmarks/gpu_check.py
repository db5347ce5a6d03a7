"""What only a GPU can tell, in one run of at most ~8 minutes (one GPU, 16 cores).

Parts, each with its own time budget (a part out of time records what it has and
skips the rest; every measurement's failure is recorded, never fatal):
  1. train step: per model (single, early, late, slow fusion; full frame and
     multires) the step `sports1m-train` runs (`benchmarks/train_step.py`'s
     child: forward, backward, SGD) on clips held in device memory, in bfloat16
     with XLA and in float32 (TF32 matmuls, TensorFlow's default on GPUs);
     clips/s and model-FLOP utilisation (training FLOPs ≈ 3 × forward,
     against --peak_tflops_bf16 / --peak_tflops_fp32);
  2. input pipeline: `benchmarks/input_pipeline.py` on all cores (clips/s of
     the training input at 1, 2, 10, 16 frames);
  3. end to end: `sports1m-train` on records written by the converter from
     synthetic videos at 200×200 (bfloat16 + XLA on a GPU, as `auto` chooses),
     single and slow fusion; clips/s and input wait (the share of the steps'
     time blocked on the next batch, as every training log line reports it)
     of the last logged window;
  4. verdict: a model is input-bound when end-to-end training runs below 90% of
     its in-memory step rate; the input wait says the same from inside the run.
Writes JSON (benchmarks/results/gpu_check.json) and prints a table.

Without a GPU it runs a dry run: one tiny step of every part (a test keeps it
working), not a measurement.

Run:
  python benchmarks/gpu_check.py                   # on the GPU machine, ≈ 8 min
  python benchmarks/gpu_check.py --dry_run         # anywhere, ≈ 1 min
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback

from absl import flags, logging

from sports1m_tf import cli

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import train_step  # noqa: E402  (its step timing and its flags)

FLAGS = flags.FLAGS
flags.DEFINE_bool("dry_run", None, "One tiny step of every part (default: on when no GPU).")
flags.DEFINE_float("peak_tflops_bf16", 989.0, "Dense bf16 peak of the GPU (H100/H200 SXM: 989).")
flags.DEFINE_float("peak_tflops_fp32", 495.0,
                   "Dense peak for float32 steps: TF32 tensor cores (H100/H200 SXM: 495).")
flags.DEFINE_float("step_budget_s", 270.0, "Seconds for part 1 (train steps).")
flags.DEFINE_float("input_budget_s", 75.0, "Seconds for part 2 (input pipeline).")
flags.DEFINE_float("end_to_end_budget_s", 120.0, "Seconds for part 3 (end-to-end training).")
flags.DEFINE_integer("end_to_end_steps", 150, "Training steps per end-to-end run.")

MODELS = ("single_frame", "early_fusion", "late_fusion", "slow_fusion")
PRECISIONS = (("bfloat16+xla", "mixed_bfloat16", True), ("float32", "float32", False))
END_TO_END_MODELS = ("single_frame", "slow_fusion")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUTPUT = os.path.join(HERE, "results", "gpu_check.json")
INPUT_BOUND_BELOW = 0.9


class Budget:
    """A part's deadline."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _error(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(e), e)).strip()[-2000:]


def _subprocess(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(args, capture_output=True, text=True, timeout=max(timeout, 1.0),
                          env=env, cwd=ROOT)


def train_steps(dry: bool) -> list[dict]:
    """Part 1: in-memory training step per model, precision and frame variant."""
    import keras
    FLAGS.matmul_size = 0
    if dry:
        FLAGS.width, FLAGS.batch_size, FLAGS.steps, FLAGS.warmup = 0.0625, 2, 1, 1
    else:
        FLAGS.batch_size, FLAGS.steps, FLAGS.warmup = 64, 10, 3
    peaks = {"mixed_bfloat16": FLAGS.peak_tflops_bf16, "float32": FLAGS.peak_tflops_fp32}
    budget, rows = Budget(FLAGS.step_budget_s), []
    for label, precision, xla in PRECISIONS:
        for model in (MODELS[:1] if dry else MODELS):
            for multires in (False, True):
                row = {"model": model, "multires": multires, "precision": label}
                rows.append(row)
                if budget.left() <= 0:
                    row["error"] = "skipped: part 1 out of time"
                    continue
                FLAGS.precision, FLAGS.xla = precision, xla
                try:
                    result = train_step.run_child(f"{model}:{int(multires)}")
                    row.update(clips_per_s=round(result["clips_per_s"], 1),
                               train_gflop_per_clip=round(result["train_gflop_per_clip"], 3),
                               device=result["device"], batch_size=FLAGS.batch_size,
                               mfu=round(result["achieved_gflops"] / (peaks[precision] * 1e3),
                                         4))
                except Exception as e:  # noqa: BLE001  (recorded; the check goes on)
                    row["error"] = _error(e)
                finally:
                    keras.backend.clear_session()
                logging.info("step %s", row)
    keras.mixed_precision.set_global_policy("float32")
    return rows


def input_pipeline(dry: bool) -> dict:
    """Part 2: the training input's clips/s on every core (a subprocess)."""
    budget = Budget(FLAGS.input_budget_s)
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "input.json")
        args = [sys.executable, os.path.join(HERE, "input_pipeline.py"), f"--output={out}",
                "--repeats=1", f"--seconds={0.5 if dry else 6}", f"--clips={32 if dry else 512}"]
        try:
            done = _subprocess(args, budget.left())
            if done.returncode:
                return {"error": done.stderr[-2000:]}
            with open(out) as f:
                result = json.load(f)
        except Exception as e:  # noqa: BLE001
            return {"error": _error(e)}
    return {"cores": result["cpu_count"],
            "decode_limit_frames_per_s": result["decode_limit_frames_per_s"],
            "clips_per_s": {row["config"]: row["clips_per_s"] for row in result["table"]}}


def _converter_records(folder: str, dry: bool) -> list[str]:
    from sports1m_tf import synthetic
    from tfrecord_tools.convert import convert
    videos = synthetic.make_dataset(os.path.join(folder, "videos"), classes="appearance",
                                    splits={"train": 2 if dry else 12}, num_frames=32,
                                    size=64 if dry else 200, seed=0)
    out = os.path.join(folder, "records")
    convert(videos["manifests"]["train"], output_dir=out, split="train",
            num_shards=2 if dry else 8, clips_per_video=2 if dry else 16,
            frame_size=64 if dry else 200, workers=1 if dry else min(8, os.cpu_count() or 1),
            progress=False)
    return [f"--train_files={out}/train-*"]


def end_to_end(dry: bool) -> list[dict]:
    """Part 3: `sports1m-train` on converter records; the last logged clips/s."""
    budget, rows = Budget(FLAGS.end_to_end_budget_s), []
    with tempfile.TemporaryDirectory() as folder:
        try:
            records = _converter_records(folder, dry)
        except Exception as e:  # noqa: BLE001
            return [{"error": f"records: {_error(e)}"}]
        steps = 2 if dry else FLAGS.end_to_end_steps
        for model in (END_TO_END_MODELS[:1] if dry else END_TO_END_MODELS):
            row = {"model": model}
            rows.append(row)
            if budget.left() <= 0:
                row["error"] = "skipped: part 3 out of time"
                continue
            size = ["--width=0.0625", "--input_size=32", "--batch_size=2"] if dry else [
                "--batch_size=64"]
            args = [sys.executable, "-m", "sports1m_tf.training.train", f"--model={model}", *records,
                    *size, f"--model_dir={os.path.join(folder, model)}",
                    f"--train_steps={steps}", f"--log_every={max(steps // 3, 1)}",
                    f"--checkpoint_every={steps}", "--learning_rate=0.001"]
            try:
                done = _subprocess(args, budget.left())
                rates = re.findall(r"step \d+/\d+ .*? ([\d.]+) clips/s  input wait (\d+)%",
                                   done.stderr)
                if done.returncode or not rates:
                    row["error"] = done.stderr[-2000:]
                else:
                    row.update(clips_per_s=float(rates[-1][0]),
                               input_wait=int(rates[-1][1]) / 100, steps=steps,
                               batch_size=2 if dry else 64)
            except Exception as e:  # noqa: BLE001
                row["error"] = _error(e)
            logging.info("end to end %s", row)
    return rows


def verdict(steps: list[dict], e2e: list[dict]) -> list[dict]:
    """Part 4: input-bound where end-to-end runs below 90% of the in-memory step."""
    out = []
    for row in e2e:
        step = next((s for s in steps if s.get("model") == row.get("model")
                     and not s["multires"] and s["precision"] == "bfloat16+xla"
                     and "clips_per_s" in s), None)
        if step and "clips_per_s" in row:
            ratio = row["clips_per_s"] / step["clips_per_s"]
            out.append({"model": row["model"], "end_to_end_over_step": round(ratio, 3),
                        "input_wait": row["input_wait"],
                        "input_bound": ratio < INPUT_BOUND_BELOW})
    return out


def _gpu_name() -> str | None:
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")


def print_table(result: dict) -> None:
    print(f"GPU: {result['gpu'] or 'none (dry run)'}; {result['cpu_count']} cores; "
          f"{result['seconds']:.0f} s")
    print(f"{'model':24s} {'precision':13s} {'clips/s':>9s} {'MFU':>6s}")
    for r in result["train_step"]:
        name = r["model"] + ("_multires" if r["multires"] else "")
        if "error" in r:
            print(f"{name:24s} {r['precision']:13s} error: {r['error'].splitlines()[-1][:80]}")
        else:
            print(f"{name:24s} {r['precision']:13s} {r['clips_per_s']:9.1f} {r['mfu']:6.1%}")
    print(f"input pipeline (all cores): {result['input_pipeline']}")
    for r in result["end_to_end"]:
        print(f"end to end {r.get('model')}: " + (
            f"{r['clips_per_s']} clips/s, input wait {r['input_wait']:.0%}" if "clips_per_s" in r
            else f"error: {r.get('error', '')[-200:]}"))
    for r in result["verdict"]:
        print(f"{r['model']}: end to end / step = {r['end_to_end_over_step']:.2f}, input wait "
              f"{r['input_wait']:.0%} ({'input-bound' if r['input_bound'] else 'not input-bound'})")


def main(argv):
    del argv
    started = time.monotonic()
    gpu = _gpu_name()
    dry = FLAGS.dry_run if FLAGS.dry_run is not None else gpu is None
    if dry:
        FLAGS.step_budget_s = min(FLAGS.step_budget_s, 120)
    steps = train_steps(dry)
    result = {"gpu": gpu, "dry_run": dry, "cpu_count": os.cpu_count(),
              "peak_tflops": {"bf16": FLAGS.peak_tflops_bf16, "fp32": FLAGS.peak_tflops_fp32},
              "train_step": steps, "input_pipeline": input_pipeline(dry),
              "end_to_end": end_to_end(dry)}
    result["verdict"] = verdict(steps, result["end_to_end"])
    result["seconds"] = round(time.monotonic() - started, 1)
    os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(result, f, indent=2)
    print_table(result)
    print(f"wrote {FLAGS.output}")


def run():
    FLAGS.set_default("output", OUTPUT)
    cli.entry(main)()


if __name__ == "__main__":
    run()
