"""Training / validation batches of clips: records → (uint8 frames, soft target).

The crop and flip are described in docs/design.md ("Input and augmentation").

Composition:
  shards (interleaved, each from its own random record when training, GZIP
  detected), and in each shard's reading thread, record by record: admitted
  (counted, checked against the skip budget) → parsed and checked
  (`record_check.sound_clip`), the model's frames kept
  → out of the reading threads 16 at a time → shuffle (of those frames only)
  → enumerate (the stream position seeds crops)
  → batch (encoded frames: no pixels copied)
  → ONE parallel map per batch: crop windows and flips for the whole batch,
    each frame decoded only in its window, targets
  → ignore_errors → prefetch.
A clip costs at least reading and parsing its record plus decoding its frames;
everything else is kept small (docs/input-pipeline.md, "Speed"): parsing where
the record was read, while it is in the CPU's cache, and shuffling only the
frames the model reads; maps on the single-threaded executor (no thread
hand-off per call), so without control flow; and every per-clip number
computed once per batch, since in a per-clip map the ops around a decode
cost as much as the decode. A record whose frames could fail to decode is
refused by its check, one record at a time, before it reaches a batch.
"""
from __future__ import annotations

import os
import secrets
from typing import Sequence

import tensorflow as tf

from sports1m_tf.data import augment, frames, record_check, records
from sports1m_tf.data.errors import ErrorCounter
from sports1m_tf.data.inline_map import inline_map
from tfrecord_tools import schema

# Records in the training shuffle buffer (see the `shuffle_buffer` argument).
DEFAULT_SHUFFLE_BUFFER = 1024

# Records a shard's reading thread hands on at once: every element that crosses the
# interleave's threads costs a wake-up, about a tenth of a 1-frame clip's CPU when
# records crossed one by one.
RECORDS_PER_HANDOFF = 16


def resolve_frames_and_size(model: str, multires: bool, input_size: int | None,
                            frame_indices: Sequence[int] | None,
                            clip_frames: int) -> tuple[list[int], int]:
    """The frame indices and the square crop size a model reads."""
    # Imported here: the data layer needs only these two facts about a model.
    from sports1m_tf.models import default_input_size, frames_needed
    indices = list(frame_indices) if frame_indices is not None else frames_needed(
        model, clip_frames)
    return indices, int(input_size or default_input_size(model, multires))


