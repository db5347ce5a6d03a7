"""Flags shared by sports1m-train, sports1m-finetune and sports1m-eval, declared once here.

Each command calls the `define_*` groups it needs from its `run()` (not at
import, so that tests can import several commands into one process); a flag
that is already declared is left alone. `flag_values` lets a caller read the
defaults from a private `flags.FlagValues()`.
"""
from __future__ import annotations

from absl import flags

from sports1m_tf.distribute import STRATEGIES

FLAGS = flags.FLAGS
MODEL_NAMES = ("single_frame", "early_fusion", "late_fusion", "slow_fusion", "fovea_only",
               "context_only")


def _once(flag_values: flags.FlagValues, define, name: str, *args, **kwargs) -> None:
    if name not in flag_values:
        define(name, *args, flag_values=flag_values, **kwargs)


def define_model_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """--model, --multires, --width, --input_size, --num_classes, --dropout."""
    fv = flag_values
    _once(fv, flags.DEFINE_enum, "model", "single_frame", MODEL_NAMES, "Model (SPEC §1).")
    _once(fv, flags.DEFINE_bool, "multires", False,
          "Fovea + context streams (178-pixel input, paper §3.2).")
    _once(fv, flags.DEFINE_float, "width", 1.0, "Multiplier on every conv and FC width.")
    _once(fv, flags.DEFINE_integer, "input_size", None,
          "Square input size; default 170, or 178 for multires.")
    _once(fv, flags.DEFINE_integer, "num_classes", None,
          "Classes; default: the `classes` of the records' dataset.json.")
    _once(fv, flags.DEFINE_float, "dropout", 0.5, "Dropout rate after fc6 and fc7.")
    _once(fv, flags.DEFINE_float, "input_scale", 1.0,
          "Multiplier on the mean-subtracted pixels, inside the model (so serving applies "
          "it too). 1 = the paper's raw pixel units; 1/64 (0.015625) = about unit variance, "
          "for --optimizer=adam.")


def define_data_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """--train_files, --val_files, --batch_size, --val_batches, --shuffle_buffer, --flip."""
    fv = flag_values
    _once(fv, flags.DEFINE_multi_string, "train_files", None,
          "Training clip-record globs or paths (repeatable).")
    _once(fv, flags.DEFINE_multi_string, "val_files", None,
          "Validation clip-record globs or paths (repeatable); none: no validation.")
    _once(fv, flags.DEFINE_integer, "batch_size", 32,
          "Clips per replica per step (paper: 32).")
    _once(fv, flags.DEFINE_integer, "val_batches", 50,
          "Validation batches per evaluation; 0 = the whole validation set.")
    _once(fv, flags.DEFINE_integer, "shuffle_buffer", 256,
          "Training records in the shuffle buffer (after interleaving --train_files' "
          "shards). With few shards, a buffer much smaller than the training set replays "
          "nearly the same clip order every epoch; on the synthetic motion classes that "
          "kept every fusion model at chance (docs/issue10.md). Cost: one encoded record "
          "each (about 180 KB at 200x200, 25 KB at 64x64).")
    _once(fv, flags.DEFINE_bool, "flip", True,
          "Random horizontal flips in training (off when motion direction matters).")
    _once(fv, flags.DEFINE_float, "max_skipped_fraction", 0.01,
          "Stop training with an error naming the files once more than this fraction of "
          "the training records read could not be decoded (skipped records are logged per "
          "file, and written to TensorBoard, at every log step).")


