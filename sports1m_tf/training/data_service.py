"""sports1m-data-service: a tf.data service dispatcher or worker that prepares training input.

TensorFlow's tf.data service runs the training input pipeline (read, parse,
decode the frames a model needs, crop, flip, batch) on CPU machines other than
the trainers'. Start one dispatcher, then any number of workers (one per
machine, each using all of its cores), then train with
`sports1m-train --data_service=grpc://DISPATCHER_HOST:PORT`. Workers may join or
leave while a run goes on; a dispatcher given --work_dir keeps a journal there,
and a dispatcher restarted with the same --work_dir and --port resumes its jobs.
Each server runs until SIGTERM or SIGINT (Ctrl-C), then exits with status 0.

Usage:
  sports1m-data-service --role=dispatcher --port=5050 --work_dir=/shared/data_service
  sports1m-data-service --role=worker --dispatcher=dispatcher-host:5050 --port=5051 \
      --worker_host=$(hostname)
"""
from __future__ import annotations

import signal
import socket
import threading
from typing import Sequence

from absl import app, flags, logging

from sports1m_tf import cli

FLAGS = flags.FLAGS
ROLES = ("dispatcher", "worker")
# How often the main thread looks at the stop request (signal handlers only set it).
_POLL_SECONDS = 0.2


def define_flags() -> None:
    """Declares the command's flags (at run time, so tests can import the module)."""
    own = [
        (flags.DEFINE_enum, "role", None, "dispatcher: hands out work and tracks jobs (one per "
         "cluster). worker: runs input pipelines (one per CPU machine).", ROLES),
        (flags.DEFINE_integer, "port", None, "Port to listen on. Required for the "
         "dispatcher (trainers and workers connect to it; 0 = any free port, logged); "
         "a worker defaults to any free port."),
        (flags.DEFINE_string, "work_dir", None, "Dispatcher: folder for its journal (fault "
         "tolerance: restarted with the same folder and port, it resumes its jobs). On a "
         "disk that outlives the dispatcher's machine if that may be replaced."),
        (flags.DEFINE_float, "worker_timeout", 60.0, "Dispatcher: seconds without a "
         "heartbeat after which a worker counts as gone and its work is given to others."),
        (flags.DEFINE_string, "dispatcher", None, "Worker: the dispatcher's HOST:PORT "
         "(grpc:// optional)."),
        (flags.DEFINE_string, "worker_host", None, "Worker: the host name trainers use to "
         "reach this worker (default: this machine's name). Trainers fetch batches from "
         "workers directly."),
    ]
    for define, name, default, help_text, *enum in own:
        if name not in FLAGS:
            if enum:
                define(name, default, enum[0], help_text)
            else:
                define(name, default, help_text)


def _check_flags() -> None:
    if FLAGS.role is None:
        raise cli.UserError("--role is required: dispatcher or worker")
    if FLAGS.role == "dispatcher":
        if FLAGS.port is None:
            raise cli.UserError("--port is required for --role=dispatcher "
                                "(trainers and workers need to know it)")
        if FLAGS.dispatcher:
            raise cli.UserError("--dispatcher is for --role=worker; a dispatcher takes --port")
    elif not FLAGS.dispatcher:
        raise cli.UserError("--dispatcher=HOST:PORT is required for --role=worker")
    elif FLAGS.work_dir:
        raise cli.UserError("--work_dir is for --role=dispatcher; workers keep no state")
    if FLAGS.port is not None and not 0 <= FLAGS.port < 65536:
        raise cli.UserError(f"--port={FLAGS.port} is not a port number (0-65535)")


def start_dispatcher(port: int, work_dir: str | None, worker_timeout_s: float):
    """Starts a dispatcher; returns `(server, "grpc://HOST:PORT")`."""
    import tensorflow as tf
    service = tf.data.experimental.service
    config = service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir),
        worker_timeout_ms=int(worker_timeout_s * 1000))
    server = service.DispatchServer(config)
    return server, f"grpc://{socket.gethostname()}:{server.target.rpartition(':')[2]}"


def start_worker(dispatcher: str, port: int, worker_host: str):
    """Starts a worker registered with `dispatcher`; returns `(server, "HOST:PORT")`."""
    import tensorflow as tf
    service = tf.data.experimental.service
    dispatcher = dispatcher.split("://", 1)[-1]
    # "%port%" is replaced by the port the worker really bound (any free one for 0).
    server = service.WorkerServer(service.WorkerConfig(
        dispatcher_address=dispatcher, worker_address=f"{worker_host}:%port%", port=port))
    bound = server._address.rpartition(":")[2]  # the only public view is the config's 0
    return server, f"{worker_host}:{bound}"


def _wait_for_stop() -> str:
    """Blocks until SIGTERM or SIGINT; returns the signal's name."""
    received: list[str] = []
    stop = threading.Event()

    def handle(signum, frame):
        received.append(signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)
    # The main thread waits in Python, where handlers run at once: the entry's
    # watchdog for a main thread stuck in TensorFlow (fed by the wake-up fd) is
    # not needed, and would end the process with 130 instead of 0.
    signal.set_wakeup_fd(-1)
    while not stop.wait(_POLL_SECONDS):
        pass
    return received[0]


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _check_flags()
    if FLAGS.role == "dispatcher":
        server, address = start_dispatcher(FLAGS.port, FLAGS.work_dir, FLAGS.worker_timeout)
        logging.info("tf.data service dispatcher listening on %s (%s); train with "
                     "--data_service=%s", address,
                     f"journal in {FLAGS.work_dir}" if FLAGS.work_dir
                     else "no --work_dir: its jobs do not survive a restart", address)
    else:
        host = FLAGS.worker_host or socket.gethostname()
        server, address = start_worker(FLAGS.dispatcher, FLAGS.port or 0, host)
        logging.info("tf.data service worker listening on %s for dispatcher %s",
                     address, FLAGS.dispatcher)
    name = _wait_for_stop()
    logging.info("%s: stopping the %s at %s", name, FLAGS.role, address)
    server.stop()


run = cli.entry(main, define=define_flags)


if __name__ == "__main__":
    run()