def label_counts(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """How often each class occurs in `labels` (int64 [..., L]): float32 [..., num_classes].

    Out-of-range indices (such as the padding `num_classes`) are not counted;
    `check_label_counts` catches them where a clip's labels are not padded.
    """
    return tf.math.bincount(tf.cast(labels, tf.int32), minlength=num_classes,
                            maxlength=num_classes, dtype=tf.float32, axis=-1)


def _padding(num_classes: int) -> tuple:
    """Padding of a parsed record `(flag, file_index, encoded, labels, frame size)` in a
    batch: labels are padded with `num_classes`, which counts as no class."""
    return (True, 0, "", tf.constant(num_classes, tf.int64), 0)


def check_label_counts(counts: tf.Tensor, num_labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Fails loudly when a clip had a label outside [0, num_classes) (a wrong `num_classes`).

    Args:
      counts: float32 [..., num_classes] from `label_counts`.
      num_labels: int32 [...]. Labels each clip listed.

    Returns:
      `counts`, once checked.
    """
    check = tf.debugging.assert_equal(
        tf.cast(tf.reduce_sum(counts, axis=-1), tf.int32), num_labels,
        message=f"a clip has a label index outside [0, {num_classes}): is num_classes right?")
    with tf.control_dependencies([check]):
        return tf.identity(counts)


def multi_hot_labels(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """float32 [num_classes]: 1 at each of `labels` (int64 [L]), 0 elsewhere."""
    counts = check_label_counts(label_counts(labels, num_classes), tf.size(labels), num_classes)
    return tf.minimum(counts, 1.0)


def soft_target(counts: tf.Tensor) -> tf.Tensor:
    """Uniform distribution over each clip's labels (a multi-label clip shares its target).

    Args:
      counts: float32 [..., num_classes]. Label counts or multi-hot; a class
        listed twice counts once.

    Returns:
      float32 [..., num_classes], rows summing to 1 (all zeros for a clip
      without labels, which then adds nothing to the loss).
    """
    hot = tf.minimum(counts, 1.0)
    return tf.math.divide_no_nan(hot, tf.reduce_sum(hot, axis=-1, keepdims=True))


def clip_dataset(file_pattern: records.FilePattern, *, model: str, training: bool,
                 batch_size: int, num_classes: int, multires: bool = False,
                 input_size: int | None = None, seed: int | None = None, flip: bool = True,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, repeat: int | None = None,
                 drop_remainder: bool | None = None,
                 error_counter: ErrorCounter | None = None,
                 frame_indices: Sequence[int] | None = None,
                 clip_frames: int = schema.CLIP_FRAMES,
                 cycle_length: int = records.DEFAULT_CYCLE_LENGTH, keep=None) -> tf.data.Dataset:
    """Batches of clips for training (random crop + flip) or validation (centre crop).

    Args:
      file_pattern: Globs or paths of clip-record shards.
      model: Model name; sets the frames read (`frames_needed`) and the
        default crop size (`default_input_size`).
      training: Shuffle, random crop, random flip; else centre crop, no
        flip, no shuffle, deterministic order.
      num_classes: Length of the target.
      multires: Multires model (178-pixel crops).
      input_size: Crop size override (small test models).
      seed: Makes shard order, shuffling, crops and flips reproducible;
        None draws a fresh seed.
      flip: Random horizontal flips when training.
      shuffle_buffer: Records in the shuffle buffer (≈180 KB each for
        16 frames of 200×200: ≈190 MB at the default 1024).
      repeat: None: one pass; -1: forever; n: n passes.
      drop_remainder: Drop the last partial batch; defaults to `training`.
      error_counter: ErrorCounter. Counts skipped records per file; a new one
        is made if None. Either way it is also `dataset.error_counter`.
      frame_indices: ints. Frames to read, overriding `frames_needed(model)`.
      clip_frames: Frames per stored clip.
      cycle_length: Shards read at once (in training each from its own
        random record, so they are not read in lockstep).
      keep: `fn(record) -> bool tensor` or None. Reads only the records it keeps
        (e.g. `clip_selection.validation_filter`), before any decoding.

    Returns:
      A `tf.data.Dataset` of `(frames, target)`: frames uint8
      [batch, T, S, S, 3] (T = len(frames_needed(model)), S = input_size or
      170, 178 for multires), target float32 [batch, num_classes].

    Raises:
      ValueError: no file matches `file_pattern`, or `shuffle_buffer` is below 1
        in training.
    """
    if training and shuffle_buffer < 1:
        raise ValueError(f"--shuffle_buffer={shuffle_buffer}: the training shuffle buffer "
                         "holds at least 1 record (1 = no shuffling beyond the shards')")
    indices, size = resolve_frames_and_size(model, multires, input_size, frame_indices,
                                            clip_frames)
    files = records.list_files(file_pattern)
    counter = error_counter if error_counter is not None else ErrorCounter()
    binding = counter.bind(files)
    # A batch's records are finished together once it is decoded, the batches of
    # every parallel call at once.
    counter.allow_in_flight(batch_size * ((os.cpu_count() or 1) + 1))
    if seed is None:
        seed = secrets.randbits(31)
        deterministic = not training
        shuffle_seed = None
    else:
        deterministic, shuffle_seed = True, seed

    ds = _parsed_records(files, indices, size, num_classes, counter, binding, keep,
                         training=training,
                         seed=shuffle_seed, deterministic=deterministic,
                         cycle_length=cycle_length,
                         rules=record_check.rules_for(files, num_classes, clip_frames))
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    if repeat is not None and repeat != 1:
        ds = ds.repeat(None if repeat < 0 else repeat)
        # Once over the budget, the shards' readers end and every pass is empty:
        # a repeat ends at its first empty pass, a shuffle fused with it would
        # go on reading empty passes forever.
        options = tf.data.Options()
        options.experimental_optimization.shuffle_and_repeat_fusion = False
        ds = ds.with_options(options)
    # The position in the (reproducible) stream seeds the clip's crop and flip:
    # stateless ops, so parallel maps cannot change which clip gets which.
    ds = ds.enumerate()

    ds = ds.padded_batch(batch_size, drop_remainder=training if drop_remainder is None
                         else drop_remainder,
                         padding_values=(tf.constant(0, tf.int64), _padding(num_classes)))
    load = _batch_loader(counter, binding, size, num_classes, batch_size, seed=seed,
                         training=training, flip=flip)
    ds = inline_map(ds, load, parallel=True, deterministic=deterministic)
    ds = ds.ignore_errors(log_warning=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.error_counter = counter
    return ds


def _parsed_records(files: Sequence[str], indices: Sequence[int], size: int,
                    num_classes: int, counter: ErrorCounter,
                    binding: int | None, keep, *, training: bool, seed: int | None,
                    deterministic: bool, cycle_length: int,
                    rules: record_check.Rules) -> tf.data.Dataset:
    """`(True, file_index, encoded [T], labels, frame size [2])` per record, parsed where it
    was read (the flag: `ErrorCounter.admit`).

    Record by record, where it was read: the budget check first (a stream whose
    records all fail must still end), then the parse while the record is in
    cache, and the record's verdict (`record_check`, with the `size` crop); only a
    sound record's frames the model reads go on (to the shuffle, in training), in
    groups of `RECORDS_PER_HANDOFF` out of the reading thread.
    """
    def parse(file_index, record):  # the record was counted as started by `admit`
        clip = records.parse_clip(record)
        encoded, frame_size = record_check.sound_clip(
            clip, rules, indices, counter.problem_counter(binding), min_size=size)
        return file_index, encoded, clip["labels"], frame_size

    stand_in = record_check.stand_in_record(rules, indices, size)

    def read_shard(stream):
        if keep is not None:
            stream = stream.filter(lambda file_index, record: keep(record))
        # A failed record (counted), or a cut shard's read error, goes no further
        # than its shard: an error that reached the repeat could end a training
        # stream whose pass began with it.
        return counter.admit(stream, binding, parse, stand_in).ignore_errors().padded_batch(
            RECORDS_PER_HANDOFF, padding_values=_padding(num_classes))

    return records.read_records(files, shuffle_files=training, seed=seed,
                                deterministic=deterministic, cycle_length=cycle_length,
                                random_start=training, each_shard=read_shard,
                                watch=counter.read_watch(binding)).unbatch()


def _batch_loader(counter: ErrorCounter, binding: int | None, size: int, num_classes: int,
                  batch_size: int, *, seed: int, training: bool, flip: bool):
    """The per-batch map: `(positions, (_, file_index, encoded, labels, frame_size))` → (frames, target).

    Labels come padded with `num_classes` (not counted). A last partial batch is
    decoded as a full one whose missing clips repeat its last, then cut.
    """
    seed_tensor = tf.constant(seed, tf.int64)

    def load(positions, element):
        _, file_index = element[:2]  # the flag of `ErrorCounter.admit`, always True here
        encoded, labels, sizes = counter.resume(binding, file_index, *element[2:])
        count = tf.shape(encoded)[0]
        if encoded.shape[0] != batch_size:
            fill = tf.minimum(tf.range(batch_size), count - 1)
            encoded, sizes = tf.gather(encoded, fill), tf.gather(sizes, fill)
        if training:
            # The stream position of the batch's first clip seeds the batch's draws:
            # stateless, so parallel maps cannot change which clip gets which.
            offsets, flips = augment.random_crop_offsets(
                sizes, size, tf.stack([seed_tensor, positions[0]]), batch_size)
        else:
            offsets, flips = augment.centre_crop_offsets(sizes, size), None
        clips = frames.decode_crops(encoded, sizes, offsets, flips if flip else None, size,
                                    batch_size)[:count]
        return counter.finish(binding, file_index,
                              (clips, soft_target(label_counts(labels, num_classes))))

    return load