def define_training_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Optimiser, schedule, checkpoints, logging: the training loop's own flags."""
    fv = flag_values
    _once(fv, flags.DEFINE_string, "model_dir", None,
          "Run folder: run_config.json, ckpt-STEP, TensorBoard events, model.keras.")
    _once(fv, flags.DEFINE_integer, "train_steps", 100_000, "Total optimiser steps of the run.")
    _once(fv, flags.DEFINE_integer, "eval_every", 1000, "Steps between validations.")
    _once(fv, flags.DEFINE_integer, "checkpoint_every", 1000, "Steps between checkpoints.")
    _once(fv, flags.DEFINE_integer, "log_every", 50,
          "Steps between progress lines and training scalars.")
    _once(fv, flags.DEFINE_float, "learning_rate", 1e-3, "Initial learning rate (paper: 1e-3).")
    _once(fv, flags.DEFINE_enum, "optimizer", "sgd", ["sgd", "adam"],
          "sgd: the paper's SGD with momentum. adam: AdamW (same decoupled weight decay), "
          "NOT the paper's; it learns motion from scratch in thousands of steps where SGD "
          "needs far more (docs/issue10.md). Use it with --input_scale=0.015625 and a "
          "learning rate near 3e-4.")
    _once(fv, flags.DEFINE_float, "momentum", 0.9, "SGD momentum (paper: 0.9).")
    _once(fv, flags.DEFINE_float, "weight_decay", 5e-4,
          "Decoupled weight decay of kernels: w <- w * (1 - lr * wd) each step "
          "(keras SGD / AdamW weight_decay; biases are not decayed). With "
          "--optimizer=adam use about 0.1: at lr 3e-4, 5e-4 is nearly no decay.")
    _once(fv, flags.DEFINE_integer, "plateau_patience", 5,
          "Validations without a better clip Hit@1 before the learning rate drops x0.1.")
    _once(fv, flags.DEFINE_float, "min_learning_rate", 1e-6,
          "The learning rate never goes below this (plateau); cosine ends at it.")
    _once(fv, flags.DEFINE_enum, "lr_schedule", "plateau", ["plateau", "cosine"],
          "plateau: the paper's, x0.1 after --plateau_patience validations without a better "
          "clip Hit@1. cosine: from --learning_rate down to --min_learning_rate at "
          "--train_steps, whatever validation does (changing --train_steps on resume "
          "changes the curve).")
    _once(fv, flags.DEFINE_integer, "keep_checkpoints", 5, "Checkpoints kept (oldest deleted).")
    _once(fv, flags.DEFINE_integer, "seed", 0, "Seed of initialisation and data order.")
    _once(fv, flags.DEFINE_enum, "kernel_init", "glorot_uniform",
          ["glorot_uniform", "he_normal"],
          "Initialiser of the ReLU layers' kernels when training from scratch (the paper "
          "does not say). glorot_uniform: Keras's default, for the paper's SGD on raw pixels "
          "(where He's larger weights can diverge). he_normal: derived for rectifiers; use it with "
          "--optimizer=adam --input_scale=0.015625, where Glorot let Adam kill most units "
          "of the fusion layers on the motion classes (docs/issue10.md).")


def define_distribution_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """--strategy, --mixed_precision, --xla, --cpu_devices, --peer_timeout."""
    fv = flag_values
    _once(fv, flags.DEFINE_enum, "strategy", "auto", list(STRATEGIES),
          "auto: parameter_server if TF_CONFIG has a ps job, multi_worker if it has several "
          "workers, mirrored with several local GPUs (or --cpu_devices > 1), else one_device.")
    _once(fv, flags.DEFINE_enum, "mixed_precision", "auto",
          ["auto", "off", "bfloat16", "float16"],
          "Compute dtype. auto: bfloat16 on a GPU, off (float32) on CPU.")
    _once(fv, flags.DEFINE_enum, "xla", "auto", ["auto", "on", "off"],
          "XLA-compile the forward and backward pass. auto: on with a GPU, off on CPU "
          "(3-D convolutions 4-5x slower there).")
    _once(fv, flags.DEFINE_integer, "cpu_devices", 1,
          "Split the CPU into this many logical devices when there is no GPU "
          "(runs MirroredStrategy's multi-replica path on one machine).")
    _once(fv, flags.DEFINE_float, "peer_timeout", 120.0,
          "Seconds to wait for the cluster's other tasks before failing.")


def define_all(flag_values: flags.FlagValues = FLAGS) -> None:
    """Every group above (the training command's flags)."""
    define_model_flags(flag_values)
    define_data_flags(flag_values)
    define_training_flags(flag_values)
    define_distribution_flags(flag_values)
