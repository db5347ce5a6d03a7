"""Checks every consumer of clip records runs before its first step.

- `check_crop_fits`: the stored frames are at least the model's crop. Otherwise
  every record would fail to crop, and an input pipeline that skips failing
  records would skip all of them, forever.
- `check_class_names`: the records (or a manifest) name the same classes, in the
  same order, as the model's outputs. Otherwise labels and metrics silently
  mean other classes.
- `warn_batch_larger_than_data`: a batch of more clips than the records hold
  reads the data many times over before its first step, which looks like a hang.
"""
from __future__ import annotations

from typing import Sequence

from sports1m_tf import cli
from sports1m_tf.data import dataset_info
from tfrecord_tools import summary


class InputError(cli.UserError, ValueError):
    """Records that cannot feed this model: the message names the file, the problem, the fix.

    A `ValueError` too, so library callers that catch ValueError keep working.
    """


def stored_frame_size(files: Sequence[str]) -> tuple[int, int, str] | None:
    """(height, width, where it was read) of the stored frames, or None if unknown.

    From the `dataset.json` beside the records (the smallest frame size any of
    its splits whose shards are among `files` was converted with), else from the
    first record's `image/height` and `image/width`.
    """
    info, path = dataset_info.dataset_info(files)
    if info:
        names = {f.rsplit("/", 1)[-1] for f in files}
        sizes = [int(section["settings"]["frame_size"])
                 for section in info.get("splits", {}).values()
                 if names & set(section.get("shards", ()))
                 and section.get("settings", {}).get("frame_size")]
        if sizes:
            return min(sizes), min(sizes), path
    return _first_record_size(files)


def _first_record_size(files: Sequence[str]) -> tuple[int, int, str] | None:
    import tensorflow as tf

    from sports1m_tf.data import records
    from tfrecord_tools import schema
    for path in files:
        try:
            ds = tf.data.TFRecordDataset(path, compression_type=records.compression_of(path))
            for record in ds.take(1):
                context, _ = tf.io.parse_single_sequence_example(
                    record, context_features={
                        schema.IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
                        schema.IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64)})
                return (int(context[schema.IMAGE_HEIGHT]), int(context[schema.IMAGE_WIDTH]),
                        f"the first record of {path}")
        except (tf.errors.OpError, ValueError):
            continue  # an unreadable shard is reported by the pipeline's skip counts
    return None


def check_crop_fits(files: Sequence[str], crop: int, *, crop_flag: str = "--input_size") -> None:
    """Fails unless the stored frames are at least `crop` pixels on each side.

    Args:
      files: the record files a pipeline will read.
      crop: the square crop (model input) size.
      crop_flag: how the user sets the crop, for the message.

    Raises:
      InputError: frames smaller than the crop; names the sizes and both fixes.
    """
    found = stored_frame_size(files)
    if found is None:
        return
    height, width, where = found
    if min(height, width) < crop:
        raise InputError(
            f"the records' frames are {height}x{width} ({where}) but the model crops "
            f"{crop}x{crop}: convert the videos again with --frame_size={crop} or more, or "
            f"use a model with a smaller input ({crop_flag}={min(height, width)} or less)")


def check_class_names(model_names: Sequence[str] | None, data_names: Sequence[str] | None,
                      *, model_source: str, data_source: str) -> None:
    """Fails when the model's classes and the data's are not the same list.

    Either list may be unknown (None or empty): then there is nothing to compare.

    Args:
      model_names: the model's output classes (the class names its run recorded).
      data_names: the records' (dataset.json) or manifest's classes.
      model_source: where the model's names come from, for the message.
      data_source: where the data's names come from, for the message.

    Raises:
      InputError: the lists differ; the message names the differences.
    """
    if not model_names or not data_names:
        return
    differences = summary.class_differences(model_names, data_names)
    if differences:
        raise InputError(
            f"the model's classes ({model_source}) are not the data's ({data_source}): "
            f"{differences}. Labels would mean other classes: use records converted with "
            "the model's class list (sports1m-convert --labels=FILE with one class name a "
            "line, in the model's order)")


