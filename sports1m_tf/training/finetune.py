"""sports1m-finetune: transfer a trained model to a new task (docs/design.md, "Transfer learning").

The model to fine-tune comes from `sports1m_tf.training.transfer.make_transfer_model`
(regimes `top1`, `top3`, `all`, `scratch`); everything else is
`sports1m_tf.training.train.train`, the loop of `sports1m-train`: the same flags for
data, optimiser, checkpoints and strategies, and the same run folder
(run config, ckpt-STEP, TensorBoard, model.keras), so `sports1m-eval` and
`sports1m-export` read a fine-tuned run like any other.

Usage:
  # UCF-101 split 1 (records from `sports1m-convert --manifest_format=ucf101
  # --clips_per_video=50 --clip_overlap`), top-3 layers of a Slow Fusion run, keep
  # probability 0.1
  sports1m-finetune --init_from=runs/slow --regime=top3 \
      --train_files='ucf1/train-*' --model_dir=runs/ucf1_top3 --train_steps=20000
  # a .keras model, the classifier only, all local GPUs
  sports1m-finetune --init_from=runs/slow/model.keras --regime=top1 \
      --train_files='ucf1/train-*' --model_dir=runs/ucf1_top1 --strategy=mirrored
  # the baseline: the same architecture from random weights
  sports1m-finetune --init_from=runs/slow --regime=scratch --train_files=... --model_dir=...
  # then, as for any run
  sports1m-eval --model_dir=runs/ucf1_top3 --eval_files='ucf1/test-*' --clips_per_video=50 \
      --output_dir=reports/ucf1_top3

The architecture (model family, multires, width, input size) is the source's;
`--num_classes` defaults to the classes of the records' dataset.json.
"""
from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Sequence

from absl import app, flags, logging

from sports1m_tf import cli, run_folder, settings
from sports1m_tf.training import train
from sports1m_tf.model_names import MODEL_NAMES
from sports1m_tf.training.regimes import PAPER_DROPOUT, REGIMES
from tfrecord_tools import fileio

FLAGS = flags.FLAGS
# TrainConfig fields that describe the architecture: taken from the source model.
_ARCHITECTURE = ("model", "multires", "width", "input_size", "num_classes", "dropout")


# ---------------------------------------------------------------------------
# The source model
# ---------------------------------------------------------------------------
def source_spec(init_from: str) -> dict:
    """The source model's architecture, read without TensorFlow.

    Args:
      init_from: A training run folder or a `.keras` file
        (its config.json; the width comes from the size of fc6).

    Returns:
      dict: `model`, `multires`, `width`, `input_size`, `num_classes`, `path`.

    Raises:
      FileNotFoundError: `init_from` is neither (names it).
      ValueError: the file does not hold a `sports1m_tf.models` model.
    """
    from sports1m_tf.models.trunk import FC_UNITS

    if os.path.isdir(init_from):
        config = run_folder.load_run_config(init_from)
        return {"model": config["model"], "multires": bool(config["multires"]),
                "width": float(config["width"]), "input_size": int(config["input_size"]),
                "num_classes": int(config["num_classes"]), "path": init_from}
    if not init_from.endswith(".keras") or not os.path.isfile(init_from):
        raise FileNotFoundError(f"--init_from {init_from}: neither a training run folder nor "
                                "a .keras file")
    try:
        with zipfile.ZipFile(init_from) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"--init_from {init_from}: not a readable .keras file ({e})") from None
    layers = {layer["config"].get("name"): layer for layer in config["config"]["layers"]}
    name = config["config"]["name"]
    family = name.removesuffix("_multires")
    if "fc6" not in layers or "predictions" not in layers or family not in MODEL_NAMES:
        raise ValueError(f"--init_from {init_from}: model {name!r} was not built by "
                         "sports1m_tf.models (no fc6/predictions layers)")
    input_shape = layers["frames"]["config"]["batch_shape"]
    return {"model": family, "multires": name.endswith("_multires"),
            "width": layers["fc6"]["config"]["units"] / FC_UNITS,
            "input_size": int(input_shape[2]),
            "num_classes": int(layers["predictions"]["config"]["units"]), "path": init_from}


def load_source(init_from: str):
    """The source `keras.Model`: a run's latest checkpoint (else its model.keras), or a .keras file."""
    if os.path.isdir(init_from):
        return run_folder.restore_model(init_from)
    import keras

    import sports1m_tf.models  # noqa: F401  (registers the custom layers)
    import sports1m_tf.training.transfer  # noqa: F401  (a fine-tuned model may be the source)
    return keras.saving.load_model(init_from, compile=False)


