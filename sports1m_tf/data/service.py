"""Training input through tf.data service: the per-clip pipeline runs on remote CPU workers.

A dispatcher (`sports1m-data-service --role=dispatcher`) hands out the work;
any number of workers (`--role=worker`) read the records, decode the frames,
crop, flip and batch; a trainer only receives finished batches. This module is
the trainer's side: one call turns the training settings into a dataset whose
elements come from the service.

Sharding is dynamic: the dispatcher deals the record files out to the workers
one at a time, so within one pass over the files each clip is produced by one
worker only, and a pass ends only when every file has been dealt. The training
stream repeats without end, so passes follow each other and the
dispatcher simply deals the files again; a file dealt to a worker that then
dies is lost for that pass (the other workers carry on), never duplicated.

All trainers of one run (every MultiWorkerMirrored worker) read from one shared
job: each batch goes to exactly one trainer, none is read twice, and since every
trainer takes exactly one batch per replica per step from an endless stream, none
gets more or fewer batches than its peers.
"""
from __future__ import annotations

import hashlib
import os
from typing import Sequence

import tensorflow as tf

from sports1m_tf import cli, distribute
from sports1m_tf.data.clip_dataset import clip_dataset
from sports1m_tf.data.errors import ErrorCounter

PROTOCOL = "grpc"


class DispatcherUnreachable(cli.UserError):
    """No tf.data service dispatcher answers at the given address."""


class _Uncounted(ErrorCounter):
    """Skips bad records without counting them.

    The counts live in the trainer's variables, which a pipeline serialised to the
    service's workers cannot reach (each worker logs its own skipped records).
    """

    def bind(self, files: Sequence[str]) -> None:
        return None


def split_target(target: str) -> tuple[str, str]:
    """`grpc://HOST:PORT` (or `HOST:PORT`) → (protocol, "HOST:PORT").

    Raises:
      cli.UserError: not of that form.
    """
    protocol, sep, address = target.rpartition("://")
    protocol = protocol if sep else PROTOCOL
    host, _, port = address.rpartition(":")
    if protocol != PROTOCOL or not host or not port.isdigit():
        raise cli.UserError(
            f"--data_service={target!r}: expected grpc://HOST:PORT, the address of a "
            "dispatcher started with `sports1m-data-service --role=dispatcher --port=PORT`")
    return protocol, address


def check_dispatcher(target: str, timeout_s: float) -> None:
    """Waits until the dispatcher at `target` accepts connections.

    Without this check an unreachable dispatcher makes the first batch wait
    inside TensorFlow, retrying for a very long time without a word.

    Raises:
      DispatcherUnreachable: nothing answers within `timeout_s`; names the address.
    """
    _, address = split_target(target)
    try:
        distribute.wait_for_peers([address], timeout_s=timeout_s)
    except TimeoutError:
        raise DispatcherUnreachable(
            f"no tf.data service dispatcher answers at {address} (--data_service={target}) "
            f"after {timeout_s:.0f} s: start one with `sports1m-data-service --role=dispatcher "
            f"--port={address.rpartition(':')[2]}` or fix the address") from None


def job_name(model_dir: str, start_step: int) -> str:
    """The service job shared by every trainer of one run that starts at `start_step`.

    Trainers of one run agree on both; a different run (or the same run resumed
    from another checkpoint) gets a job of its own on a shared dispatcher.
    """
    digest = hashlib.sha256(os.path.normpath(model_dir).encode()).hexdigest()[:16]
    return f"sports1m-train-{digest}-step{start_step}"


def service_training_dataset(file_pattern, *, service: str, job_name: str, seed: int,
                             **clip_dataset_args) -> tf.data.Dataset:
    """`clip_dataset(..., training=True, repeat=-1)` computed by the tf.data service.

    Args:
      file_pattern: Record globs or paths; the workers open
        the files themselves, so the paths must mean the same files there
        (a shared file system or `gs://`).
      service: `grpc://HOST:PORT` of the dispatcher.
      job_name: The same for every trainer of the run (`job_name()`).
      seed: The same for every trainer: the job's dataset must be identical
        for all of them (the dispatcher refuses a different one under one name).
      **clip_dataset_args: `clip_dataset` arguments (model, batch_size,
        num_classes, input_size, flip, shuffle_buffer, ...).

    Returns:
      A `tf.data.Dataset` of `(frames, target)` batches, endless.
    """
    dataset = clip_dataset(file_pattern, training=True, repeat=-1, seed=seed,
                           error_counter=_Uncounted(), **clip_dataset_args)
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=service, job_name=job_name))