def warn_empty_classes(files: Sequence[str]) -> list[str]:
    """Logs a warning naming the classes with 0 clips in the records; returns them."""
    from absl import logging
    info, path = dataset_info.dataset_info(files)
    if not info:
        return []
    names = {f.rsplit("/", 1)[-1] for f in files}
    counts = dict.fromkeys(info.get("classes", ()), 0)
    for section in info.get("splits", {}).values():
        if names & set(section.get("shards", ())):
            for name, n in section.get("clips_per_class", {}).items():
                counts[name] = counts.get(name, 0) + int(n)
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        logging.warning("%d of %d classes have no clip in these records (%s): %s. The model "
                        "keeps an output for each, which no clip teaches", len(empty),
                        len(counts), path, ", ".join(empty[:20]) + (" ..." if len(empty) > 20
                                                                    else ""))
    return empty


def check_shards_whole(files: Sequence[str]) -> None:
    """Fails when a shard's size differs from the size its converter recorded.

    A cut shard reads as whole up to the cut and then ends with a read error
    that the input pipeline cannot charge to single records, so its lost clips
    would go unnoticed. Shards without a recorded size (older conversions, other
    writers) are not checked.

    Raises:
      InputError: names the shard, both sizes and the fixes.
    """
    import os

    from tfrecord_tools import fileio
    by_folder: dict[str, list[str]] = {}
    for path in files:
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    for folder, paths in by_folder.items():
        info, info_path = dataset_info.dataset_info(paths)
        recorded = {}
        for section in (info or {}).get("splits", {}).values():
            recorded.update(section.get("shard_bytes") or {})
        for path in paths:
            expected = recorded.get(os.path.basename(path))
            if expected is not None and fileio.size(path) != expected:
                raise InputError(
                    f"{path} is {fileio.size(path):,} bytes but {info_path} records "
                    f"{expected:,}: the shard was cut short or replaced. Convert the split "
                    "again (sports1m-convert with --overwrite), or leave the shard out")


def list_run_files(train_files: Sequence[str], val_files: Sequence[str] | None
                   ) -> tuple[Sequence[str], Sequence[str]]:
    """The training and validation record files, each glob listed (once per run).

    Raises:
      InputError: a pattern matches no file.
    """
    from sports1m_tf.data import records
    try:
        return (records.list_files(train_files),
                records.list_files(val_files) if val_files else records.RecordFiles())
    except ValueError as e:
        raise InputError(f"{e}: check --train_files / --val_files") from None


def clip_count(files: Sequence[str]) -> tuple[int, bool]:
    """(clips in `files`, whether that is exact): from `dataset.json` where it counts
    them, else estimated from each shard's size and first record."""
    import os

    from sports1m_tf.data import records
    info, _ = dataset_info.dataset_info(files)
    names = {os.path.basename(f): f for f in files}
    total, counted = 0, set()
    for section in (info or {}).get("splits", {}).values():
        shards, per_shard = section.get("shards", []), section.get("clips_per_shard")
        if shards and set(shards) <= set(names) and "clips" in section:
            total += int(section["clips"])
            counted |= set(shards)
        elif isinstance(per_shard, list) and len(per_shard) == len(shards):
            for name, n in zip(shards, per_shard):
                if name in names and name not in counted:
                    total += int(n)
                    counted.add(name)
    rest = [path for name, path in names.items() if name not in counted]
    total += sum(records.estimated_records(path, records.compression_of(path)) for path in rest)
    return total, not rest


def warn_batch_larger_than_data(files: Sequence[str], batch_size: int) -> str | None:
    """Logs (and returns) a warning when one batch holds more clips than `files` do.

    A pipeline that repeats its records fills such a batch by reading them all
    several times (and shuffles them in a buffer first): minutes of silence
    before the first step.
    """
    from absl import logging
    clips, exact = clip_count(files)
    if clips <= 0 or batch_size <= clips:
        return None
    passes = -(-batch_size // clips)
    message = (f"--batch_size={batch_size} is larger than the {'' if exact else 'about '}"
               f"{clips} clips of the training records: every batch reads them {passes} "
               "times, and the first step waits for it. Use a batch of at most the clip "
               "count, or more data")
    logging.warning("%s", message)
    return message


def check_run_inputs(train_files: Sequence[str], val_files: Sequence[str] | None,
                     crop: int, batch_size: int | None = None) -> None:
    """The checks a training run makes before its first step (crop size, empty classes,
    a batch larger than the data).

    Raises:
      InputError: frames smaller than the crop, or no file matches a pattern.
    """
    train, val = list_run_files(train_files, val_files)
    check_shards_whole([*train, *val])
    check_crop_fits(train, crop)
    if val:
        check_crop_fits(val, crop)
    warn_empty_classes(train)
    if batch_size:
        warn_batch_larger_than_data(train, batch_size)
