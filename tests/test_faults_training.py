"""Faults around training and evaluation: never leave state a rerun trusts, never exhaust memory.

Each case runs real `sports1m-train` / `sports1m-eval` processes on records converted
from real video files: impossible settings refused before TensorFlow starts,
checkpoints only of finite weights, a cut final model repaired by the rerun, one
writer per run folder (a killed holder never blocks), and validation and evaluation
with 20,000 classes in bounded memory. The TensorFlow processes run side by side
(each pays about 10 s to import it).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sports1m_tf import run_folder, synthetic
from test_bad_input import COMMANDS, REPO, SMALL, checksums, world  # noqa: F401

MANY_CLASSES = 20_000
DENSE_CONFUSION_BYTES = MANY_CLASSES ** 2 * 8  # one int64 [C, C] matrix: 3.2 GB
PARALLEL = 3


def command(name: str, *args: str) -> list[str]:
    """argv running console script `name` that reports, on exit, its peak memory and
    whether TensorFlow was imported (on stderr, after everything else)."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would include
    # the forked copy of this (possibly large) test process.
    code = ("import atexit, re, sys\n"
            "def report():\n"
            "    peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
            "    sys.stderr.write('PEAK_RSS_KB %d TF %d\\n' % (int(peak.group(1)), "
            "'tensorflow' in sys.modules))\n"
            "atexit.register(report)\n"
            f"sys.argv[0] = {name!r}\n"
            f"from {COMMANDS[name]} import run\n"
            "run()\n")
    return [sys.executable, "-c", code, *args]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def _run(argv: list[str], cwd: str | None = None) -> dict:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=_env(),
                          cwd=cwd)
    lines = proc.stderr.splitlines()
    report = [line for line in lines if line.startswith("PEAK_RSS_KB ")]
    _, peak_kb, _, tf_loaded = (report[-1] if report else "PEAK_RSS_KB 0 TF 1").split()
    return {"status": proc.returncode, "stdout": proc.stdout,
            "stderr": "\n".join(line for line in lines if line not in report),
            "peak_bytes": int(peak_kb) * 1024, "tensorflow": tf_loaded == "1"}


def _train(records: str, model_dir: str, *args: str) -> list[str]:
    return command("sports1m-train", f"--train_files={records}/train-*",
                   f"--model_dir={model_dir}", *SMALL, *args)


def _no_traceback(out: dict) -> None:
    text = out["stdout"] + out["stderr"]
    assert "Traceback" not in text, text[-3000:]


# ---------------------------------------------------------------------------
# The shared data: test_bad_input's records and tiny finished run (step 2), and the
# same clips in a taxonomy of 20,000 classes
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faults(world) -> dict:
    root = os.path.join(world["root"], "faults")
    os.makedirs(root)
    many = shutil.copytree(world["records"], os.path.join(root, "many"))
    info = json.load(open(os.path.join(many, "dataset.json")))  # the first four are theirs
    info["classes"] += [f"tag_{i:05d}" for i in range(MANY_CLASSES - len(info["classes"]))]
    with open(os.path.join(many, "dataset.json"), "w") as f:
        json.dump(info, f)
    # An untrained model of those classes, for evaluation (a run would take a process).
    from sports1m_tf.models import build_model
    many_model = os.path.join(root, "many.keras")
    build_model("single_frame", MANY_CLASSES, width=0.0625, input_size=32,
                dropout=0.0).save(many_model)
    return {"root": root, "records": world["records"], "many": many, "run": world["run"],
            "many_model": many_model}


