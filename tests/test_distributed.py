"""sports1m-train under tf.distribute: real clusters of processes on 127.0.0.1.

MirroredStrategy over 2 logical CPUs (killed with SIGKILL mid-run and resumed),
MultiWorkerMirroredStrategy with 2 workers, ParameterServerStrategy with 1 ps,
2 workers and the chief, and the clear, bounded failures of a bad TF_CONFIG.
Every process runs in its own session and is killed with its group when the
test ends (SIGKILL: TensorFlow's preemption notifier swallows SIGTERM).
"""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from sports1m_tf import distribute, run_folder, synthetic
from tfrecord_tools.convert import convert

TINY = ["--model=single_frame", "--width=0.0625", "--input_size=32", "--batch_size=4",
        "--learning_rate=0.01", "--val_batches=2", "--peer_timeout=60"]
PROCESS_TIMEOUT = 120


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Train and val clip records converted from real synthetic video files."""
    root = tmp_path_factory.mktemp("dist_records")
    videos = synthetic.make_dataset(str(root / "videos"), classes="appearance",
                                    splits={"train": 3, "val": 1}, num_frames=32, size=48,
                                    seed=0)
    out = str(root / "records")
    for split in ("train", "val"):
        convert(videos["manifests"][split], output_dir=out, split=split, num_shards=2,
                clips_per_video=2, frame_size=40, progress=False)
    return [f"--train_files={out}/train-*", f"--val_files={out}/val-*"]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(cluster, task_type, index):
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@contextlib.contextmanager
def _processes(tmp_path):
    """Yields `launch(name, module, args, tf_config=None) -> Popen`; kills each group at exit."""
    started = []

    def launch(name, module, args, tf_config=None):
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        if tf_config:
            env["TF_CONFIG"] = tf_config
        out = open(tmp_path / f"{name}.out", "w")
        err = open(tmp_path / f"{name}.err", "w")
        proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=out,
                                stderr=err, start_new_session=True)
        proc.log_name = name
        started.append((proc, out, err))
        return proc

    try:
        yield launch
    finally:
        for proc, out, err in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.close()
            err.close()


@contextlib.contextmanager
def _cluster(tmp_path):
    """Yields `launch(name, args, tf_config=None) -> Popen` of sports1m-train processes."""
    with _processes(tmp_path) as launch:
        yield lambda name, args, tf_config=None: launch(name, "sports1m_tf.training.train", args,
                                                        tf_config)


def _finish(proc, tmp_path, timeout=PROCESS_TIMEOUT):
    """Waits for a run; returns its printed JSON result (fails with its log tail)."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    err = (tmp_path / f"{proc.log_name}.err").read_text()
    assert code == 0, f"{proc.log_name} exited with {code}:\n{err[-3000:]}"
    lines = (tmp_path / f"{proc.log_name}.out").read_text().strip().splitlines()
    return json.loads(lines[-1])


def _digest(model):
    import hashlib
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.numpy())).tobytes())
    return digest.hexdigest()


def test_tf_config_is_validated_with_clear_errors():
    bad = {
        '{"cluster": ': "not valid JSON",
        '["worker"]': "must be a JSON object",
        '{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}':
            "must be a non-empty list",
        '{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}':
            "expected 'host:port'",
        '{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}':
            "used by several tasks",
        '{"cluster": {"worker": ["a:1"]}}': "'task' must be an object",
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}':
            "not a job of the cluster",
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}':
            "out of range",
    }
    for text, message in bad.items():
        with pytest.raises(ValueError, match=message):
            distribute.parse_tf_config(text)
    assert distribute.parse_tf_config("") is None
    task = distribute.parse_tf_config(
        '{"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"], "ps": ["d:4"]}, '
        '"task": {"type": "worker", "index": 1}}')
    assert task.address == "c:3" and task.peers() == ["a:1", "d:4", "b:2"]
    assert not distribute.is_chief(task)
    assert distribute.resolve_strategy_name("auto", task, num_gpus=0) == "parameter_server"
    assert distribute.is_server_task("auto", task)
    with pytest.raises(ValueError, match="use --strategy=parameter_server"):
        distribute.resolve_strategy_name("multi_worker", task, num_gpus=0)
    workers = distribute.parse_tf_config(
        '{"cluster": {"worker": ["b:2", "c:3"]}, "task": {"type": "worker", "index": 0}}')
    assert distribute.is_chief(workers)
    assert distribute.resolve_strategy_name("auto", workers, num_gpus=0) == "multi_worker"
    assert distribute.resolve_strategy_name("auto", None, num_gpus=0, num_cpus=2) == "mirrored"
    assert distribute.resolve_strategy_name("auto", None, num_gpus=1) == "one_device"
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.resolve_strategy_name("parameter_server", None, num_gpus=0)
    port, = _free_ports(1)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
        distribute.wait_for_peers([f"127.0.0.1:{port}"], timeout_s=1.0)
    assert time.monotonic() - started < 10


