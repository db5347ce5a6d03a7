"""Counting the records a pipeline skipped, per file.

`Dataset.ignore_errors` drops a failing element but neither counts it nor names
its file. Each fallible step runs through `ErrorCounter.guard`, which adds 1 to
the file's "started" count before the step and 1 to its "finished" count after
it: started − finished is the number of records that failed (exact once the
dataset is exhausted; while it runs, it also includes the few in flight).
"""
from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf
from absl import logging


class ErrorCounter:
    """Counts records skipped by `clip_dataset` / `eval_dataset`, per file.

    Example:
      counter = ErrorCounter()
      ds = clip_dataset("train-*.tfrecord", model="single_frame", training=True,
                        batch_size=32, num_classes=487, error_counter=counter)
      for frames, target in ds: ...
      counter.log_summary()          # one warning line per file with failures
      counter.total()                # int
    """

    def __init__(self):
        self._bindings: list[tuple[list[str], tf.Variable, tf.Variable]] = []

    def bind(self, files: Sequence[str]) -> int | None:
        """Registers the files of one pipeline; returns the binding id used by `guard`.

        Returns None (counting off) when called while a function is being
        traced, e.g. by `ClusterCoordinator.create_per_worker_dataset`: a
        counter made there would live on the coordinator, which the workers'
        pipelines may not reach. Failing records are still skipped.
        """
        if tf.inside_function():
            logging.info("dataset built inside a tf.function: skipped records are not counted")
            return None
        with tf.init_scope():
            started, finished = (tf.Variable(tf.zeros([len(files)], tf.int64), trainable=False,
                                             name=name)
                                 for name in ("records_started", "records_finished"))
        # Under a strategy's scope these are distributed variables, which a
        # tf.data function cannot update; one local copy is all a count needs.
        strategy = tf.distribute.get_strategy()
        started, finished = (strategy.experimental_local_results(v)[0]
                             for v in (started, finished))
        self._bindings.append((list(files), started, finished))
        return len(self._bindings) - 1

    def guard(self, binding: int | None, file_index: tf.Tensor, step: Callable[[], object]):
        """Runs `step()` (graph code) so that its failure is charged to `file_index`.

        Args:
          binding: int or None. The id returned by `bind` (None: no counting).
          file_index: int32 []. Index of the record's file in the bound list.
          step: callable returning a nested structure of tensors.

        Returns:
          `step()`'s result, which only becomes available after the count.
        """
        if binding is None:
            return step()
        _, started, finished = self._bindings[binding]
        one = tf.constant(1, tf.int64)
        start = tf.raw_ops.ResourceScatterAdd(resource=started.handle, indices=file_index,
                                              updates=one)
        # `control_dependencies([start])` around step() alone is not enough: TF puts
        # the control edge only on the step's ops whose inputs all come from outside
        # the block (often just its constants), and an op that reads a captured
        # input can then run, and fail, before `start` (seen as a skipped record
        # counted 0 times). A predicate read from the counter after `start`
        # makes the whole step wait for it: a cond's branches run after its predicate.
        with tf.control_dependencies([start]):
            counted = tf.raw_ops.ReadVariableOp(resource=started.handle, dtype=tf.int64)
        result = tf.cond(tf.reduce_all(counted >= 0), step, step)  # always true
        # Runs only once every output exists, i.e. only if the step succeeded.
        with tf.control_dependencies(tf.nest.flatten(result)):
            done = tf.raw_ops.ResourceScatterAdd(resource=finished.handle, indices=file_index,
                                                 updates=one)
        with tf.control_dependencies([done]):
            return tf.nest.map_structure(tf.identity, result)

    def by_file(self) -> dict[str, int]:
        """Failed-record counts per file (files with no failure are left out)."""
        counts: dict[str, int] = {}
        for files, started, finished in self._bindings:
            failed = (started.numpy() - finished.numpy()).tolist()
            for path, n in zip(files, failed):
                if n:
                    counts[path] = counts.get(path, 0) + int(n)
        return counts

    def total(self) -> int:
        """Number of records skipped so far, over all files."""
        return sum(self.by_file().values())

    def log_summary(self) -> None:
        """Logs one warning per file that had skipped records."""
        for path, n in sorted(self.by_file().items()):
            logging.warning("skipped %d undecodable or invalid clip record(s) in %s", n, path)
