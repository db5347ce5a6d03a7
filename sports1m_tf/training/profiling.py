"""`--profile_steps=START,END`: a TensorFlow profiler trace of those training steps.

The trace is TensorFlow's own (`tf.profiler.experimental`), written into the
run folder as `plugins/profile/<time>/<host>.xplane.pb`, where TensorBoard's
Profile tab finds it (the tab is the optional `tensorboard-plugin-profile`
package; writing the trace does not need it). Steps count from 1 as in the
progress lines: `--profile_steps=20,25` traces the 20th to the 25th step.
"""
from __future__ import annotations

from absl import logging


def parse_steps(text: str | None) -> tuple[int, int] | None:
    """`"START,END"` → `(START, END)`; None or "" → None.

    Raises:
      ValueError: not two integers with 1 <= START <= END (the message says so).
    """
    if not text:
        return None
    parts = text.split(",")
    try:
        start, end = (int(p) for p in parts)
    except ValueError:
        start = end = None
    if start is None or not 1 <= start <= end:
        raise ValueError(f"--profile_steps={text!r}: expected START,END, two step numbers with "
                         "1 <= START <= END (for example 20,25)")
    return start, end


class ProfileWindow:
    """Starts and stops the trace as the training loop passes the chosen steps.

    The loop must stop at `boundaries()`, and call `before_steps` before each
    run of steps and `after_steps` after it, so the trace holds the steps
    START to END and nothing of the validation or saving around them.
    """

    def __init__(self, steps: tuple[int, int] | None, logdir: str, enabled: bool = True):
        self._steps = steps if enabled else None
        self._logdir = logdir
        self._tracing = False
        self._done = False

    @property
    def tracing(self) -> bool:
        return self._tracing

    def boundaries(self) -> list[int]:
        """Steps at which the loop must stop running steps."""
        return [self._steps[0] - 1, self._steps[1]] if self._steps else []

    def before_steps(self, step: int) -> None:
        """Starts tracing when the next step is one of START..END (`step` steps done)."""
        if self._steps and not (self._tracing or self._done) and \
                self._steps[0] - 1 <= step < self._steps[1]:
            self._start(step)

    def after_steps(self, step: int) -> None:
        """Stops tracing once step END is done."""
        if self._tracing and step >= self._steps[1]:
            self.close()

    def close(self) -> None:
        """Stops a running trace and writes it."""
        import tensorflow as tf
        if self._tracing:
            tf.profiler.experimental.stop()
            logging.info("profiler trace of steps %d-%d written under %s/plugins/profile",
                         *self._steps, self._logdir)
        self._tracing, self._done = False, True

    def _start(self, step: int) -> None:
        import tensorflow as tf
        try:
            tf.profiler.experimental.start(self._logdir)
        except tf.errors.OpError as e:  # another trace of this process is running
            logging.warning("--profile_steps: no trace (%s)", e.message)
            self._done = True
            return
        self._tracing = True
        logging.info("profiling steps %d-%d", step + 1, self._steps[1])
