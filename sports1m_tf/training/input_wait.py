"""Where a training run's time goes: waiting for input or computing, and what to do about it.

The training step measures, inside its graph, the seconds it is blocked on its
next batch (`optimization.make_train_step`); a log interval's sum of them over
the interval's wall time is its *input wait*. It goes into every progress line
and into TensorBoard beside the step time split into input and compute. Once
the wait has stayed high (or near zero) for `VERDICT_INTERVALS` intervals, one
log line says so and what to do (docs/training.md, "Is my input the
bottleneck?"). Imported by the training loop once TensorFlow may load.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Sequence

from sports1m_tf.models import frames_needed

# A quarter of the time blocked is the most an accelerator should idle for input.
INPUT_BOUND_ABOVE = 0.25
NOT_LIMITING_BELOW = 0.05
VERDICT_INTERVALS = 3
# Stored frames / crop of the paper's records (200 / 170): enough room for random crops.
_FRAME_PER_CROP = 200 / 170
# Below this share of its cores busy, an input-bound trainer waits for reads, not decoding.
_CPU_BUSY = 0.5


@dataclasses.dataclass(frozen=True)
class Interval:
    """The training steps between two progress lines (validation and saving left out).

    Attributes:
      steps: int. Steps run.
      clips: int. Clips trained on (all replicas).
      wall_seconds: float. Wall time of the steps.
      input_seconds: float. Seconds the steps were blocked on their batches,
        summed over `streams`.
      cpu_seconds: float. CPU time of this process meanwhile (all threads).
      streams: int. Steps that run at once: the workers under parameter
        servers, else 1.
    """
    steps: int
    clips: int
    wall_seconds: float
    input_seconds: float
    cpu_seconds: float
    streams: int = 1

    def __add__(self, other: Interval) -> Interval:
        return Interval(self.steps + other.steps, self.clips + other.clips,
                        self.wall_seconds + other.wall_seconds,
                        self.input_seconds + other.input_seconds,
                        self.cpu_seconds + other.cpu_seconds, self.streams)

    @property
    def input_wait(self) -> float:
        """Fraction of the steps' time blocked on input, 0..1."""
        return min(1.0, self.input_seconds / max(self.wall_seconds * self.streams, 1e-9))

    @property
    def step_seconds(self) -> float:
        return self.wall_seconds / max(self.steps, 1)

    @property
    def input_seconds_per_step(self) -> float:
        return self.step_seconds * self.input_wait

    @property
    def compute_seconds_per_step(self) -> float:
        return self.step_seconds - self.input_seconds_per_step

    @property
    def clips_per_second(self) -> float:
        return self.clips / max(self.wall_seconds, 1e-9)

    @property
    def compute_clips_per_second(self) -> float:
        """The clips/s the model would train at if its input never kept it waiting."""
        return self.clips_per_second / max(1.0 - self.input_wait, 1e-3)

    @property
    def cpu_cores(self) -> float:
        """Cores this process kept busy on average."""
        return self.cpu_seconds / max(self.wall_seconds, 1e-9)

    def scalars(self) -> dict[str, float]:
        """TensorBoard scalars (name → value) of the interval."""
        return {"clips_per_second": self.clips_per_second,
                "step_time_seconds": self.step_seconds,
                "input_wait_fraction": self.input_wait,
                "input_wait_seconds_per_step": self.input_seconds_per_step,
                "compute_seconds_per_step": self.compute_seconds_per_step,
                "trainer_cpu_cores": self.cpu_cores}


@dataclasses.dataclass(frozen=True)
class InputSetup:
    """What the advice can name: where the input runs and what it decodes.

    Attributes:
      model: str. The model family (what it decodes follows).
      crop: int. Pixels of the model's square input.
      stored_frame: int or None. Pixels of the records' stored frames.
      data_service: str or None. The tf.data service the input comes from.
      cores: int. CPU cores this process may use.
      accelerator: bool. The model computes on a GPU (the trainer's CPU then
        does little else than the input).
    """
    model: str
    crop: int
    stored_frame: int | None
    data_service: str | None
    cores: int
    accelerator: bool

    @property
    def frames_decoded(self) -> int:
        return len(frames_needed(self.model))


def input_setup(train_files: Sequence[str], data_service: str | None, model: str,
                crop: int) -> InputSetup:
    """The `InputSetup` of a run on this machine."""
    import tensorflow as tf

    from sports1m_tf.data import input_checks, records
    stored = input_checks.stored_frame_size(records.list_files(train_files))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return InputSetup(model=model, crop=crop, stored_frame=min(stored[:2]) if stored else None,
                      data_service=data_service, cores=cores or 1,
                      accelerator=bool(tf.config.list_logical_devices("GPU")))


