"""The `tf.distribute` strategy of a run, from `--strategy` and `TF_CONFIG`.

`auto` picks: a `TF_CONFIG` cluster with a `ps` job → parameter servers
(asynchronous, the paper's Downpour SGD analogue); a cluster with several
workers → `MultiWorkerMirroredStrategy` (synchronous); several local GPUs (or
several logical CPUs) → `MirroredStrategy`; else one device.

Distributed start-up hangs in TensorFlow when a peer is missing
(MultiWorkerMirroredStrategy waits for every worker's devices, inside C++; its
SIGTERM is caught by TF's preemption notifier). Here `TF_CONFIG` is validated
first, and every task waits for its peers' ports (`--peer_timeout`) before
TensorFlow connects to them: a missing peer is a clear `TimeoutError` naming it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
from typing import Mapping

from absl import logging

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "parameter_server")


@dataclasses.dataclass(frozen=True)
class ClusterTask:
    """This process's place in a `TF_CONFIG` cluster.

    Attributes:
      cluster: job name → list of "host:port".
      task_type: str. "chief", "worker", "ps" (or "evaluator").
      task_id: int. Index in its job.
    """
    cluster: Mapping[str, list]
    task_type: str
    task_id: int

    @property
    def address(self) -> str:
        return self.cluster[self.task_type][self.task_id]

    def peers(self) -> list[str]:
        """Every other task's address, in job order."""
        return [a for job in sorted(self.cluster) for i, a in enumerate(self.cluster[job])
                if (job, i) != (self.task_type, self.task_id)]


def _check_address(address, where: str) -> None:
    if not isinstance(address, str) or address.count(":") < 1:
        raise ValueError(f"TF_CONFIG: {where} is {address!r}, expected 'host:port'")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"TF_CONFIG: {where} is {address!r}, expected 'host:port' with a "
                         "port in 1..65535")


def parse_tf_config(text: str | None = None) -> ClusterTask | None:
    """Validates `TF_CONFIG` (the environment variable unless `text` is given).

    Args:
      text: The JSON text; defaults to `os.environ["TF_CONFIG"]`.

    Returns:
      A `ClusterTask`, or None when `TF_CONFIG` is unset or has no cluster.

    Raises:
      ValueError: malformed JSON, a job that is not a list of "host:port", a
        task type or index that the cluster does not have. The message says which.
    """
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text or not text.strip():
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {text[:200]!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
    cluster = config.get("cluster")
    if not cluster:
        return None
    if not isinstance(cluster, dict):
        raise ValueError("TF_CONFIG: 'cluster' must map job names to lists of 'host:port'")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(f"TF_CONFIG: cluster job {job!r} must be a non-empty list of "
                             f"'host:port', got {addresses!r}")
        for i, address in enumerate(addresses):
            _check_address(address, f"cluster[{job!r}][{i}]")
    all_addresses = [a for addresses in cluster.values() for a in addresses]
    duplicates = sorted({a for a in all_addresses if all_addresses.count(a) > 1})
    if duplicates:
        raise ValueError(f"TF_CONFIG: addresses used by several tasks: {duplicates}")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise ValueError("TF_CONFIG: 'task' must be an object with 'type' and 'index', "
                         f"got {task!r}")
    task_type, task_id = task["type"], task.get("index", 0)
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG: task type {task_type!r} is not a job of the cluster "
                         f"{sorted(cluster)}")
    if not isinstance(task_id, int) or not 0 <= task_id < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG: task index {task_id!r} is out of range for job "
                         f"{task_type!r} ({len(cluster[task_type])} tasks)")
    return ClusterTask(cluster=cluster, task_type=task_type, task_id=task_id)


def unreachable(addresses: list[str], timeout_s: float = 1.0) -> list[str]:
    """The addresses that do not accept a TCP connection within `timeout_s` each."""
    missing = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                pass
        except OSError:
            missing.append(address)
    return missing