# ---------------------------------------------------------------------------
# Fine-tuning
# ---------------------------------------------------------------------------
def finetune(init_from: str, regime: str, *, dropout: float = PAPER_DROPOUT,
             **train_settings) -> dict:
    """Fine-tunes a trained model on new records with `sports1m_tf.training.train.train`.

    Args:
      init_from: A training run folder or a `.keras` file.
      regime: `top1`, `top3`, `all` or `scratch`.
      dropout: Rate before every retrained fully-connected layer.
        Defaults to 0.9 (the paper's keep probability 0.1).
      **train_settings: `TrainConfig` fields (`train_files`, `model_dir`,
        `train_steps`, `learning_rate`, `strategy`, ... and `num_classes`);
        the architecture fields come from the source and may not be given.

    Returns:
      `train`'s result dict, plus `transfer` (what was recorded in the run config).
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; expected one of {REGIMES}")
    given = sorted(set(train_settings) & (set(_ARCHITECTURE) - {"num_classes"}))
    if given:
        raise TypeError(f"{given} come from the source model (--init_from), not from settings")
    spec = source_spec(init_from)
    num_classes = train_settings.pop("num_classes", None)
    if num_classes is None and train_settings.get("train_files"):
        files = train_settings["train_files"]
        from sports1m_tf.data import dataset_info
        classes = dataset_info.read_classes([files] if isinstance(files, str) else list(files))
        num_classes = len(classes) if classes else None
    if num_classes is None:
        raise ValueError("num_classes is not set and no dataset.json with classes lies beside "
                         "the training records")
    config = train.make_config(model=spec["model"], multires=spec["multires"],
                               width=spec["width"], input_size=spec["input_size"],
                               num_classes=num_classes, dropout=dropout, **train_settings)

    def build_model_fn(config: settings.TrainConfig):
        # Loaded here, inside the strategy's scope and after train() has set up
        # the devices (loading earlier would initialise them too soon for
        # --cpu_devices). Only its weights are read.
        from sports1m_tf.training import transfer
        source = load_source(init_from)
        return transfer.make_transfer_model(source, regime, config.num_classes, config.dropout,
                                            width=config.width)

    record = {"regime": regime, "init_from": os.path.abspath(init_from), "dropout": dropout,
              "source": {k: spec[k] for k in ("model", "multires", "width", "input_size",
                                              "num_classes")}}
    logging.info("fine-tuning %s (%s) with regime %s into %s", init_from, spec["model"],
                 regime, config.model_dir)
    result = train.train(config, build_model_fn=build_model_fn,
                         run_config_extra={"transfer": record})
    if result.get("model_path"):
        _save_plain(result["model"], result["model_path"], config.width)
    return {**result, "transfer": record}


def _save_plain(model, path: str, width: float) -> None:
    """Rewrites the run's model.keras in `build_model`'s own layers.

    The transfer model's fc6 is an `InputDropoutDense`; the plain copy computes
    the same function at inference and loads in any tool without this module.
    """
    from sports1m_tf.training import transfer
    plain = transfer.plain_model(model, width=width)
    with fileio.atomic_path(path) as temporary:
        plain.save(temporary)


# ---------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------
def define_flags() -> None:
    """Declares the command's flags (at run time: see `sports1m_tf.settings`)."""
    settings.define_flags(("data", "training", "distribution"))
    own = {
        "init_from": (flags.DEFINE_string, None,
                      "Source model: a training run folder or a .keras file."),
        "regime": (flags.DEFINE_enum, "top3", "top1: new classifier on frozen features; "
                   "top3: fc6, fc7 and a new classifier; all: every layer; scratch: random "
                   "init of the same architecture.", list(REGIMES)),
        "dropout": (flags.DEFINE_float, PAPER_DROPOUT,
                    "Dropout rate before every retrained fully-connected layer "
                    "(paper: keep probability 0.1)."),
        "num_classes": (flags.DEFINE_integer, None,
                        "Target classes; default: the classes of the records' dataset.json."),
    }
    for name, (define, default, help_text, *enum) in own.items():
        if name not in FLAGS:
            if enum:
                define(name, default, enum[0], help_text)
            else:
                define(name, default, help_text)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("init_from", "model_dir", "train_files"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    overrides = {f.name: FLAGS[f.name].value for f in dataclasses.fields(settings.TrainConfig)
                if f.name not in _ARCHITECTURE and f.name in FLAGS}
    try:
        result = finetune(FLAGS.init_from, FLAGS.regime, dropout=FLAGS.dropout,
                          num_classes=FLAGS.num_classes, **overrides)
    except (FileNotFoundError, ValueError, TimeoutError, FloatingPointError) as e:
        logging.error("%s", e)
        raise SystemExit(f"sports1m-finetune: error: {e}") from None
    print(cli.json_text({k: result.get(k) for k in ("step", "loss", "validation", "model_path",
                                                    "learning_rate", "weights_sha256",
                                                    "transfer")}))


run = cli.entry(main, define=define_flags)


if __name__ == "__main__":
    run()
