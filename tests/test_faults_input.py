"""Faults under a running input pipeline, and records that lie: every stream ends, one verdict.

Real processes on tiny real records (a few 40x40 JPEG clips written with the
converter's own serializer), asserting exit status, the message and that no
traceback is printed:
  - shards removed, or replaced, while training reads them end the run with one
    line naming the files and what happened, within a bound;
  - a shard cut short, with no dataset.json beside it and TensorFlow's own log
    quieted, is named in the skip report of training and evaluation;
  - records that lie (label past the class list, negative label, another class's
    name, PNG frames, another frame size than stated, no label, too few frames)
    make sports1m-inspect fail counting each kind, and training and evaluation
    skip the same records, naming each kind;
  - a batch larger than the data is announced with the clip count and the passes.
Two in-process cases check the pipelines themselves end when their files go.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

from test_bad_input import REPO, SMALL, command
from tfrecord_tools import clip_encoding

CLASSES = ["ball", "court", "net"]
SIDE = 40
BOUND_S = 240  # a run that must end does so well within this, even on a loaded machine


def _frames(seed: int, count: int = 16, fmt: str = ".jpg", side: int = SIDE) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [cv2.imencode(fmt, rng.integers(0, 255, (side, side, 3), np.uint8))[1].tobytes()
            for _ in range(count)]


def _clip(media_id: str, labels, names, frames, stated: int = SIDE) -> bytes:
    return clip_encoding.encode_clip(
        media_id=media_id, label_indices=labels, label_strings=names, encoded_frames=frames,
        frame_timestamps_us=[i * 40_000 for i in range(len(frames))], frame_rate=25.0,
        height=stated, width=stated)


def _good(i: int) -> bytes:
    label = i % len(CLASSES)
    return _clip(f"good{i}", [label], [CLASSES[label]], _frames(i))


# Each lie, the kind the record check calls it, and how many records of it are written.
LIES = {
    "label index outside the class list": [
        _clip("past", [3], ["ball"], _frames(100)), _clip("negative", [-1], ["ball"], _frames(101))],
    "label name is not the class of its index": [_clip("misnamed", [0], ["net"], _frames(102))],
    "frames are not JPEG": [_clip("png", [1], ["court"], _frames(103, fmt=".png"))],
    "frame size is not the one the record states": [
        _clip("size", [1], ["court"], _frames(104, side=48))],
    "no label": [_clip("unlabelled", [], [], _frames(105))],
    "fewer frames than a clip": [_clip("short", [2], ["net"], _frames(106, count=8))],
}


def _write_shard(path: str, records: list[bytes]) -> str:
    import tensorflow as tf
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def _write_split(folder: str, shards: list[list[bytes]], split: str = "train",
                 dataset_json: bool = True) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    names = [f"{split}-{i:05d}-of-{len(shards):05d}.tfrecord" for i in range(len(shards))]
    paths = [_write_shard(os.path.join(folder, n), r) for n, r in zip(names, shards)]
    if dataset_json:
        section = {"shards": names, "clips": sum(len(r) for r in shards),
                   "clips_per_class": dict.fromkeys(CLASSES, 1),
                   "clips_per_shard": [len(r) for r in shards], "videos_converted": 1,
                   "settings": {"clip_frames": 16, "frame_size": SIDE}}
        with open(os.path.join(folder, "dataset.json"), "w") as f:
            json.dump({"classes": CLASSES, "num_classes": len(CLASSES),
                       "splits": {split: section}}, f)
    return paths


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, **extra)
    if "TF_CPP_MIN_LOG_LEVEL" not in extra:
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def _run(argv: list[str], **env) -> dict:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=BOUND_S,
                          env=_env(**env), cwd=REPO)
    return {"status": proc.returncode, "text": proc.stdout + proc.stderr}


def _train(files: str, model_dir: str, *flags: str) -> list[str]:
    return command("sports1m-train", f"--train_files={files}", f"--model_dir={model_dir}",
                   "--checkpoint_every=100000", *SMALL, *flags)


def _one_line_error(out: dict, files: list[str], *phrases: str) -> None:
    """Exit status 1, no traceback, and a last error line naming one of `files`."""
    text = out["text"]
    assert out["status"] == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if "error:" in line]
    assert errors, text[-3000:]
    for phrase in phrases:
        assert phrase in errors[-1], errors[-1]
    assert any(path in errors[-1] for path in files), errors[-1]


def _while_training(argv: list[str], act) -> dict:
    """Runs a long training, calls `act()` once it trains, and waits for it to end."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(), cwd=REPO)
    lines: list[str] = []
    training = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if "step " in line and "loss" in line:
                training.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert training.wait(BOUND_S), "".join(lines)[-3000:]
        act()
        acted = time.monotonic()
        status = proc.wait(timeout=BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    return {"status": status, "text": "".join(lines), "after_s": time.monotonic() - acted}


# ---------------------------------------------------------------------------
# The data, and every process, run side by side once
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = str(tmp_path_factory.mktemp("faults"))
    good = [_good(i) for i in range(6)]
    lies = [record for records in LIES.values() for record in records]
    world = {"root": root}
    world["gone"] = _write_split(os.path.join(root, "gone"), [good[:3], good[3:]])
    world["replaced"] = _write_split(os.path.join(root, "replaced"), [good[:3], good[3:]])
    cut = _write_split(os.path.join(root, "cut"), [good[:3], good[3:]], dataset_json=False)
    with open(cut[1], "r+b") as f:
        f.truncate(os.path.getsize(cut[1]) - 100)
    world["cut"] = cut
    world["lies"] = _write_split(os.path.join(root, "lies"), [good + lies])
    return world


def _remove(paths):
    return lambda: [os.remove(p) for p in paths]


def _replace(paths):
    def act():
        for i, path in enumerate(paths):  # as a conversion does: a new file renamed over
            _write_shard(path + ".new", [_good(50 + i)])
            os.replace(path + ".new", path)
    return act


@pytest.fixture(scope="module")
def outcomes(world) -> dict:
    root = world["root"]
    lies_glob = os.path.join(root, "lies", "train-*")
    long = ["--train_steps=100000", "--log_every=1"]
    jobs = {
        # Also a batch larger than the data: 8 clips of the 6 there are.
        "gone": lambda: _while_training(
            _train(os.path.join(root, "gone", "train-*"), f"{root}/run_gone", *long,
                   "--batch_size=8"),
            _remove(world["gone"])),
        "replaced": lambda: _while_training(
            _train(os.path.join(root, "replaced", "train-*"), f"{root}/run_replaced", *long),
            _replace(world["replaced"])),
        "cut_train": lambda: _run(
            _train(os.path.join(root, "cut", "train-*"), f"{root}/run_cut", "--num_classes=3",
                   "--train_steps=2", "--log_every=1"), TF_CPP_MIN_LOG_LEVEL="2"),
        "inspect": lambda: _run(command("sports1m-inspect", os.path.join(root, "lies"),
                                        "--contact_sheet=")),
        "lies_train_eval": lambda: (
            # Seven lies in 13 records: far over the default 1% budget, allowed here.
            _run(_train(lies_glob, f"{root}/run_lies", "--train_steps=4", "--log_every=4",
                        "--batch_size=2", "--shuffle_buffer=1", "--max_skipped_fraction=0.9")),
            _run(command("sports1m-eval", f"--model_dir={root}/run_lies",
                         f"--eval_files={lies_glob}", f"--eval_files={world['cut'][1]}",
                         f"--output_dir={root}/eval_lies", "--noprogress"),
                 TF_CPP_MIN_LOG_LEVEL="2")),
    }
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def test_shards_removed_while_training_end_the_run(outcomes, world):
    out = outcomes["gone"]
    _one_line_error(out, world["gone"], "changed while they were read", "is gone")
    assert out["after_s"] < BOUND_S


def test_shards_replaced_while_training_end_the_run(outcomes, world):
    out = outcomes["replaced"]
    _one_line_error(out, world["replaced"], "changed while they were read")


def test_a_cut_shard_without_dataset_json_is_named_by_training(outcomes, world):
    out = outcomes["cut_train"]
    assert out["status"] == 0, out["text"][-3000:]
    assert "Traceback" not in out["text"]
    assert f"{world['cut'][1]} is damaged (cut short" in out["text"], out["text"][-3000:]


def test_inspect_fails_counting_each_kind_of_lie(outcomes):
    out = outcomes["inspect"]
    assert out["status"] == 1, out["text"][-3000:]
    assert "Traceback" not in out["text"]
    problems = next(line for line in out["text"].splitlines() if line.startswith("problems: "))
    for kind, records in LIES.items():
        assert f"{kind}: {len(records)}" in problems, problems
    assert f"{sum(map(len, LIES.values()))} BAD RECORDS" in out["text"]


def test_training_and_evaluation_skip_and_name_the_same_lies(outcomes, world):
    trained, evaluated = outcomes["lies_train_eval"]
    for out in (trained, evaluated):
        assert out["status"] == 0, out["text"][-3000:]
        assert "Traceback" not in out["text"], out["text"][-3000:]
        assert world["lies"][0] in out["text"]
        for kind in LIES:
            assert kind in out["text"], (kind, out["text"][-3000:])
    # Evaluation reads each record once: it counts each lie exactly.
    for kind, records in LIES.items():
        assert f"skipped {len(records)} clip record(s): {kind}" in evaluated["text"]
    # ... and names the cut shard, with TensorFlow's own log quieted.
    assert f"{world['cut'][1]} is damaged (cut short" in evaluated["text"]


def test_a_batch_larger_than_the_data_is_announced(outcomes):
    out = outcomes["gone"]  # before its files went
    assert ("--batch_size=8 is larger than the 6 clips of the training records: every "
            "batch reads them 2 times") in out["text"], out["text"][-3000:]


# ---------------------------------------------------------------------------
# The pipelines themselves (in this process)
# ---------------------------------------------------------------------------
def test_an_endless_stream_whose_files_go_ends_naming_them(tmp_path):
    import tensorflow as tf

    from sports1m_tf.data import ErrorCounter, clip_dataset
    paths = _write_split(str(tmp_path), [[_good(i) for i in range(3)], [_good(3)]])
    counter = ErrorCounter()
    ds = clip_dataset(paths, model="single_frame", training=True, batch_size=2,
                      num_classes=len(CLASSES), input_size=32, repeat=-1, seed=0,
                      shuffle_buffer=4, error_counter=counter)
    batches = iter(ds)
    next(batches)
    for path in paths:
        os.remove(path)
    with pytest.raises(StopIteration):
        for _ in range(100_000):  # far more than the records, far fewer than for ever
            next(batches)
    error = str(counter.budget_error())  # what the end of a training stream says
    assert set(counter.files_gone_or_changed()) == set(paths)
    assert "is gone" in error


def test_evaluation_names_a_file_gone_before_its_pass(tmp_path):
    from sports1m_tf.data import eval_dataset
    paths = _write_split(str(tmp_path), [[_good(i) for i in range(3)], [_good(3)]])
    ds = eval_dataset(paths, model="single_frame", batch_size=4, num_classes=len(CLASSES),
                      views=1, input_size=32)
    os.remove(paths[1])
    assert sum(len(b["media_id"]) for b in ds) == 3
    ds.error_counter.look_now()  # as evaluation does after its pass
    assert list(ds.error_counter.files_gone_or_changed()) == [paths[1]]