def wait_for_peers(addresses: list[str], timeout_s: float, poll_s: float = 0.5) -> None:
    """Waits until every address accepts TCP connections.

    Raises:
      TimeoutError: some are still unreachable after `timeout_s`; names them.
    """
    deadline = time.monotonic() + timeout_s
    missing = list(addresses)
    while True:
        missing = unreachable(missing)
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"cluster peers not reachable after {timeout_s:.0f} s: {missing} "
                "(check TF_CONFIG and that those tasks are running)")
        time.sleep(poll_s)


def rendezvous(task: ClusterTask, timeout_s: float) -> None:
    """Waits until every peer of a synchronous cluster is up, before TensorFlow starts.

    MultiWorkerMirroredStrategy's constructor blocks inside TensorFlow (holding
    Python's GIL: no watchdog thread can run) until every worker has started, so
    the wait happens here first. Each task listens on its own TF_CONFIG port with
    a plain socket meanwhile, so that peers waiting in the same way see it; it
    closes the socket once all peers answered, and TensorFlow's server then
    takes the port.

    Raises:
      ValueError: this task's own address cannot be listened on.
      TimeoutError: peers still unreachable after `timeout_s` (names them).
    """
    host, _, port = task.address.rpartition(":")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(port)))
        listener.listen(64)
    except OSError as e:
        listener.close()
        raise ValueError(f"TF_CONFIG: this task ({task.task_type}:{task.task_id}) cannot "
                         f"listen on {task.address}: {e}") from None
    try:
        wait_for_peers(task.peers(), timeout_s)
    finally:
        listener.close()


def resolve_strategy_name(name: str, task: ClusterTask | None, num_gpus: int,
                          num_cpus: int = 1) -> str:
    """The concrete strategy for `--strategy=name` given the cluster and local devices.

    Raises:
      ValueError: the name is unknown or does not fit the cluster.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")
    jobs = set(task.cluster) if task else set()
    if name == "auto":
        if "ps" in jobs:
            name = "parameter_server"
        elif task and sum(len(task.cluster[j]) for j in jobs & {"chief", "worker"}) > 1:
            name = "multi_worker"
        elif num_gpus > 1 or (num_gpus == 0 and num_cpus > 1):
            name = "mirrored"
        else:
            name = "one_device"
    if name == "parameter_server":
        if not task or not {"ps", "worker", "chief"} <= jobs:
            raise ValueError("--strategy=parameter_server needs TF_CONFIG with 'chief', "
                             f"'worker' and 'ps' jobs; cluster jobs: {sorted(jobs) or 'none'}")
    if name == "multi_worker" and task and "ps" in jobs:
        raise ValueError("--strategy=multi_worker with a 'ps' job in TF_CONFIG: use "
                         "--strategy=parameter_server (or auto)")
    return name


def split_cpu(num_devices: int) -> None:
    """Splits the CPU into `num_devices` logical devices (before TF initialises them).

    Lets MirroredStrategy's multi-replica path run on a machine without GPUs.
    """
    import tensorflow as tf
    if num_devices > 1 and not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name: str = "auto", *, peer_timeout: float = 120.0):
    """Builds the strategy for `--strategy=name`.

    Args:
      name: one of `STRATEGIES`.
      peer_timeout: Seconds to wait for the cluster's other tasks.

    Returns:
      `(strategy, task)`: the `tf.distribute.Strategy` and this process's
      `ClusterTask` (None without `TF_CONFIG`).

    Raises:
      ValueError: malformed `TF_CONFIG`, a strategy that does not fit it, or a
        parameter-server ps/worker task (see `is_server_task`).
      TimeoutError: parameter-server peers unreachable after `peer_timeout`.
    """
    import tensorflow as tf

    task = parse_tf_config()
    # Physical devices only: collective ops (multi-worker) must be configured
    # before TensorFlow's runtime starts, and listing logical devices starts it.
    gpus = tf.config.list_physical_devices("GPU")
    cpus = tf.config.list_physical_devices("CPU")
    logical_cpus = len(tf.config.get_logical_device_configuration(cpus[0]) or [None])
    concrete = resolve_strategy_name(name, task, len(gpus), logical_cpus)
    logging.info("strategy: %s (requested %s)%s", concrete, name,
                 f"; task {task.task_type}:{task.task_id}" if task else "")
    if concrete == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0"), task
    if concrete == "mirrored":
        devices = [f"/gpu:{i}" for i in range(len(gpus))] or [
            f"/cpu:{i}" for i in range(logical_cpus)]
        return tf.distribute.MirroredStrategy(devices), task
    if concrete == "multi_worker":
        if task is not None:
            rendezvous(task, peer_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(), task
    # Parameter servers: the ps and worker tasks are plain servers (`serve_forever`)
    # started on their own, so the chief can wait for them before connecting.
    if task.task_type != "chief":
        raise ValueError(f"task {task.task_type}:{task.task_id} of a parameter-server "
                         "cluster runs `serve_forever`, not a strategy")
    wait_for_peers(task.peers(), peer_timeout)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(task.cluster), task_type="chief", task_id=0, rpc_layer="grpc")
    return tf.distribute.experimental.ParameterServerStrategy(resolver), task


def is_server_task(name: str, task: ClusterTask | None) -> bool:
    """Whether this process is a ps or worker task of a parameter-server cluster."""
    if task is None or task.task_type not in ("ps", "worker"):
        return False
    return resolve_strategy_name(name, task, num_gpus=0) == "parameter_server"


def serve_forever(task: ClusterTask) -> None:
    """Runs this process as a parameter-server cluster's ps or worker task (never returns)."""
    import tensorflow as tf
    logging.info("serving as %s:%d at %s", task.task_type, task.task_id, task.address)
    server = tf.distribute.Server(tf.train.ClusterSpec(task.cluster), job_name=task.task_type,
                                  task_index=task.task_id, protocol="grpc", start=True)
    server.join()


