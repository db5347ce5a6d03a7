"""sports1m-eval: clip and video Hit@k, per-class AP, confusions and model comparison.

Each sampled clip of a video (up to --clips_per_video) is seen in --views crops
and flips; the softmax outputs of all views of all clips are averaged into the
video's prediction (docs/design.md, "Evaluation"). Several models (repeat --model_dir,
--checkpoint or --keras_model) are evaluated as one ensemble, the paper's
"CNN Average": their outputs are averaged clip by clip, hence video by video.

Usage:
  # one training run (its latest checkpoint); scalars also go to runs/slow/eval/
  sports1m-eval --model_dir=runs/slow --eval_files='records/test-*.tfrecord' \
      --output_dir=reports/slow
  # CNN Average of four runs
  sports1m-eval --model_dir=runs/single --model_dir=runs/early --model_dir=runs/late \
      --model_dir=runs/slow --eval_files='records/test-*' --output_dir=reports/average
  # a saved model file, and the per-class ΔAP against another report (paper Table 2)
  sports1m-eval --keras_model=runs/slow/model.keras --eval_files='records/test-*' \
      --output_dir=reports/slow_vs_single --compare_with=reports/single/metrics.json
  # all local GPUs (or, to try the distributed path without one, --cpu_devices=2)
  sports1m-eval --model_dir=runs/slow --eval_files=... --output_dir=... --strategy=mirrored

Writes to --output_dir: metrics.json, predictions.csv, video_probs.npz,
confused_pairs.csv, confusion_matrix.png, predictions_montage.png (and
delta_ap.csv with --compare_with).

The work is split by job: `sports1m_tf.evaluation.video_scores` loads the models and
turns the records into one averaged prediction per video; `sports1m_tf.evaluation.reports`
computes the metrics and writes the report; this module is the command.
"""
from __future__ import annotations

import os
from typing import Sequence

from absl import app, flags, logging

from sports1m_tf import cli, distribute, settings
from sports1m_tf.evaluation import reports
from sports1m_tf.evaluation.video_scores import (  # noqa: F401  (the evaluation's Python API)
    Member, as_member, load_members, score_videos, resolve_classes)


def evaluate(members: Sequence, eval_files, *, output_dir: str,
             config: settings.EvalConfig = settings.EvalConfig(), strategy=None,
             compare_with: str | None = None, class_names: Sequence[str] | None = None,
             write_tensorboard: bool = True) -> dict:
    """Evaluates one model or an ensemble on clip records and writes the report.

    Args:
      members: `Member`s (from `load_members`) or keras models; several = an
        ensemble whose per-clip outputs are averaged.
      eval_files: record globs or paths.
      output_dir: where the report goes (created).
      config: clips per video, views, batch size (of views, over all replicas), figures.
      strategy: `tf.distribute.Strategy` or None (models must be built in its scope).
      compare_with: another report's metrics.json → delta_ap.csv.
      class_names: C names; default from dataset.json, else the run config.
      write_tensorboard: scalars to RUN_DIR/eval/ for members from a training run.

    Returns:
      The metrics dict written to `output_dir/metrics.json`.
    """
    from sports1m_tf.data import dataset_info, list_files

    settings.check_settings(config)
    members = [as_member(m) for m in members]
    if not members:
        raise ValueError("no model to evaluate: give --model_dir, --checkpoint or --keras_model")
    files = list_files(eval_files)
    from sports1m_tf.data import input_checks
    input_checks.check_shards_whole(files)
    for size in sorted({m.identity["describe"]["input_size"] for m in members}):
        input_checks.check_crop_fits(files, size)
    names = list(class_names) if class_names is not None else resolve_classes(members, files)
    num_classes = len(names)
    if any(m.identity["describe"]["num_classes"] != num_classes for m in members):
        raise ValueError(f"{num_classes} class names for models of "
                         f"{members[0].identity['describe']['num_classes']} classes")
    os.makedirs(output_dir, exist_ok=True)
    info, _ = dataset_info.dataset_info(files)

    predicted = score_videos(
        members, files, num_classes=num_classes, clips_per_video=config.clips_per_video,
        views=config.views, batch_size=config.batch_size, strategy=strategy,
        montage_videos=config.montage_videos,
        total_videos=dataset_info.expected_videos(files, info), show_progress=config.progress)
    recorded = dict(eval_files=eval_files if isinstance(eval_files, str) else list(eval_files),
                    num_files=len(files), clips_per_video=config.clips_per_video,
                    views=config.views, batch_size=config.batch_size,
                    strategy=type(strategy).__name__ if strategy else "default",
                    replicas=strategy.num_replicas_in_sync if strategy else 1)
    result = reports.metrics_report(predicted, names, [m.identity for m in members], recorded)
    reports.write_report(output_dir, result, predicted, names,
                         confusion_classes=config.confusion_classes, compare_with=compare_with)
    if write_tensorboard:
        reports.write_tensorboard(result["members"])
    logging.info("%d videos, %d clips: clip Hit@1 %.4f, video Hit@1 %.4f, Hit@5 %.4f, "
                 "mAP %s → %s", result["videos"], result["clips"], result["clip_hit_at_1"],
                 result["video_hit_at_1"], result["video_hit_at_5"], result["mAP"], output_dir)
    return result


