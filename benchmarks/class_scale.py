"""Peak memory of training with validation and of evaluation against the number of classes.

    python benchmarks/class_scale.py                          # 1,000 / 20,000 / 100,000 classes
    python benchmarks/class_scale.py --classes=1000,50000 --steps=4

The same few real clips (synthetic videos, converted) are labelled within a class
list of C names (the first few are theirs, the rest have no clip, as in a large
tagging taxonomy). For each C, a fresh `sports1m-train` process runs --steps steps
with a validation every 2 steps, then a fresh `sports1m-eval` process scores the
run; each one's peak resident memory is read from the kernel (`wait4`). Beside it:
what a dense int64 C × C confusion matrix would take, and the model's classifier
(fc7 × C weights, float32, with its gradient and SGD momentum), which is what
grows with C once confusions are sparse. Writes benchmarks/results/class_scale.json.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl import flags

import common
import study_runs

flags.DEFINE_list("classes", ["1000", "20000", "100000"], "Class counts to measure.")
flags.DEFINE_integer("steps", 4, "Training steps (a validation every 2).")
flags.DEFINE_float("width", 0.0625, "Width multiplier (fc7 = 4096 x width units).")
flags.DEFINE_string("work_dir", None, "Where records and runs go (default: a temporary "
                    "folder, deleted).")
common.define_output("class_scale", "JSON output.")
FLAGS = flags.FLAGS

_FRAME_SIZE, _INPUT_SIZE, _BATCH = 40, 32, 4


def _with_classes(records: str, folder: str, count: int) -> str:
    """A copy of `records` whose dataset.json lists `count` classes (theirs first)."""
    shutil.copytree(records, folder)
    path = os.path.join(folder, "dataset.json")
    with open(path) as f:
        info = json.load(f)
    info["classes"] += [f"tag_{i:06d}" for i in range(count - len(info["classes"]))]
    with open(path, "w") as f:
        json.dump(info, f)
    return folder


def _peak_mb(argv: list[str]) -> float:
    """Runs `argv`; returns its own peak resident memory, MB (fails on a non-zero exit)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv[:3])}... failed ({proc.returncode}):\n"
                         f"{stderr.decode(errors='replace')[-3000:]}")
    return usage.ru_maxrss / 1024


def _measure(records: str, root: str, count: int) -> dict:
    data = _with_classes(records, os.path.join(root, f"records_{count}"), count)
    run = os.path.join(root, f"run_{count}")
    small = ["--model=single_frame", f"--width={FLAGS.width}", f"--input_size={_INPUT_SIZE}",
             f"--batch_size={_BATCH}", "--dropout=0", "--strategy=one_device"]
    train_mb = _peak_mb([sys.executable, "-m", "sports1m_tf.training.train", *small,
                         f"--train_files={data}/train-*", f"--val_files={data}/val-*",
                         f"--model_dir={run}", f"--train_steps={FLAGS.steps}",
                         "--eval_every=2", "--val_batches=2", f"--log_every={FLAGS.steps}"])
    eval_mb = _peak_mb([sys.executable, "-m", "sports1m_tf.evaluation.evaluate",
                        f"--model_dir={run}", f"--eval_files={data}/val-*",
                        f"--output_dir={os.path.join(root, f'report_{count}')}",
                        "--noprogress"])
    fc7 = int(4096 * FLAGS.width)
    return {"classes": count, "train_peak_mb": round(train_mb, 1),
            "eval_peak_mb": round(eval_mb, 1),
            "dense_confusion_mb": round(count * count * 8 / 2 ** 20, 1),
            # weights, gradient and SGD momentum of the fc7 -> C classifier, float32
            "classifier_mb": round(3 * fc7 * count * 4 / 2 ** 20, 1)}


def main(argv):
    del argv
    root = FLAGS.work_dir or tempfile.mkdtemp(prefix="class_scale_")
    try:
        records = os.path.dirname(study_runs.make_records(
            root, classes="appearance", videos_per_class=5, num_frames=32, video_size=48,
            frame_size=_FRAME_SIZE, centre_bias=True, seed=0)["files"]["train"])
        rows = []
        for count in (int(c) for c in FLAGS.classes):
            rows.append(_measure(records, root, count))
            print(f"{count:>7} classes: train {rows[-1]['train_peak_mb']:7.0f} MB, "
                  f"eval {rows[-1]['eval_peak_mb']:7.0f} MB (a dense confusion matrix: "
                  f"{rows[-1]['dense_confusion_mb']:,.0f} MB)", flush=True)
    finally:
        if not FLAGS.work_dir:
            shutil.rmtree(root, ignore_errors=True)
    print(common.load_line())
    common.write_results(FLAGS.output, {
        "what": "peak resident memory (MB) of a fresh sports1m-train process "
                f"({FLAGS.steps} steps, validation every 2, width {FLAGS.width}, "
                f"{_INPUT_SIZE}-pixel crops, batch {_BATCH}) and of a fresh sports1m-eval "
                "process, against the number of classes",
        "command": "python benchmarks/class_scale.py",
        "rows": rows, "machine": common.machine_load(),
        "note": "peak memory does not depend on the machine's load; the machine was shared"})


if __name__ == "__main__":
    common.run(main)