def is_chief(task: ClusterTask | None) -> bool:
    """Whether this process writes checkpoints and summaries (chief, or worker 0 without one)."""
    if task is None:
        return True
    if task.task_type == "chief":
        return True
    return task.task_type == "worker" and task.task_id == 0 and "chief" not in task.cluster


def make_agree(strategy):
    """A function `agree(value) -> value` that makes a float identical on every worker.

    Every MultiWorkerMirrored worker runs the same validation, but a differently
    rounded result must not let their learning rates diverge: the mean over
    workers is what each uses. Under any other strategy it returns its argument.
    """
    import tensorflow as tf
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return lambda value: value

    @tf.function
    def mean_over_workers(value):
        per_replica = strategy.run(tf.identity, args=(value,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    return lambda value: float(mean_over_workers(tf.constant(value, tf.float64)))


def make_step_runner(train_step, iterator, coordinator=None):
    """`run_steps(count, traced_from=None) -> (losses, input_seconds)`: runs `count` steps.

    `input_seconds` is the time the steps waited for their batches, summed over
    them (under parameter servers, over every worker's steps: they overlap).
    Synchronous strategies stop at the first non-finite loss; under parameter
    servers (`coordinator` given) the steps are scheduled on the workers and
    every loss comes back. With `traced_from` (the steps done before), each
    step is marked as one for a running profiler's step-time pages.
    """
    import contextlib

    import tensorflow as tf

    def run_steps(count: int, traced_from: int | None = None) -> tuple[list[float], float]:
        if coordinator is not None:
            scheduled = [coordinator.schedule(train_step, args=(iterator,))
                         for _ in range(count)]
            coordinator.join()
            results = [value.fetch() for value in scheduled]
            return [float(loss) for loss, _ in results], sum(float(s) for _, s in results)
        losses, waited = [], 0.0
        for i in range(count):
            with (contextlib.nullcontext() if traced_from is None else
                  tf.profiler.experimental.Trace("train", step_num=traced_from + i + 1, _r=1)):
                loss, seconds = train_step(iterator)
                losses.append(float(loss))
            waited += float(seconds)
            if not math.isfinite(losses[-1]):
                break
        return losses, waited

    return run_steps
