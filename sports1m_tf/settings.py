"""Every training and evaluation setting once: its default, its help text, its group of flags.

`TrainConfig` and `EvalConfig` are the one source. The commands and the
benchmarks declare their absl flags from them (`define_flags`,
`define_eval_flags`), and Python callers build one with
`make_config(**overrides)` / `EvalConfig(...)`, which read the same defaults. Flags are declared at run time (a command's `run()`), not at import,
so that tests can import several commands into one process; a flag that is
already declared is left alone. A numeric setting carries its `Bound` (the values
any run can use); `check_settings` refuses the others before a run starts.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from absl import flags

from sports1m_tf.cli import UserError
from sports1m_tf.distribute import STRATEGIES
from sports1m_tf.model_names import MODEL_NAMES

FLAGS = flags.FLAGS
GROUPS = ("model", "data", "training", "distribution")
EVAL_GROUP = "evaluation"


@dataclasses.dataclass(frozen=True)
class Bound:
    """The values a numeric setting may take: finite, within [low, high], each end
    open or closed. A value outside makes no sense for any run (a NaN learning rate
    trains nothing and writes NaN weights), so it is refused before anything starts."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def text(self) -> str:
        """'a finite number above 0', 'a number in [0, 1)', ... for the refusal."""
        if self.low is not None and self.high is not None:
            return (f"a number in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"a finite number {'above' if self.low_open else 'of at least'} {self.low:g}"
        return "a finite number"


POSITIVE = Bound(0, low_open=True)          # > 0; for integers: 1 or more
NON_NEGATIVE = Bound(0)
FRACTION = Bound(0, 1, high_open=True)       # [0, 1)


class SettingError(ValueError, UserError):
    """A setting whose value no run can use (the message names the flag and what it takes);
    a command prints it as one line, like any `cli.UserError`."""


def setting(default, help_text: str, group: str, kind: str | None = None,
            choices: Sequence[str] | None = None, bound: Bound | None = None):
    """A dataclass field carrying its flag's help text, group, kind, choices and bound.

    A list default becomes a comma-separated list flag (kind "list")."""
    if isinstance(default, (list, tuple)):
        kind, default = kind or "list", tuple(default)
    if kind is None:
        kind = ("enum" if choices else "bool" if isinstance(default, bool) else
                "integer" if isinstance(default, int) else
                "float" if isinstance(default, float) else "string")
    return dataclasses.field(default=default, metadata={
        "help": help_text, "group": group, "kind": kind, "choices": choices, "bound": bound})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs (docs/design.md, "Training").

    Build one with `make_config(**overrides)` or `config_from_flags()`.
    """
    # The model.
    model: str = setting("single_frame", "Model family (docs/design.md, 'Models').",
                          "model", choices=MODEL_NAMES)
    multires: bool = setting(False, "Fovea + context streams (178-pixel input).", "model")
    width: float = setting(1.0, "Multiplier on every conv and FC width.", "model", bound=POSITIVE)
    input_size: int | None = setting(None, "Square input size; default 170, or 178 for "
                                      "multires.", "model", kind="integer", bound=POSITIVE)
    num_classes: int | None = setting(None, "Classes; default: the `classes` of the "
                                       "records' dataset.json.", "model", kind="integer",
                                       bound=POSITIVE)
    dropout: float = setting(0.5, "Dropout rate after fc6 and fc7.", "model", bound=FRACTION)
    input_scale: float = setting(
        1.0, "Multiplier on the mean-subtracted pixels, inside the model (so serving "
        "applies it too). 1 = the paper's raw pixel units; 1/64 (0.015625) = about unit "
        "variance, for --optimizer=adam.", "model", bound=POSITIVE)
    # The input.
    train_files: Sequence[str] | None = setting(
        None, "Training clip-record globs or paths (repeatable).", "data", kind="multi_string")
    val_files: Sequence[str] | None = setting(
        None, "Validation clip-record globs or paths (repeatable); none: no validation.",
        "data", kind="multi_string")
    batch_size: int = setting(32, "Clips per replica per step (paper: 32).", "data",
                               bound=POSITIVE)
    val_batches: int = setting(50, "Validation batches per evaluation; 0 = the whole "
                                "validation set.", "data", bound=NON_NEGATIVE)
    flip: bool = setting(True, "Random horizontal flips in training (off when motion "
                          "direction matters).", "data")
    shuffle_buffer: int = setting(
        1024, "Training records in the shuffle buffer, after 8 of --train_files' shards are "
        "interleaved, each read from its own random record. Memory: the encoded frames "
        "the model reads of each record, about 15 KB a frame at 200x200 (1024 records: "
        "about 15 MB for single_frame, 150 MB for slow_fusion; 10000: 1.5 GB) and 1.6 KB "
        "a frame at 64x64. Chosen by measurement (benchmarks/batch_mixing.py, batch 32, 120 videos "
        "of 100 clips): shards written by sports1m-convert already mix videos, so any "
        "buffer gives at least 98% of the distinct videos of a uniform random draw; "
        "shards written before that layout give 97% with 16 shards at 1024 (89% at "
        "256), but a single such shard needs a buffer of the whole split "
        "(sports1m-inspect says whether a split's layout mixes).", "data", bound=POSITIVE)
    max_skipped_fraction: float = setting(
        0.01, "Stop training with an error naming the files once more than this fraction of "
        "the training records read could not be decoded (skipped records are logged per "
        "file, and written to TensorBoard, at every log step).", "data", bound=Bound(0, 1))
    data_service: str | None = setting(
        None, "grpc://HOST:PORT of a tf.data service dispatcher (sports1m-data-service): the "
        "training pipeline runs on its workers, this process only receives batches "
        "(validation stays here). Default: the pipeline runs in this process.", "data",
        kind="string")
    # The loop, the optimiser and the schedule.
    model_dir: str | None = setting(
        None, "Run folder: its config, ckpt-STEP checkpoints, TensorBoard events, model.keras.",
        "training", kind="string")
    train_steps: int = setting(100_000, "Total optimiser steps of the run.", "training",
                                bound=POSITIVE)
    eval_every: int = setting(1000, "Steps between validations.", "training", bound=POSITIVE)
    checkpoint_every: int = setting(1000, "Steps between checkpoints.", "training", bound=POSITIVE)
    log_every: int = setting(50, "Steps between progress lines and training scalars.",
                              "training", bound=POSITIVE)
    learning_rate: float = setting(1e-3, "Initial learning rate (paper: 1e-3).", "training",
                                    bound=POSITIVE)
    optimizer: str = setting(
        "sgd", "sgd: the paper's SGD with momentum. adam: AdamW (same decoupled weight "
        "decay), NOT the paper's; it learns motion from scratch in thousands of steps where "
        "SGD needs far more. Use it with --input_scale=0.015625 and a learning rate near "
        "3e-4.", "training", choices=("sgd", "adam"))
    momentum: float = setting(0.9, "SGD momentum (paper: 0.9).", "training", bound=FRACTION)
    weight_decay: float = setting(
        5e-4, "Decoupled weight decay of kernels: w <- w * (1 - lr * wd) each step (keras "
        "SGD / AdamW weight_decay; biases are not decayed). With --optimizer=adam use about "
        "0.1: at lr 3e-4, 5e-4 is nearly no decay.", "training", bound=NON_NEGATIVE)
    plateau_patience: int = setting(
        5, "Validations without a better clip Hit@1 before the learning rate drops x0.1.",
        "training", bound=POSITIVE)
    min_learning_rate: float = setting(
        1e-6, "The learning rate never goes below this (plateau); cosine ends at it.",
        "training", bound=NON_NEGATIVE)
    lr_schedule: str = setting(
        "plateau", "plateau: the paper's, x0.1 after --plateau_patience validations without "
        "a better clip Hit@1. cosine: from --learning_rate down to --min_learning_rate at "
        "--train_steps, whatever validation does (changing --train_steps on resume changes "
        "the curve).", "training", choices=("plateau", "cosine"))
    keep_checkpoints: int = setting(5, "Checkpoints kept (oldest deleted).", "training",
                                     bound=POSITIVE)
    seed: int = setting(0, "Seed of initialisation and data order.", "training")
    kernel_init: str = setting(
        "glorot_uniform", "Initialiser of the ReLU layers' kernels when training from "
        "scratch (the paper does not say). glorot_uniform: Keras's default, for the paper's "
        "SGD on raw pixels (where He's larger weights can diverge). he_normal: derived for "
        "rectifiers; use it with --optimizer=adam --input_scale=0.015625, where Glorot let "
        "Adam kill most units of the fusion layers on the motion classes.", "training",
        choices=("glorot_uniform", "he_normal"))
    profile_steps: str | None = setting(
        None, "START,END: record a TensorFlow profiler trace of training steps START to END "
        "(counted from 1, both included) into MODEL_DIR/plugins/profile/, for TensorBoard's "
        "Profile tab (pip install 'sports1m_tf[profile]'). Skip the first steps, which "
        "trace the step and fill the input's buffers: for example 20,25.", "training",
        kind="string")
    # Where it runs.
    strategy: str = setting(
        "auto", "auto: parameter_server if TF_CONFIG has a ps job, multi_worker if it has "
        "several workers, mirrored with several local GPUs (or --cpu_devices > 1), else "
        "one_device.", "distribution", choices=STRATEGIES)
    mixed_precision: str = setting(
        "auto", "Compute dtype. auto: bfloat16 on a GPU, off (float32) on CPU.",
        "distribution", choices=("auto", "off", "bfloat16", "float16"))
    xla: str = setting(
        "auto", "XLA-compile the forward and backward pass. auto: on with a GPU, off on CPU "
        "(3-D convolutions 4-5x slower there).", "distribution", choices=("auto", "on", "off"))
    cpu_devices: int = setting(
        1, "Split the CPU into this many logical devices when there is no GPU (runs "
        "MirroredStrategy's multi-replica path on one machine).", "distribution", bound=POSITIVE)
    peer_timeout: float = setting(
        120.0, "Seconds to wait for the cluster's other tasks before failing.", "distribution",
        bound=POSITIVE)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How videos are scored (docs/design.md, "Evaluation"): sports1m-eval, the
    baseline and the studies read these defaults."""
    clips_per_video: int = setting(20, "Clips per video (paper: 20).", EVAL_GROUP, bound=POSITIVE)
    views: int = setting(4, "Views per clip: centre, centre flipped, top-left, bottom-right "
                          "flipped (paper: 4).", EVAL_GROUP, bound=Bound(1, 4))
    batch_size: int = setting(32, "Views per batch, over all replicas.", EVAL_GROUP,
                               bound=POSITIVE)
    montage_videos: int = setting(12, "Videos in predictions_montage.png.", EVAL_GROUP,
                                   bound=NON_NEGATIVE)
    confusion_classes: int = setting(30, "Classes in confusion_matrix.png.", EVAL_GROUP,
                                      bound=POSITIVE)
    progress: bool = setting(True, "Show a progress bar.", EVAL_GROUP)


_FIELDS = dataclasses.fields(TrainConfig)
_EVAL_FIELDS = dataclasses.fields(EvalConfig)
_DEFINE = {"bool": flags.DEFINE_bool, "integer": flags.DEFINE_integer,
           "float": flags.DEFINE_float, "string": flags.DEFINE_string,
           "multi_string": flags.DEFINE_multi_string, "list": flags.DEFINE_list}


def define_flags(groups: Sequence[str] = GROUPS,
                 flag_values: flags.FlagValues = FLAGS) -> None:
    """Declares the flags of `groups` (some of `GROUPS`) from `TrainConfig`'s fields.

    A flag already declared (by another command in the same process) is left alone.
    """
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown setting groups {unknown}; expected some of {GROUPS}")
    define_fields([f for f in _FIELDS if f.metadata["group"] in groups], flag_values)


def define_eval_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Declares the flags of `EvalConfig`'s fields (already declared ones are left alone)."""
    define_fields(_EVAL_FIELDS, flag_values)


def eval_config_from_flags(flag_values: flags.FlagValues = FLAGS, **overrides) -> EvalConfig:
    """The `EvalConfig` of the parsed command line: declared flags, else defaults."""
    return from_flags(EvalConfig, flag_values, **overrides)


def define_fields(fields: Sequence[dataclasses.Field],
                  flag_values: flags.FlagValues = FLAGS) -> None:
    """Declares a flag for each of `fields` (made with `setting`); declared ones are left alone."""
    for field in fields:
        meta = field.metadata
        if field.name in flag_values:
            continue
        if meta["kind"] == "enum":
            flags.DEFINE_enum(field.name, field.default, list(meta["choices"]), meta["help"],
                              flag_values=flag_values)
        else:
            default = list(field.default) if meta["kind"] == "list" else field.default
            _DEFINE[meta["kind"]](field.name, default, meta["help"], flag_values=flag_values)


def from_flags(config_class, flag_values: flags.FlagValues = FLAGS, **overrides):
    """A `config_class` (a dataclass of `setting` fields) from the parsed flags that are
    declared, else its defaults, changed by `overrides`."""
    values = {f.name: flag_values[f.name].value for f in dataclasses.fields(config_class)
              if f.name in flag_values}
    return config_class(**{**values, **overrides})


def check_settings(config) -> None:
    """Refuses a `TrainConfig` or `EvalConfig` holding a value no run can use.

    Called by the commands right after their flags are parsed (before TensorFlow
    starts) and by `train()` for Python callers. Each setting's `Bound` is in its
    field above: change a bound there.

    Raises:
      SettingError: '--NAME=VALUE: NAME must be ...', for the first such setting.
    """
    for field in dataclasses.fields(config):
        bound, value = field.metadata.get("bound"), getattr(config, field.name)
        if bound is None or value is None or bound.allows(value):
            continue
        if field.metadata["kind"] == "integer":
            rule = ("positive (1 or more)" if bound is POSITIVE else
                    f"an integer in [{bound.low:g}, {bound.high:g}]" if bound.high is not None
                    else f"at least {bound.low:g}")
        else:
            rule = bound.text()
        raise SettingError(f"--{field.name}={value}: {field.name} must be {rule}")


def config_from_flags(flag_values: flags.FlagValues = FLAGS, **overrides) -> TrainConfig:
    """The `TrainConfig` of the parsed command line: declared flags, else defaults."""
    values = {f.name: flag_values[f.name].value for f in _FIELDS if f.name in flag_values}
    return make_config(**{**values, **overrides})


def make_config(**overrides) -> TrainConfig:
    """A `TrainConfig` with the defaults, changed by `overrides` (for Python callers).

    Raises:
      TypeError: an override that is not a setting (names it).
    """
    unknown = sorted(set(overrides) - {f.name for f in _FIELDS})
    if unknown:
        raise TypeError(f"unknown training settings {unknown}")
    for name in ("train_files", "val_files"):
        if isinstance(overrides.get(name), str):
            overrides[name] = [overrides[name]]
    return TrainConfig(**overrides)