def test_bad_tf_config_fails_fast_from_the_command(tmp_path, records):
    args = [*TINY, *records, f"--model_dir={tmp_path / 'run'}", "--train_steps=2"]
    with _cluster(tmp_path) as launch:
        # Both at once: each pays TensorFlow's start-up, and they share nothing.
        malformed = launch("malformed", args, tf_config='{"cluster": {"worker": [')
        # Worker 0 of a two-worker cluster whose worker 1 never starts.
        ports = _free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        started = time.monotonic()
        lonely = launch("lonely", [*args, "--peer_timeout=4"],
                        tf_config=_tf_config(cluster, "worker", 0))

        code = malformed.wait(60)
        assert code != 0
        assert "TF_CONFIG is not valid JSON" in (tmp_path / "malformed.err").read_text()
        code = lonely.wait(90)
        err = (tmp_path / "lonely.err").read_text()
        assert code != 0, err[-2000:]
        assert f"peers not reachable after 4 s: ['127.0.0.1:{ports[1]}']" in err
        assert time.monotonic() - started < 80


def _kill_at_first_checkpoint(procs, model_dir):
    """SIGKILLs `procs` as soon as a checkpoint exists; returns the latest one then."""
    import tensorflow as tf
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while tf.train.latest_checkpoint(str(model_dir)) is None:
        assert all(p.poll() is None for p in procs), "a process ended before its checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    for proc in procs:
        os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        assert proc.wait(30) == -signal.SIGKILL
    assert not (model_dir / run_folder.FINAL_MODEL_FILE).exists(), "finished before the kill"
    # Read after the kill: a save may have completed in between.
    return tf.train.latest_checkpoint(str(model_dir))


def test_mirrored_on_two_cpus_killed_mid_run_resumes_to_the_same_step(tmp_path, records):
    model_dir = tmp_path / "run"
    args = [*TINY, *records, f"--model_dir={model_dir}", "--strategy=mirrored",
            "--cpu_devices=2", "--train_steps=200", "--checkpoint_every=20",
            "--eval_every=100", "--log_every=20"]
    with _cluster(tmp_path) as launch:
        latest_at_kill = _kill_at_first_checkpoint([launch("first", args)], model_dir)
        second = launch("second", args)
        result = _finish(second, tmp_path)
    assert result["step"] == 200
    assert f"resumed from {latest_at_kill}" in (tmp_path / "second.err").read_text()
    assert run_folder.checkpoint_steps(str(model_dir))[-1] == 200
    run_config = run_folder.load_run_config(str(model_dir))
    assert run_config["replicas"] == 2 and run_config["resolved_strategy"] == "MirroredStrategy"
    assert "input wait" in (tmp_path / "second.err").read_text()
    assert _digest(run_folder.restore_model(str(model_dir))) == result["weights_sha256"]


def test_multi_worker_workers_end_with_identical_weights(tmp_path, records):
    model_dir = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    args = [*TINY, *records, f"--model_dir={model_dir}", "--train_steps=20",
            "--checkpoint_every=10", "--eval_every=20", "--log_every=10"]
    with _cluster(tmp_path) as launch:
        workers = [launch(f"worker{i}", args, tf_config=_tf_config(cluster, "worker", i))
                   for i in range(2)]
        results = [_finish(w, tmp_path) for w in workers]
    assert [r["step"] for r in results] == [20, 20]
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
    assert results[0]["validation"] == results[1]["validation"]
    assert results[0]["model_path"] and results[1]["model_path"] is None
    # Only the chief's checkpoints remain, and they restore the shared weights.
    assert run_folder.checkpoint_steps(str(model_dir)) == [10, 20]
    assert _digest(run_folder.restore_model(str(model_dir))) == results[0]["weights_sha256"]
    assert run_folder.load_run_config(str(model_dir))["replicas"] == 2
    assert all("input wait" in (tmp_path / f"worker{i}.err").read_text() for i in range(2))