def _cut_model(faults: dict) -> dict:
    run = shutil.copytree(faults["run"], os.path.join(faults["root"], "cut"))
    model = os.path.join(run, run_folder.FINAL_MODEL_FILE)
    with open(model, "r+b") as f:  # what a full disk during the write used to leave
        f.truncate(os.path.getsize(model) // 2)
    kept = [os.path.join(run, n) for n in os.listdir(run) if n.startswith(("ckpt-", "run_"))]
    before = checksums(*kept)
    out = _run(_train(faults["records"], run, "--train_steps=2"))
    return {**out, "run": run, "before": before, "after": checksums(*kept)}


def _weights_blow_up(faults: dict) -> dict:
    # A decay so large that the first resumed step sends every kernel to infinity,
    # with a finite loss and gradient: only the check before saving can see it.
    run = shutil.copytree(faults["run"], os.path.join(faults["root"], "blow_up"))
    before = checksums(*[os.path.join(run, n) for n in os.listdir(run) if "ckpt-2" in n])
    out = _run(_train(faults["records"], run, "--train_steps=4", "--checkpoint_every=1",
                      "--weight_decay=1e40"))
    return {**out, "run": run, "before": before}


def _many_classes_train(faults: dict) -> dict:
    return _run(command(
        "sports1m-train", f"--train_files={faults['many']}/train-*",
        f"--val_files={faults['many']}/val-*", f"--model_dir={faults['root']}/many_run", *SMALL,
        "--width=0.0625", "--train_steps=2", "--eval_every=2", "--val_batches=2",
        "--log_every=2"))


def _many_classes_eval(faults: dict) -> dict:
    report = os.path.join(faults["root"], "many_report")
    out = _run(command(
        "sports1m-eval", f"--keras_model={faults['many_model']}",
        f"--eval_files={faults['many']}/val-*", f"--output_dir={report}",
        "--clips_per_video=2", "--views=2", "--batch_size=8", "--noprogress"))
    return {**out, "report": report}


def _lock_file_written(folder: str, timeout: float = 240.0) -> bool:
    path = os.path.join(folder, run_folder.LOCK_FILE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _two_writers(faults: dict) -> dict:
    folder = os.path.join(faults["root"], "shared_run")
    holder = subprocess.Popen(
        _train(faults["records"], folder, "--train_steps=100000", "--checkpoint_every=100000",
               "--log_every=100000"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        assert _lock_file_written(folder), "the first sports1m-train never took its lock"
        second = _run(_train(faults["records"], folder, "--train_steps=1"))
        # Killed and not reaped: a zombie, whose pid still exists.
        holder.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60
        while _state(holder.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        zombie = _state(holder.pid) == "Z"
        third = _run(_train(faults["records"], folder, "--train_steps=1"))
    finally:
        holder.kill()
        holder.wait()
    return {"holder_pid": holder.pid, "folder": folder, "second": second, "third": third,
            "zombie": zombie}


@pytest.fixture(scope="module")
def outcomes(faults) -> dict:
    jobs = {"many_classes_train": _many_classes_train, "many_classes_eval": _many_classes_eval,
            "two_writers": _two_writers,
            "cut_model": _cut_model, "weights_blow_up": _weights_blow_up}
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(job, faults) for name, job in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------
IMPOSSIBLE = [
    ("--learning_rate=nan", "--learning_rate=nan: learning_rate must be a finite number above 0"),
    ("--learning_rate=-1", "--learning_rate=-1.0: learning_rate must be a finite number above 0"),
    ("--learning_rate=inf", "learning_rate must be a finite number above 0"),
    ("--weight_decay=-0.1", "weight_decay must be a finite number of at least 0"),
    ("--momentum=1", "momentum must be a number in [0, 1)"),
    ("--dropout=1", "dropout must be a number in [0, 1)"),
    ("--width=0", "width must be a finite number above 0"),
    ("--batch_size=0", "batch_size must be positive (1 or more)"),
]


def test_impossible_numbers_are_refused_before_tensorflow_starts(faults):
    folders = [os.path.join(faults["root"], f"refused_{i}") for i in range(len(IMPOSSIBLE))]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda item: _run(_train(faults["records"], item[0], item[1][0], "--train_steps=1")),
            zip(folders, IMPOSSIBLE)))
    for folder, (flag, message), out in zip(folders, IMPOSSIBLE, results):
        assert out["status"] == 1, (flag, out["stderr"][-2000:])
        lines = out["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sports1m-train: error: "), lines
        assert message in lines[0], (flag, lines)
        assert not out["tensorflow"], flag  # refused before TensorFlow was imported
        assert not os.path.exists(folder), flag  # nothing written


def test_a_checkpoint_is_never_written_from_non_finite_weights(outcomes):
    out = outcomes["weights_blow_up"]
    _no_traceback(out)
    assert out["status"] == 1
    assert ("the weights are not finite at step 3" in out["stderr"]
            and "the last good state is checkpoint 2" in out["stderr"]), out["stderr"][-2000:]
    run = out["run"]
    assert run_folder.checkpoint_steps(run) == [2]  # no ckpt-3 of infinite weights
    assert checksums(*out["before"]) == out["before"]
    model = run_folder.restore_model(run)
    assert all(np.isfinite(w.numpy()).all() for w in model.weights)


def test_a_cut_final_model_is_rewritten_by_the_rerun(outcomes):
    import keras

    out = outcomes["cut_model"]
    _no_traceback(out)
    assert out["status"] == 0, out["stderr"][-2000:]
    assert "already at step 2" in out["stdout"]
    assert "does not load" in out["stderr"] and "rewriting it from checkpoint 2" in out["stderr"]
    info = json.load(open(os.path.join(out["run"], run_folder.FINAL_MODEL_INFO)))
    model = keras.saving.load_model(os.path.join(out["run"], run_folder.FINAL_MODEL_FILE),
                                    compile=False)
    assert run_folder.weights_digest(model) == info["weights_sha256"] and info["step"] == 2
    assert out["after"] == out["before"]  # checkpoints and run config untouched
    # (A sound model.keras is left byte-identical: test_bad_input's finished-run case.)


def test_a_second_writer_is_refused_naming_the_holder(outcomes):
    out = outcomes["two_writers"]
    second = out["second"]
    _no_traceback(second)
    assert second["status"] == 1
    lines = second["stderr"].strip().splitlines()
    assert len(lines) == 1, lines
    assert (f"run folder {out['folder']} is in use by pid {out['holder_pid']} on "
            f"{os.uname().nodename} since " in lines[0]), lines
    assert not second["tensorflow"]  # refused at once


def test_a_killed_holder_does_not_block(outcomes):
    out = outcomes["two_writers"]
    third = out["third"]
    assert out["zombie"], "the killed holder was reaped before the rerun: not the zombie case"
    _no_traceback(third)
    assert third["status"] == 0, third["stderr"][-2000:]
    assert run_folder.checkpoint_steps(out["folder"]) == [1]


def test_validation_and_eval_with_many_classes_stay_bounded(outcomes):
    for stage in ("many_classes_train", "many_classes_eval"):
        out = outcomes[stage]
        _no_traceback(out)
        assert out["status"] == 0, out["stderr"][-3000:]
        # A dense confusion matrix alone would take 3.2 GB (and its symmetric copies more).
        assert out["peak_bytes"] < DENSE_CONFUSION_BYTES / 2, (stage, out["peak_bytes"])
    report = outcomes["many_classes_eval"]["report"]
    metrics = json.load(open(os.path.join(report, "metrics.json")))
    assert metrics["num_classes"] == MANY_CLASSES and metrics["videos"] == 4
    for name in ("confused_pairs.csv", "confusion_matrix.png", "predictions.csv"):
        assert os.path.getsize(os.path.join(report, name)) > 0, name