class Verdicts:
    """Says, once it has held for `VERDICT_INTERVALS` intervals, whether input is the limit.

    The first interval of a run is left out (it holds the step's tracing and
    the filling of the input's buffers). A verdict is said again only when it
    changes.
    """

    def __init__(self, setup: InputSetup):
        self._setup = setup
        self._recent: list[Interval] = []
        self._seen = 0
        self._said: str | None = None

    def offer(self, interval: Interval) -> str | None:
        """The verdict line this interval settles, or None."""
        self._seen += 1
        if self._seen == 1:
            return None
        self._recent = (self._recent + [interval])[-VERDICT_INTERVALS:]
        if len(self._recent) < VERDICT_INTERVALS:
            return None
        waits = [i.input_wait for i in self._recent]
        state = ("input" if min(waits) > INPUT_BOUND_ABOVE else
                 "compute" if max(waits) < NOT_LIMITING_BELOW else None)
        if state is None or state == self._said:
            return None
        self._said = state
        merged = sum(self._recent[1:], self._recent[0])
        return (input_bound(merged, self._setup, os.getloadavg()[0]) if state == "input"
                else not_limiting(merged))


def _measured(interval: Interval) -> str:
    return (f"the steps waited for input {interval.input_wait:.0%} of the time over the last "
            f"{VERDICT_INTERVALS} log intervals")


def not_limiting(interval: Interval) -> str:
    """The verdict when the wait stays near zero."""
    return (f"input is not the limit: {_measured(interval)}; the model's compute sets the "
            f"speed ({interval.clips_per_second:.1f} clips/s)")


def input_bound(interval: Interval, setup: InputSetup, machine_load: float = 0.0) -> str:
    """The verdict when the wait stays high: the figures, then what to do, most effective first.

    Args:
      interval: the intervals the verdict rests on, merged.
      setup: what the input reads and where it runs.
      machine_load: the machine's load average (runnable threads): where it
        reaches the machine's cores, other processes take the CPU this one lacks.
    """
    rate, wanted = interval.clips_per_second, interval.compute_clips_per_second
    head = (f"input-bound: {_measured(interval)}; {rate:.1f} clips/s, the model alone would "
            f"train {wanted:.1f}.")
    return " ".join([head, *_more_input(interval, setup, machine_load), *_less_input(setup)])


def _more_input(interval: Interval, setup: InputSetup, machine_load: float) -> list[str]:
    rate, wanted = interval.clips_per_second, interval.compute_clips_per_second
    if setup.data_service:
        return [f"The tf.data service delivers {rate:.1f} clips/s: give it about "
                f"{wanted / rate:.1f}x its workers' present cores (more sports1m-data-service "
                "workers; where the workers' CPUs are not busy, their disk is the limit)."]
    cores = interval.cpu_cores
    shared = machine_load >= (os.cpu_count() or 1)
    if cores < _CPU_BUSY * setup.cores and not shared:
        return [f"This process kept only {cores:.1f} of its {setup.cores} cores busy: reading "
                "the records is the limit, not decoding them. Put them on a faster disk (a "
                "local SSD) or copy them close to the trainer."]
    per_core = rate / max(cores, 1e-9)
    counted = ("" if setup.accelerator else
               "; the model's compute shares them here, so the rate is a lower bound")
    if shared:
        counted += (f"; other processes share this machine's CPU: load {machine_load:.1f} on "
                    f"{os.cpu_count()} cores")
    return [f"The input prepares {per_core:.0f} clips per CPU-second ({cores:.1f} cores "
            f"busy{counted}): {wanted:.0f} clips/s needs about "
            f"{math.ceil(wanted / max(per_core, 1e-9))} cores of decoding. Add them with "
            "sports1m-data-service workers and --data_service."]


def _less_input(setup: InputSetup) -> list[str]:
    advice = []
    if setup.frames_decoded > 1:
        advice.append(f"Or decode fewer frames: {setup.model} decodes "
                      f"{setup.frames_decoded} a clip (single_frame 1, late_fusion 2).")
    enough = math.ceil(setup.crop * _FRAME_PER_CROP)
    if setup.stored_frame and setup.stored_frame > enough:
        advice.append(f"Or store smaller frames: the records hold {setup.stored_frame}-pixel "
                      f"frames for {setup.crop}-pixel crops; sports1m-convert "
                      f"--frame_size={enough} decodes {(setup.stored_frame / enough) ** 2:.0f}x "
                      "fewer pixels.")
    return advice