def _ps_cluster() -> dict:
    """A chief, two workers and a parameter server on free local ports."""
    ports = iter(_free_ports(4))
    return {"chief": [f"127.0.0.1:{next(ports)}"],
            "worker": [f"127.0.0.1:{next(ports)}", f"127.0.0.1:{next(ports)}"],
            "ps": [f"127.0.0.1:{next(ports)}"]}


def test_parameter_servers_make_progress_and_count_steps_exactly(tmp_path, records):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    model_dir = tmp_path / "run"
    cluster = _ps_cluster()
    args = [*TINY, *records, f"--model_dir={model_dir}", "--train_steps=30",
            "--checkpoint_every=15", "--eval_every=30", "--log_every=10"]
    with _cluster(tmp_path) as launch:
        servers = [launch(f"{job}{i}", args, tf_config=_tf_config(cluster, job, i))
                   for job, i in (("ps", 0), ("worker", 0), ("worker", 1))]
        chief = launch("chief", args, tf_config=_tf_config(cluster, "chief", 0))
        result = _finish(chief, tmp_path)
        assert all(s.poll() is None for s in servers), "a ps/worker task died"
    assert result["step"] == 30 and np.isfinite(result["loss"])
    assert run_folder.checkpoint_steps(str(model_dir)) == [15, 30]
    events = EventAccumulator(str(model_dir / "train"), size_guidance={"tensors": 0})
    events.Reload()
    assert [e.step for e in events.Tensors("loss")] == [10, 20, 30]
    # The workers' waits for their own batches come back with the scheduled steps.
    waits = [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors("input_wait_fraction")]
    assert len(waits) == 3 and all(0 <= w <= 1 for w in waits), waits
    assert "input wait" in (tmp_path / "chief.err").read_text()
    run_config = run_folder.load_run_config(str(model_dir))
    assert run_config["resolved_strategy"] == "ParameterServerStrategyV2"
    assert _digest(run_folder.restore_model(str(model_dir))) == result["weights_sha256"]


@pytest.mark.slow
def test_multi_worker_killed_mid_run_resumes_to_the_same_step(tmp_path, records):
    model_dir = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    args = [*TINY, *records, f"--model_dir={model_dir}", "--train_steps=150",
            "--checkpoint_every=10", "--eval_every=150", "--log_every=10"]
    with _cluster(tmp_path) as launch:
        first = [launch(f"first{i}", args, tf_config=_tf_config(cluster, "worker", i))
                 for i in range(2)]
        latest_at_kill = _kill_at_first_checkpoint(first, model_dir)
        second = [launch(f"second{i}", args, tf_config=_tf_config(cluster, "worker", i))
                  for i in range(2)]
        results = [_finish(w, tmp_path) for w in second]
    assert [r["step"] for r in results] == [150, 150]
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
    for i in range(2):
        assert f"resumed from {latest_at_kill}" in (tmp_path / f"second{i}.err").read_text()
    assert run_folder.checkpoint_steps(str(model_dir))[-1] == 150


@pytest.mark.slow
def test_parameter_server_chief_killed_mid_run_resumes_to_the_same_step(tmp_path, records):
    model_dir = tmp_path / "run"
    cluster = _ps_cluster()
    args = [*TINY, *records, f"--model_dir={model_dir}", "--train_steps=150",
            "--checkpoint_every=10", "--eval_every=150", "--log_every=10"]
    with _cluster(tmp_path) as launch:
        for job, i in (("ps", 0), ("worker", 0), ("worker", 1)):
            launch(f"{job}{i}", args, tf_config=_tf_config(cluster, job, i))
        chief_config = _tf_config(cluster, "chief", 0)
        latest_at_kill = _kill_at_first_checkpoint([launch("first", args, chief_config)],
                                                   model_dir)
        # The ps and worker tasks keep serving; only the chief restarts.
        result = _finish(launch("second", args, chief_config), tmp_path)
    assert result["step"] == 150
    assert f"resumed from {latest_at_kill}" in (tmp_path / "second.err").read_text()
    assert run_folder.checkpoint_steps(str(model_dir))[-1] == 150
