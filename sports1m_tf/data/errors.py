"""Counting the records a pipeline skipped, per file.

`Dataset.ignore_errors` drops a failing element but neither counts it nor names
its file. Each fallible step runs through `ErrorCounter.guard`, which adds 1 to
the file's "started" count before the step and 1 to its "finished" count after
it: started − finished is the number of records that failed (exact once the
dataset is exhausted; while it runs, it also includes the few in flight). A
record whose work is split over two maps with a buffer between them (parsed
before the shuffle, decoded after it) is counted as "waiting" in between, so
that the records in the buffer are not taken for skipped ones.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import tensorflow as tf
from absl import logging

from sports1m_tf import cli
from sports1m_tf.data.inline_map import inline_map

# Records allowed over the skip budget: those being decoded when the counts are read
# (counted as started, not yet finished), and a little noise on small data.
DEFAULT_SLACK = 16 + 2 * (os.cpu_count() or 1)


class SkippedRecordsError(cli.UserError, ValueError):
    """Too many records failed to decode: the message lists the files and their counts."""


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

    def __init__(self, max_skipped_fraction: float | None = None, slack: int = DEFAULT_SLACK):
        """Args:
          max_skipped_fraction: float or None. A stream passed through `admit` ends
            once more than this fraction of its records (plus `slack`) failed, and
            `check_budget` raises; None: no fraction limit, but a stream that
            skipped `slack` records without yielding any still ends.
          slack: int. Failures allowed above the fraction (records in flight).
        """
        self._bindings: list[tuple[list[str], tf.Variable, tf.Variable]] = []
        self.max_skipped_fraction = max_skipped_fraction
        self.slack = int(slack)

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
        names = ("records_started", "records_finished", "records_waiting")
        with tf.init_scope():  # one count per file, then their total (read per record)
            counts = [tf.Variable(tf.zeros([len(files) + 1], tf.int64), trainable=False,
                                  name=name) for name in names]
        # Under a strategy's scope these are distributed variables, which a
        # tf.data function cannot update; one local copy is all a count needs.
        strategy = tf.distribute.get_strategy()
        counts = [strategy.experimental_local_results(v)[0] for v in counts]
        self._bindings.append((list(files), *counts))
        return len(self._bindings) - 1

    def guard(self, binding: int | None, file_index: tf.Tensor, step: Callable[..., object],
              *inputs: tf.Tensor):
        """Runs `step(*inputs)` (graph code) so that its failure is charged to `file_index`.

        Args:
          binding: The id returned by `bind` (None: no counting).
          file_index: int32 []. Index of the record's file in the bound list.
          step: callable taking `inputs` and returning a nested structure of
            tensors. Everything that can fail must be computed from `inputs`.
          *inputs: tensors. What the step reads of the record (e.g. the record).

        Returns:
          `step(*inputs)`'s result, which only becomes available after the count.
        """
        return self.finish(binding, file_index, step(*self.start(binding, file_index, *inputs)))

    def start(self, binding: int | None, file_index: tf.Tensor,
              *inputs: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Counts a record as started; returns `inputs`, available only after the count.

        The first half of `guard`: everything that can fail must be computed
        from the returned tensors, and `finish` (or `wait`) must follow once the
        record's outputs exist.
        """
        return self._add(binding, 1, file_index, 1, inputs)

    def finish(self, binding: int | None, file_index: tf.Tensor, result):
        """Counts a record as finished once every tensor of `result` exists; returns `result`."""
        return self._add_after(binding, 2, file_index, 1, result)

    def wait(self, binding: int | None, file_index: tf.Tensor, result):
        """Counts a started record as waiting (e.g. in a shuffle buffer) once `result` exists.

        Its work goes on in another map, which starts with `resume` and ends with
        `finish`: while it waits, the record is neither finished nor skipped.
        """
        return self._add_after(binding, 3, file_index, 1, result)

    def resume(self, binding: int | None, file_index: tf.Tensor,
               *inputs: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Ends a record's wait; returns `inputs`, available only after the count (as `start`)."""
        return self._add(binding, 3, file_index, -1, inputs)

    def _scatter_add(self, binding, which, file_index, amount) -> tf.Operation:
        """Adds `amount` (int64 []) to count `which` of the record's file and to its total."""
        files, *counts = self._bindings[binding]
        return tf.raw_ops.ResourceScatterAdd(
            resource=counts[which - 1].handle, indices=tf.stack([file_index, len(files)]),
            updates=tf.fill([2], tf.cast(amount, tf.int64)))

    def _totals(self, binding) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Started, finished and waiting records of all the binding's files (int64 [])."""
        files, *counts = self._bindings[binding]
        return tuple(tf.raw_ops.ResourceGather(resource=c.handle, indices=len(files),
                                               dtype=tf.int64) for c in counts)

    def _add(self, binding, which, file_index, amount, inputs):
        """Adds `amount` to the record's file in count `which`, then hands on `inputs`."""
        if binding is None:
            return inputs
        add = self._scatter_add(binding, which, file_index, amount)
        # The work must not run before the count, or a failing step would never be
        # counted. A control block is not enough: TF puts its edge only on the ops
        # whose inputs all come from outside it, and an op reading a captured
        # input can run, and fail, before the count (seen as a skipped record
        # counted 0 times). So the inputs gain and lose a dimension at an axis
        # read from the count after the addition: a data dependency that graph
        # optimisation cannot fold away, and no copy.
        with tf.control_dependencies([add]):
            counted = tf.raw_ops.ResourceGather(resource=self._bindings[binding][which].handle,
                                                indices=file_index, dtype=tf.int64)
        axis = tf.cast(tf.minimum(tf.abs(counted), 0), tf.int32)  # always 0, known only then
        return tuple(tf.reshape(tf.expand_dims(x, axis), tf.shape(x)) for x in inputs)

    def _add_after(self, binding, which, file_index, amount, result):
        """Adds `amount` to the record's file in count `which` once `result` exists."""
        if binding is None:
            return result
        # Runs only once every output exists, i.e. only if the work succeeded.
        with tf.control_dependencies(tf.nest.flatten(result)):
            done = self._scatter_add(binding, which, file_index, amount)
        with tf.control_dependencies([done]):
            return tf.nest.map_structure(tf.identity, result)

    def _over(self, skipped, read, finished):
        """The budget rule, for numbers or tensors alike."""
        fraction = self.max_skipped_fraction
        no_clip = (finished == 0) & (skipped >= self.slack) if isinstance(
            finished, tf.Tensor) else (finished == 0 and skipped >= self.slack)
        if fraction is None:
            return no_clip
        limit = fraction * tf.cast(read, tf.float64) if isinstance(read, tf.Tensor) \
            else fraction * read
        if isinstance(skipped, tf.Tensor):
            return no_clip | (tf.cast(skipped, tf.float64) > limit + self.slack)
        return no_clip or skipped > limit + self.slack

    def admit(self, ds: tf.data.Dataset, binding: int | None) -> tf.data.Dataset:
        """Counts each `(file_index, record)` of `ds` as started; ends `ds` once over the budget.

        Apply it to the records before their first fallible step (their work
        then ends with `finish`, or `wait` ... `resume` ... `finish`).
        `ignore_errors` swallows every error, so an endless stream whose records
        all fail would never yield; an end of stream passes through it (a repeat
        ends at its first empty pass), and the consumer then calls
        `check_budget` to say why. Per record this costs one small function on
        the single-threaded executor: the stream is cut by a `take_while` that
        only hands on a flag, which tf.data runs without calling a function.
        """
        if binding is None:
            return ds

        def count_if_within(file_index, record):
            read, done, parked = self._totals(binding)
            within = tf.logical_not(self._over(read - done - parked, read, done))
            self._scatter_add(binding, 1, file_index, within)  # a stateful op: always runs
            return within, file_index, record

        admitted = inline_map(ds, count_if_within, parallel=False)
        return inline_map(admitted.take_while(lambda within, *_: within),
                          lambda _, file_index, record: (file_index, record), parallel=False)

    def records_read(self) -> int:
        """Records the bound pipelines started to decode (including those that failed)."""
        return int(sum(int(b[1].numpy()[-1]) for b in self._bindings))

    def over_budget(self) -> bool:
        """Whether the skipped records exceed the budget (see `__init__`)."""
        read = self.records_read()
        done = sum(int(b[2].numpy()[-1]) for b in self._bindings)
        return bool(self._over(self.total(), read, done))

    def describe(self) -> str:
        """'N of M records skipped: file (n), ...', for logs and errors."""
        by_file = sorted(self.by_file().items(), key=lambda kv: -kv[1])
        files = ", ".join(f"{path} ({n})" for path, n in by_file[:10])
        more = f" and {len(by_file) - 10} more files" if len(by_file) > 10 else ""
        return (f"{sum(n for _, n in by_file)} of {self.records_read()} records skipped"
                f"{': ' + files + more if by_file else ''}")

    def budget_error(self) -> SkippedRecordsError:
        """The error that says which files' records were skipped, and the fix."""
        limit = ("" if self.max_skipped_fraction is None else
                 f" (more than --max_skipped_fraction={self.max_skipped_fraction:g})")
        return SkippedRecordsError(
            f"too many clip records could not be decoded{limit}: {self.describe()}. "
            "Check those files (sports1m-inspect), convert them again, or leave them "
            "out of the file list")

    def check_budget(self) -> None:
        """Raises `SkippedRecordsError` when the skipped records exceed the budget."""
        if self.over_budget():
            raise self.budget_error()

    def by_file(self) -> dict[str, int]:
        """Failed-record counts per file (files with no failure are left out)."""
        counts: dict[str, int] = {}
        for files, started, finished, waiting in self._bindings:
            # Finished first, then waiting, then started: a record counts in each
            # only after the one before, so reading in this order never gives a
            # negative count while decoding runs.
            done = finished.numpy()[:-1]
            parked = waiting.numpy()[:-1]
            failed = (started.numpy()[:-1] - done - parked).tolist()
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
