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

    def bind(self, files: Sequence[str]) -> int:
        """Registers the files of one pipeline; returns the binding id used by `guard`."""
        # init_scope: datasets may be built inside a tf.function (e.g.
        # distribute_datasets_from_function); the counters must be eager variables.
        with tf.init_scope():
            started = tf.Variable(tf.zeros([len(files)], tf.int64), trainable=False,
                                  name="records_started")
            finished = tf.Variable(tf.zeros([len(files)], tf.int64), trainable=False,
                                   name="records_finished")
        self._bindings.append((list(files), started, finished))
        return len(self._bindings) - 1

    def guard(self, binding: int, file_index: tf.Tensor, step: Callable[[], object]):
        """Runs `step()` (graph code) so that its failure is charged to `file_index`.

        Args:
          binding: int. The id returned by `bind`.
          file_index: int32 []. Index of the record's file in the bound list.
          step: callable returning a nested structure of tensors.

        Returns:
          `step()`'s result, which only becomes available after the count.
        """
        _, started, finished = self._bindings[binding]
        one = tf.IndexedSlices(tf.ones([1], tf.int64), tf.reshape(file_index, [1]))
        with tf.control_dependencies([started.scatter_add(one)]):
            result = step()
        flat = tf.nest.flatten(result)
        with tf.control_dependencies(flat):
            done = finished.scatter_add(one)
        with tf.control_dependencies([done]):
            return tf.nest.pack_sequence_as(result, [tf.identity(t) for t in flat])

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
