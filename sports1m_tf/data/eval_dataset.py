"""Evaluation batches: every view of up to N clips per video, with the video's id.

The views and their order are described in docs/design.md ("Evaluation").

Clip selection: up to `clips_per_video` clips of each video, evenly spaced over
its clips in time (`clip_selection.spread_per_video`, from a first pass over the
records' context), so the same clips count whatever the number, order or
interleave of the shards; each clip is numbered by its rank in time among its
video's selected clips. Each clip yields its views consecutively, so per-clip
outputs reshape to [-1, views, C].
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from sports1m_tf.data import augment, clip_selection, frames, record_check, records
from sports1m_tf.data.clip_dataset import (check_label_counts, label_counts,
                                           resolve_frames_and_size)
from sports1m_tf.data.errors import ErrorCounter
from tfrecord_tools import schema


def eval_dataset(file_pattern: records.FilePattern, *, model: str, batch_size: int,
                 num_classes: int, clips_per_video: int = 20, views: int = 4,
                 multires: bool = False, input_size: int | None = None,
                 error_counter: ErrorCounter | None = None,
                 frame_indices: Sequence[int] | None = None,
                 clip_frames: int = schema.CLIP_FRAMES,
                 cycle_length: int = 8) -> tf.data.Dataset:
    """All evaluation views of up to `clips_per_video` clips of every video.

    Args:
      file_pattern: Globs or paths of clip-record shards.
      model: Model name (frames read, default crop size).
      batch_size: Views per batch (a multiple of `views` keeps each
        clip's views in one batch).
      num_classes: Length of `labels`.
      clips_per_video: Clips kept per video, evenly spaced in time; a
        video with fewer keeps all. Defaults to 20.
      views: 4: centre, centre flipped, top-left, bottom-right flipped
        (`augment.VIEWS`); 1: centre only. Defaults to 4.
      multires: Multires model (178-pixel crops).
      error_counter: ErrorCounter. Counts skipped records; made if None, and
        available as `dataset.error_counter`.
      frame_indices: ints. Frames to read, overriding `frames_needed(model)`.
      clip_frames: Frames per stored clip.
      cycle_length: Shards read at once.

    Returns:
      A `tf.data.Dataset` of dicts: `frames` uint8 [batch, T, S, S, 3],
      `media_id` string [batch], `labels` float32 multi-hot [batch, num_classes],
      `clip_index` int32 [batch] (0-based rank in time among the video's
      selected clips), `view_index` int32 [batch]
      (index into `augment.VIEWS`). Views of one clip are consecutive.

    Raises:
      ValueError: no file matches `file_pattern`, or `views` is not 1..4.
    """
    if not 1 <= views <= len(augment.VIEWS):
        raise ValueError(f"views must be between 1 and {len(augment.VIEWS)}, got {views}")
    indices, size = resolve_frames_and_size(model, multires, input_size, frame_indices,
                                            clip_frames)
    files = records.list_files(file_pattern)
    counter = error_counter if error_counter is not None else ErrorCounter()
    binding = counter.bind(files)
    rules = record_check.rules_for(files, num_classes, clip_frames)
    selected = clip_selection.keep_table(
        clip_selection.spread_per_video(clip_selection.list_clips(files), clips_per_video))

    def parse(file_index, record):
        def step():
            clip = records.parse_clip(record)
            return {"file_index": file_index, "media_id": clip["media_id"],
                    "clip_index": clip_selection.clip_index_of(selected, record),
                    "label_counts": label_counts(clip["labels"], num_classes),
                    "num_labels": tf.size(clip["labels"]),
                    "encoded": record_check.sound_clip(clip, rules, indices,
                                                       counter.problem_counter(binding),
                                                       min_size=size)[0]}
        return counter.guard(binding, file_index, step)

    def decode(clip):
        def step():
            encoded = clip["encoded"]
            height, width = frames.frame_shape(encoded)
            if views == 1:
                out = frames.decode_frames(
                    encoded, augment.centre_crop_window(height, width, size), size,
                    width)[tf.newaxis]
            else:
                out = augment.eval_views(frames.decode_frames(encoded), size, views)
            repeat = lambda t: tf.repeat(t[tf.newaxis], views, axis=0)
            return {"frames": out, "media_id": repeat(clip["media_id"]),
                    "label_counts": repeat(clip["label_counts"]),
                    "num_labels": repeat(clip["num_labels"]),
                    "clip_index": repeat(clip["clip_index"]),
                    "view_index": tf.range(views, dtype=tf.int32)}
        return counter.guard(binding, clip["file_index"], step)

    ds = records.read_records(files, shuffle_files=False, seed=None, deterministic=True,
                              cycle_length=cycle_length, watch=counter.read_watch(binding))
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # After the (counted) parse, so that an unparseable record counts as skipped.
    ds = ds.filter(lambda clip: clip["clip_index"] >= 0)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True).unbatch()

    def finish(batch):
        counts = check_label_counts(batch.pop("label_counts"), batch.pop("num_labels"),
                                    num_classes)
        return dict(batch, labels=tf.minimum(counts, 1.0))

    ds = ds.batch(batch_size).map(finish).prefetch(tf.data.AUTOTUNE)
    ds.error_counter = counter
    return ds
