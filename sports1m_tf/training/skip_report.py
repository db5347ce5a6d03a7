"""Skipped records, reported where the user looks: the training log and TensorBoard.

A training input pipeline skips records it cannot decode (`data.ErrorCounter`
counts them per file). At each log step the run logs the files with skips,
writes their counts as TensorBoard scalars, and stops with a clear error once
more than `--max_skipped_fraction` of the records read were skipped.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from absl import logging


def report(counter, writer, step: int) -> None:
    """Logs and records the skipped records so far; raises when over the budget.

    Args:
      counter: the training pipeline's `data.ErrorCounter`.
      writer: the run's training `tf.summary` writer.
      step: the step the counts belong to.

    Raises:
      data.errors.SkippedRecordsError: more were skipped than the budget allows.
    """
    import tensorflow as tf
    by_file = counter.by_file()
    # While the pipeline runs, records being decoded count as started but not yet
    # finished: up to `slack` of them are in flight, not skipped. Records that
    # lie (exact counts) and damaged or changed files are named whatever the count.
    if (sum(by_file.values()) > counter.slack or counter.by_problem()
            or counter.read_problems()):
        logging.warning("step %d: %s", step, counter.describe())
    with writer.as_default():
        tf.summary.scalar("skipped_records/total", sum(by_file.values()), step=step)
        for path, n in sorted(by_file.items()):
            tf.summary.scalar(f"skipped_records/{os.path.basename(path)}", n, step=step)
    counter.check_budget()


@contextlib.contextmanager
def explain_stream_end(counter) -> Iterator[None]:
    """Turns the end of an endless training stream into the reason it ended.

    The training stream only ends when it skipped too many records, or too many
    in a row, or when a file went or changed (see `ErrorCounter.admit`); the error then
    lists the files and what happened to them.
    """
    import tensorflow as tf

    from sports1m_tf.data import errors
    with errors.end_if_files_change([counter]):
        try:
            yield
        except tf.errors.OutOfRangeError:
            # Records still in flight when the stream ended may have finished since,
            # so the counts need not be over the budget any more: the end says they were.
            raise counter.budget_error() from None


