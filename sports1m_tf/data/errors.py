"""Counting the records a pipeline skipped, per file.

`Dataset.ignore_errors` drops a failing element but neither counts it nor names
its file. Each fallible step runs through `ErrorCounter.guard`, which adds 1 to
the file's "started" count before the step and 1 to its "finished" count after
it: started − finished is the number of records that failed (exact once the
dataset is exhausted; while it runs, it also includes the few in flight). A
record whose work is split over two maps with a buffer between them (parsed
before the shuffle, decoded after it) is counted as "waiting" in between, so
that the records in the buffer are not taken for skipped ones.

It also holds what went wrong below the records: shards found cut short or
corrupt when the pipeline was built, and shards that were gone or changed when a
pass came to read them (`read_watch`; each such pass also counts one skipped
record of the file), and how many records each kind of `record_check` problem
made the pipeline skip.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Callable, Iterator, Sequence

import tensorflow as tf
from absl import logging

from sports1m_tf import cli
from sports1m_tf.data.inline_map import inline_map

# Records allowed over the skip budget: those being decoded when the counts are read
# (counted as started, not yet finished), and a little noise on small data.
DEFAULT_SLACK = 16 + 2 * (os.cpu_count() or 1)
# A stream ends once this many records in a row failed: a stream whose records
# all fail yields nothing, and would otherwise retry them for ever.
DEFAULT_MAX_FAILED_IN_A_ROW = 1000
# Python looks at the files (size, last bytes) at most this often: a pass cannot
# tell a shard that failed to open, or was cut short, from one it may skip.
LOOK_SECONDS = 30.0


class SkippedRecordsError(cli.UserError, ValueError):
    """Too many records failed to decode: the message lists the files and their counts."""


def records_changed_error(what: str) -> SkippedRecordsError:
    """The error of a run whose records were removed or replaced under it; `what` says how."""
    return SkippedRecordsError(
        f"the clip records changed while they were read: {what}. A conversion "
        "(--overwrite) or a removal ran on them? Run again once the records are complete")


# How often a running command looks at its record files from Python.
WATCHDOG_SECONDS = 30.0


@contextlib.contextmanager
def end_if_files_change(counters: Sequence["ErrorCounter"]) -> Iterator[None]:
    """While the block runs, ends the process when a file of `counters` goes or changes.

    The pipeline notices such files at the start of each pass, but a file removed
    between that look and TensorFlow's opening of it makes the reader fail at
    every retry, inside a step that Python cannot interrupt: the one way out is
    the process's own end, with the line the stream's end would have given. Every
    `WATCHDOG_SECONDS` the files' sizes and last bytes are compared from Python.
    """
    done = threading.Event()

    def watch() -> None:
        while not done.wait(WATCHDOG_SECONDS):
            changed = [path for c in counters for path in c.changed_now()]
            if changed:
                what = "; ".join(f"{path} {'changed' if os.path.exists(path) else 'is gone'}"
                                 for path in changed[:10])
                message = str(records_changed_error(what))
                os.write(2, f"{os.path.basename(sys.argv[0])}: error: {message}\n".encode())
                # Descriptor 2 may be a pipe that a thread forwards (`cli`): give it
                # time, since leaving without the exit handlers drops what is in the pipe.
                time.sleep(3)
                os._exit(1)

    threading.Thread(target=watch, name="record-files-watchdog", daemon=True).start()
    try:
        yield
    finally:
        done.set()


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

    def __init__(self, max_skipped_fraction: float | None = None, slack: int = DEFAULT_SLACK,
                 max_failed_in_a_row: int = DEFAULT_MAX_FAILED_IN_A_ROW):
        """Args:
          max_skipped_fraction: float or None. A stream passed through `admit` ends
            once more than this fraction of its records (plus `slack`) failed, and
            `check_budget` raises; None: no fraction limit, but a stream that
            skipped `slack` records without yielding any still ends.
          slack: int. Failures allowed above the fraction (records in flight).
          max_failed_in_a_row: int. A stream passed through `admit` also ends once
            this many records in a row failed (plus those in flight), or at once
            when a pass found one of its files gone or changed.
        """
        self._bindings: list[tuple[list[str], tf.Variable, tf.Variable]] = []
        self._read: list[_ReadWatch] = []
        self._problems: list[tf.Variable] = []
        self._progress: list[tf.Variable] = []
        self.max_skipped_fraction = max_skipped_fraction
        self.slack = int(slack)
        self.max_failed_in_a_row = int(max_failed_in_a_row)
        self._looked = time.monotonic()

    def allow_in_flight(self, records: int) -> None:
        """Counts `records` more as possibly in flight (started, not yet finished) at any
        moment, e.g. the batches a pipeline decodes at once: the budget allows for them.

        Call it before the pipeline that has them is built.
        """
        self.slack += int(records)

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
        from sports1m_tf.data import record_check
        names = ("records_started", "records_finished", "records_waiting")
        counts = [_local_count([len(files) + 1], name) for name in names]
        self._bindings.append((list(files), *counts))
        self._read.append(_ReadWatch(list(files)))
        self._problems.append(_local_count([len(record_check.PROBLEMS)], "record_problems"))
        # [records that went on seen last, records started then]: the in-a-row count.
        self._progress.append(_local_count([2], "records_progress"))
        return len(self._bindings) - 1

    def read_watch(self, binding: int | None):
        """The `watch` of `records.read_records` for this binding (None: not counted)."""
        return None if binding is None else self._read[binding]

    def problem_counter(self, binding: int | None):
        """`count(code) -> code` for `record_check.sound_clip`: counts each kind of problem.

        Returns None (not counted) for a binding that does not count.
        """
        if binding is None:
            return None
        variable = self._problems[binding]

        def count(code):
            add = tf.raw_ops.ResourceScatterAdd(resource=variable.handle, indices=code,
                                                updates=tf.constant(1, tf.int64))
            return code + _zero_after(add, variable, code)

        return count

    def by_problem(self) -> dict[str, int]:
        """Records skipped for each kind of `record_check` problem (kinds seen only)."""
        from sports1m_tf.data import record_check
        counts: dict[str, int] = {}
        for variable in self._problems:
            for kind, n in zip(record_check.PROBLEMS[1:], variable.numpy()[1:].tolist()):
                if n:
                    counts[kind] = counts.get(kind, 0) + int(n)
        return counts

    def read_problems(self) -> dict[str, str]:
        """What went wrong reading each file that had trouble: {path: what happened}."""
        problems: dict[str, str] = {}
        for watch in self._read:
            problems.update(watch.problems())
        return problems

    def changed_now(self) -> list[str]:
        """Files gone or changed since the pipelines were built, looked at from Python now."""
        return [path for watch in self._read for path in watch.changed_now()]

    def look_now(self) -> None:
        """Looks at the files from Python (size and last bytes of each): a pass cannot
        tell a shard it could not open, or that was cut short, from one to skip."""
        self._looked = time.monotonic()
        for watch in self._read:
            watch.look()

    def files_gone_or_changed(self) -> dict[str, str]:
        """The read problems of files that a pass found gone or changed."""
        return {path: what for watch in self._read for path, what in watch.problems().items()
                if path in watch.changed()}

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
        from the returned tensors, and `finish` must follow once the
        record's outputs exist.
        """
        return self._add(binding, 1, file_index, 1, inputs)

    def finish(self, binding: int | None, file_index: tf.Tensor, result):
        """Counts a record as finished once every tensor of `result` exists; returns `result`."""
        return self._add_after(binding, 2, file_index, 1, result)

    def resume(self, binding: int | None, file_index: tf.Tensor,
               *inputs: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Ends the wait of a record that `admit` counted (`file_index` int32 [], or [n]
        for n records); returns `inputs`, available only after the count (as `start`)."""
        return self._add(binding, 3, file_index, -1, inputs)

    def _scatter_add(self, binding, which, file_index, amount) -> tf.Operation:
        """Adds `amount` (int64 []) to count `which` of the record's file and to its total.

        `file_index` may also be int32 [n], the files of n records (a batch).
        """
        files, *counts = self._bindings[binding]
        if file_index.shape.rank == 1:
            return tf.raw_ops.ResourceScatterAdd(
                resource=counts[which - 1].handle,
                indices=tf.concat([file_index, [len(files)]], 0),
                updates=tf.concat([tf.fill(tf.shape(file_index), tf.constant(amount, tf.int64)),
                                   [amount * tf.size(file_index, out_type=tf.int64)]], 0))
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
        # counted: the inputs gain and lose a dimension at an axis known only after
        # the addition (a data dependency, and no copy).
        files = self._bindings[binding][0]
        axis = _zero_after(add, self._bindings[binding][which],
                           len(files) if file_index.shape.rank == 1 else file_index)
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

    def admit(self, ds: tf.data.Dataset, binding: int | None,
              step: Callable[[tf.Tensor, tf.Tensor], tuple], stand_in: bytes) -> tf.data.Dataset:
        """Each `(file_index, record)` of `ds`, counted as started, through `step`; ends once
        over the budget. Elements: `(True, *step(file_index, record))`.

        `step` is the records' first fallible step (graph code without control
        flow, run in the thread that reads `ds`); a record whose step succeeds is
        counted as waiting, and its work ends with `resume` ... `finish`.
        `ignore_errors` swallows every error, so an endless stream whose records
        all fail would never yield; an end of stream passes through it (a repeat
        ends at its first empty pass), and the consumer then calls `check_budget`
        to say why. The count, the step and the wait are one function call per
        record: past the budget, `step` is given `stand_in` (a record it must pass:
        `record_check.stand_in_record`) and the element's flag is False, which a
        `take_while` turns into the end, without calling a function.
        """
        if binding is None:
            return inline_map(ds, lambda file_index, record: (tf.constant(True), *step(
                file_index, record)), parallel=False)

        progress, changed = self._progress[binding], self._read[binding].failures
        limit = self.max_failed_in_a_row + self.slack
        n = len(self._bindings[binding][0])

        def count_and_step(file_index, record):
            read, done, parked = self._totals(binding)
            went_on = done + parked
            # The records started when one last went on (parsed, or decoded).
            seen = tf.raw_ops.ReadVariableOp(resource=progress.handle, dtype=tf.int64)
            mark = tf.where(went_on > seen[0], read, seen[1])
            tf.raw_ops.AssignVariableOp(resource=progress.handle, value=tf.stack([went_on, mark]))
            within = tf.logical_not(self._over(read - went_on, read, done)) & (
                read - mark < limit)
            # A pass that found a file gone or changed ends every shard's stream
            # (`check_budget` says why).
            go = within & tf.equal(tf.raw_ops.ResourceGather(
                resource=changed.handle, indices=n, dtype=tf.int64), 0)
            record, = self._add(binding, 1, file_index, within, (record,))
            result = step(file_index, tf.raw_ops.Select(condition=go, x=record, y=stand_in))
            return (go, *self._add_after(binding, 3, file_index, go, tuple(result)))

        return inline_map(ds, count_and_step, parallel=False).take_while(lambda go, *_: go)

    def records_read(self) -> int:
        """Records the bound pipelines started to decode (including those that failed)."""
        return int(sum(int(b[1].numpy()[-1]) for b in self._bindings))

    def over_budget(self) -> bool:
        """Whether the skipped records exceed the budget (see `__init__`), or records
        were skipped and none decoded (a pass whose records all fail ends its stream
        before `slack` of them, since failed records stay in their shard's stream)."""
        read = self.records_read()
        done = sum(int(b[2].numpy()[-1]) for b in self._bindings)
        skipped = self.total()
        return bool(self._over(skipped, read, done)) or (done == 0 and skipped > 0)

    def describe(self) -> str:
        """'N of M records skipped: file (n), ...; by problem: ...; read problems: ...'."""
        by_file = sorted(self.by_file().items(), key=lambda kv: -kv[1])
        files = ", ".join(f"{path} ({n})" for path, n in by_file[:10])
        more = f" and {len(by_file) - 10} more files" if len(by_file) > 10 else ""
        kinds = "; ".join(f"{kind}: {n}" for kind, n in self.by_problem().items())
        return (f"{sum(n for _, n in by_file)} of {self.records_read()} records skipped"
                f"{': ' + files + more if by_file else ''}"
                f"{' (' + kinds + ')' if kinds else ''}{self._describe_reads()}")

    def _describe_reads(self) -> str:
        problems = sorted(self.read_problems().items())
        if not problems:
            return ""
        listed = "; ".join(f"{path} {what}" for path, what in problems[:10])
        more = f"; and {len(problems) - 10} more files" if len(problems) > 10 else ""
        return f"; files not read whole: {listed}{more}"

    def budget_error(self) -> SkippedRecordsError:
        """The error that says which files' records were skipped, and the fix."""
        self.look_now()  # a stream ends here: a file gone may be why
        if self.files_gone_or_changed():
            return records_changed_error(self.describe())
        limit = ("" if self.max_skipped_fraction is None else
                 f" (more than --max_skipped_fraction={self.max_skipped_fraction:g})")
        return SkippedRecordsError(
            f"too many clip records could not be decoded{limit}: {self.describe()}. "
            "Check those files (sports1m-inspect), convert them again, or leave them "
            "out of the file list")

    def check_budget(self) -> None:
        """Raises `SkippedRecordsError` when the skipped records exceed the budget, or
        when one of the files is gone or changed (found by a pass, or by a look from
        Python at most every `LOOK_SECONDS`)."""
        if time.monotonic() - self._looked > LOOK_SECONDS:
            self.look_now()
        if self.over_budget() or self.files_gone_or_changed():
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
        """Logs one warning per file that had skipped records or could not be read whole,
        and one per kind of record problem."""
        for path, n in sorted(self.by_file().items()):
            logging.warning("skipped %d undecodable or invalid clip record(s) in %s", n, path)
        for kind, n in self.by_problem().items():
            logging.warning("skipped %d clip record(s): %s", n, kind)
        for path, what in sorted(self.read_problems().items()):
            logging.warning("%s %s", path, what)


def _local_count(shape: list[int], name: str) -> tf.Variable:
    """An int64 count of zeros that a tf.data function can update.

    Under a strategy's scope a variable is a distributed one, which a tf.data
    function cannot update; one local copy is all a count needs.
    """
    with tf.init_scope():
        variable = tf.Variable(tf.zeros(shape, tf.int64), trainable=False, name=name)
    return tf.distribute.get_strategy().experimental_local_results(variable)[0]


def _zero_after(add: tf.Operation, variable: tf.Variable, index: tf.Tensor) -> tf.Tensor:
    """int32 [] 0, known only once `add` (at `index` of `variable`) ran.

    What is computed from it cannot run before the count.
    A control block is not enough: TF puts its edge only on the ops whose inputs
    all come from outside it, and an op reading a captured input can run, and
    fail, before the count (seen as a skipped record counted 0 times). So the
    count is read back after the addition and turned into a 0 by data, which
    graph optimisation cannot fold away.
    """
    with tf.control_dependencies([add]):
        counted = tf.raw_ops.ResourceGather(resource=variable.handle, indices=index,
                                            dtype=tf.int64)
    return tf.cast(tf.minimum(tf.abs(counted), 0), tf.int32)


class _ReadWatch:
    """Read problems of one pipeline's files (the `watch` of `records.read_records`).

    Python learns about damage found when the pipeline is built; the pipeline
    counts, per file and in total, the passes that found the file gone or changed
    (`failures`, int64 [files + 1], which `ErrorCounter.admit` ends the stream on).
    """

    def __init__(self, files: list[str]):
        self.files = files
        self._facts = None
        self._seen: set[str] = set()
        self.failures = _local_count([len(files) + 1], "shard_read_failures")

    def built(self, facts) -> None:
        self._facts = list(facts)

    def failed(self, file_index: tf.Tensor) -> tf.Operation:
        return tf.raw_ops.ResourceScatterAdd(
            resource=self.failures.handle, indices=tf.stack([file_index, len(self.files)]),
            updates=tf.ones([2], tf.int64))

    def changed(self) -> set[str]:
        """Files found gone or changed: by a pass, or, once a pass found one, from Python
        (a stream ends at the first one, before its passes reach the others)."""
        counts = self.failures.numpy()[:-1].tolist()
        found = {path for path, n in zip(self.files, counts) if n}
        return (found | set(self.changed_now())) if found else set(self._seen)

    def look(self) -> None:
        """Looks at the files from Python now: a file removed between a pass's look and
        its opening gives that pass no record at all, and is found only so."""
        self._seen = set(self.changed_now())

    def changed_now(self) -> list[str]:
        """Files that, looked at from Python now, are gone or of another size or tail."""
        from tfrecord_tools import fileio
        out = []
        for path, facts in zip(self.files, self._facts or []):
            try:
                with fileio.open_binary(path) as f:
                    f.seek(0, 2)
                    size = f.tell()
                    f.seek(max(size - len(facts.tail), 0))
                    same = size == facts.size and f.read(len(facts.tail)) == facts.tail
            except OSError:
                same = False
            if not same:
                out.append(path)
        return out

    def problems(self) -> dict[str, str]:
        from tfrecord_tools import fileio
        out = {}
        counts = self.failures.numpy()[:-1].tolist()
        changed = self.changed()
        for path, n, facts in zip(self.files, counts, self._facts or [None] * len(counts)):
            if path in changed:
                if not fileio.exists(path):
                    what = "is gone"
                elif facts is not None and fileio.size(path) != facts.size:
                    what = (f"changed size from {facts.size:,} to {fileio.size(path):,} bytes "
                            "(replaced or cut)")
                else:
                    what = "was replaced (its last bytes changed)"
                out[path] = f"{what}: {n} pass(es) could not read it" if n else what
            elif facts is not None and facts.problem:
                out[path] = (f"is damaged ({facts.problem}): the records from there on are "
                             "lost on every pass")
        return out
