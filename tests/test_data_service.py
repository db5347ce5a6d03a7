"""sports1m-train through tf.data service: real dispatcher and worker processes on 127.0.0.1.

A dispatcher with a journal and two workers (`sports1m-data-service`), each its
own process; trainers under one_device and MultiWorkerMirrored; a worker killed
with SIGKILL and the dispatcher killed and restarted from its work dir while a
run goes on; an address where no dispatcher answers. The two fault and cluster
tests take about 1.5 min each on 2 cores (marked slow).
"""
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from test_distributed import (PROCESS_TIMEOUT, TINY, _digest, _finish, _free_ports,  # noqa: F401
                              _processes, _tf_config, records)

from sports1m_tf import run_folder
from sports1m_tf.data import service as data_service

TRAIN = "sports1m_tf.training.train"
SERVICE = "sports1m_tf.training.data_service"
# Seconds to wait for a server's "listening" line (TensorFlow's import is most of it).
START_TIMEOUT = 90


def _wait_for_line(proc, tmp_path, text, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    log = tmp_path / f"{proc.log_name}.err"
    while text not in log.read_text():
        assert proc.poll() is None, f"{proc.log_name} ended:\n{log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"{proc.log_name} never logged {text!r}"
        time.sleep(0.1)


def _kill(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def _wait_for_checkpoint(trainers, model_dir, after=0):
    """Waits for a checkpoint past step `after` while every trainer runs; returns its step."""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while True:
        steps = run_folder.checkpoint_steps(str(model_dir)) if model_dir.exists() else []
        if steps and steps[-1] > after:
            return steps[-1]
        assert all(t.poll() is None for t in trainers), "a trainer ended early"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


class Service:
    """A dispatcher with a journal and two workers, started as processes."""

    def __init__(self, launch, tmp_path, wait=True):
        self.launch, self.tmp_path = launch, tmp_path
        self.port, = _free_ports(1)
        self.work_dir = tmp_path / "dispatcher_journal"
        self.target = f"grpc://127.0.0.1:{self.port}"
        self.dispatcher = self.start_dispatcher("dispatcher")
        self.workers = [self.start_worker(f"service_worker{i}") for i in range(2)]
        if wait:
            self.wait_listening()

    def wait_listening(self):
        for proc in [self.dispatcher, *self.workers]:
            _wait_for_line(proc, self.tmp_path, "listening on")

    def start_dispatcher(self, name):
        return self.launch(name, SERVICE, ["--role=dispatcher", f"--port={self.port}",
                                           f"--work_dir={self.work_dir}", "--worker_timeout=5"])

    def start_worker(self, name):
        return self.launch(name, SERVICE, ["--role=worker", f"--dispatcher=127.0.0.1:{self.port}",
                                           "--worker_host=127.0.0.1"])

    def journal_holds(self, model_dir, start_step=0):
        """Whether the dispatcher's journal names this run's job (proof the run used it)."""
        name = data_service.job_name(str(model_dir), start_step).encode()
        return any(name in (pathlib.Path(root) / f).read_bytes()
                   for root, _, files in os.walk(self.work_dir) for f in files)


def _train_args(records, model_dir, steps, every):
    return [*TINY, *records, f"--model_dir={model_dir}", f"--train_steps={steps}",
            f"--checkpoint_every={every}", f"--eval_every={steps}", f"--log_every={every}"]


def test_one_device_training_through_the_service_reaches_its_final_step(tmp_path, records):
    model_dir = tmp_path / "run"
    with _processes(tmp_path) as launch:
        # The trainer starts with the servers (it waits up to --peer_timeout for the
        # dispatcher): their TensorFlow start-ups overlap.
        service = Service(launch, tmp_path, wait=False)
        trainer = launch("trainer", TRAIN, [*_train_args(records, model_dir, 12, 6),
                                            f"--data_service={service.target}"])
        service.wait_listening()
        result = _finish(trainer, tmp_path)
        assert service.journal_holds(model_dir)
        # Servers end cleanly on either signal.
        service.workers[0].send_signal(signal.SIGTERM)
        service.dispatcher.send_signal(signal.SIGINT)
        assert service.workers[0].wait(30) == 0 and service.dispatcher.wait(30) == 0
    assert "SIGINT: stopping the dispatcher" in (tmp_path / "dispatcher.err").read_text()
    assert result["step"] == 12 and result["validation"]["clips"] > 0
    assert run_folder.checkpoint_steps(str(model_dir)) == [6, 12]
    assert run_folder.load_run_config(str(model_dir))["data_service"] == service.target
    # The wait for the service's batches is measured like a local pipeline's.
    assert "input wait" in (tmp_path / "trainer.err").read_text()
    assert [s for s, _ in _wait_scalars(model_dir)] == [6, 12]


def _wait_scalars(model_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util
    events = EventAccumulator(str(model_dir / "train"), size_guidance={"tensors": 0})
    events.Reload()
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
            for e in events.Tensors("input_wait_fraction")]


@pytest.mark.slow  # about 90 s on 2 cores
def test_run_survives_a_killed_worker_and_a_restarted_dispatcher(tmp_path, records):
    model_dir = tmp_path / "run"
    with _processes(tmp_path) as launch:
        service = Service(launch, tmp_path)
        trainer = launch("trainer", TRAIN, [*_train_args(records, model_dir, 60, 5),
                                            f"--data_service={service.target}"])
        at = _wait_for_checkpoint([trainer], model_dir)
        _kill(service.workers[1])
        at = _wait_for_checkpoint([trainer], model_dir, after=at)
        _kill(service.dispatcher)
        restarted = service.start_dispatcher("dispatcher_restarted")
        _wait_for_line(restarted, tmp_path, "listening on")
        # The workers ask the dispatcher for each next record file: without it the
        # run cannot reach its end, so it goes on because of the restart.
        assert trainer.poll() is None, "the run ended without the dispatcher"
        replacement = service.start_worker("service_worker_replacement")
        result = _finish(trainer, tmp_path)
        assert restarted.poll() is None and replacement.poll() is None
    assert result["step"] == 60
    assert run_folder.checkpoint_steps(str(model_dir))[-1] == 60


@pytest.mark.slow  # about 85 s on 2 cores
def test_multi_worker_through_the_service_ends_with_identical_weights(tmp_path, records):
    model_dir = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    with _processes(tmp_path) as launch:
        service = Service(launch, tmp_path)
        args = [*_train_args(records, model_dir, 10, 10), f"--data_service={service.target}"]
        trainers = [launch(f"trainer{i}", TRAIN, args,
                           tf_config=_tf_config(cluster, "worker", i)) for i in range(2)]
        results = [_finish(t, tmp_path) for t in trainers]
        assert service.journal_holds(model_dir)
    assert [r["step"] for r in results] == [10, 10]
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
    assert _digest(run_folder.restore_model(str(model_dir))) == results[0]["weights_sha256"]


def test_unreachable_dispatcher_is_a_clear_error_within_the_timeout(tmp_path, records):
    port, = _free_ports(1)
    with _processes(tmp_path) as launch:
        trainer = launch("trainer", TRAIN, [*_train_args(records, tmp_path / "run", 2, 1),
                                            f"--data_service=grpc://127.0.0.1:{port}",
                                            "--peer_timeout=2"])
        code = trainer.wait(PROCESS_TIMEOUT)
    err = (tmp_path / "trainer.err").read_text()
    assert code == 1, err[-2000:]
    assert f"error: no tf.data service dispatcher answers at 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_bad_addresses_and_roles_are_one_line_errors():
    from sports1m_tf import cli
    assert data_service.split_target("grpc://host-1:5050") == ("grpc", "host-1:5050")
    assert data_service.split_target("127.0.0.1:5050") == ("grpc", "127.0.0.1:5050")
    for bad in ("http://host:5050", "grpc://host", "grpc://:5050", "host:port"):
        with pytest.raises(cli.UserError, match="expected grpc://HOST:PORT"):
            data_service.split_target(bad)
    cases = {(): "--role is required", ("--role=worker",): "--dispatcher=HOST:PORT is required",
             ("--role=dispatcher",): "--port is required",
             ("--role=worker", "--dispatcher=h:1", "--work_dir=/tmp/x"): "--work_dir is for"}
    for args, message in cases.items():
        done = subprocess.run([sys.executable, "-m", SERVICE, *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 1, done.stderr[-2000:]
        assert message in done.stderr and "Traceback" not in done.stderr