# ---------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
    """Declares the command's flags (at run time: other commands' modules, imported in
    the same process by tests, declare flags of the same names, e.g. --output_dir)."""
    flags.DEFINE_multi_string("model_dir", [], "Training run directory (repeat for an ensemble).")
    flags.DEFINE_multi_string("checkpoint", [], "Checkpoint prefix RUN_DIR/ckpt-STEP (repeatable).")
    flags.DEFINE_multi_string("keras_model", [], ".keras model file (repeatable).")
    flags.DEFINE_multi_string("eval_files", None, "Clip-record globs or paths.")
    settings.define_eval_flags()
    flags.DEFINE_string("output_dir", None, "Report directory.")
    flags.DEFINE_string("compare_with", None, "Another report's metrics.json: per-class ΔAP.")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored"],
                      "default: one device; mirrored: all local GPUs (MirroredStrategy).")
    flags.DEFINE_integer("cpu_devices", 1, "With --strategy=mirrored and no GPU: split the CPU "
                         "into this many logical devices (exercises the distributed path).")


def main(argv: Sequence[str]) -> None:
    del argv
    for name in ("eval_files", "output_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    if not (FLAGS.model_dir or FLAGS.checkpoint or FLAGS.keras_model):
        raise app.UsageError("give at least one --model_dir, --checkpoint or --keras_model")
    config = settings.eval_config_from_flags()
    try:
        settings.check_settings(config)  # before TensorFlow starts
    except settings.SettingError as e:
        raise cli.UserError(str(e)) from None
    import tensorflow as tf

    strategy = None
    if FLAGS.strategy == "mirrored":
        devices = None
        if FLAGS.cpu_devices > 1 and not tf.config.list_physical_devices("GPU"):
            distribute.split_cpu(FLAGS.cpu_devices)
            devices = [f"/cpu:{i}" for i in range(FLAGS.cpu_devices)]
        strategy = tf.distribute.MirroredStrategy(devices)
    with (strategy.scope() if strategy else tf.distribute.get_strategy().scope()):
        members = load_members(FLAGS.model_dir, FLAGS.checkpoint, FLAGS.keras_model)
    try:
        evaluate(members, FLAGS.eval_files, output_dir=FLAGS.output_dir,
                 config=config, strategy=strategy,
                 compare_with=FLAGS.compare_with)
    except ValueError as e:  # records or settings that do not fit the models
        raise cli.UserError(str(e)) from None


run = cli.entry(main, define=define_flags)


if __name__ == "__main__":
    run()
