"""Which clips of which videos an evaluation reads, whatever the shard layout.

A record names its video (`clip/media_id`) and its start time
(`clip/start/timestamp`), but not its rank among the video's clips, and the
converter deals a video's clips over the shards in time order. Reading "the first
N clips of each video" would therefore score the start of every video, and which
clips count would depend on the number and order of shards.

So selection takes two passes. `list_clips` reads every record's context only (no
frame is decoded) and lists each video's clip start times. A selection function
then picks clips by time:
  - `spread_per_video`: up to N clips of every video, evenly spaced over the
    video's clips in time (video-level evaluation; a video with fewer uses all);
  - `spread_over_videos`: a budget of clips spread over as many videos as it
    allows, each video's share evenly spaced in time (validation during training).
`keep_table` turns a selection into a lookup `(media_id, start) -> clip index`
that the reading pipeline filters on. The same records give the same selection
in any shard layout.
"""
from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import numpy as np

Selection = Mapping[bytes, Sequence[int]]  # media_id -> chosen start times (µs), in time order

_KEY_SEPARATOR = b"\x00"  # cannot occur in a media id read from a file name or a URL


def list_clips(files: Sequence[str], *, batch_size: int = 512) -> dict[bytes, np.ndarray]:
    """Every video's clip start times (µs, ascending, distinct), from the records' context.

    Args:
      files: record files (GZIP or not).
      batch_size: records parsed per call.

    Returns:
      media_id (bytes) -> int64 array of start times. Records that cannot be
      parsed are left out (the reading pipeline counts them as skipped).
    """
    import tensorflow as tf

    from sports1m_tf.data import records
    from tfrecord_tools import schema

    features = {schema.MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
                schema.START_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=-1)}

    def parse_one(record):
        context, _ = tf.io.parse_single_sequence_example(record, context_features=features)
        return context[schema.MEDIA_ID], context[schema.START_TIMESTAMP]

    ids: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    for path in files:
        ds = tf.data.TFRecordDataset(path, compression_type=records.compression_of(path),
                                     buffer_size=1 << 20)
        # One bad record must not drop its whole batch: parse one by one, skipping failures.
        ds = ds.map(parse_one, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
        for media, start in ds.batch(batch_size).prefetch(2).as_numpy_iterator():
            ids.append(media)
            starts.append(start)
    if not ids:
        return {}
    media = np.concatenate(ids)
    start = np.concatenate(starts)
    order = np.lexsort((start, media))
    media, start = media[order], start[order]
    out: dict[bytes, np.ndarray] = {}
    bounds = np.flatnonzero(media[1:] != media[:-1]) + 1
    for chunk_ids, chunk_starts in zip(np.split(media, bounds), np.split(start, bounds)):
        out[bytes(chunk_ids[0])] = np.unique(chunk_starts)
    return out


def evenly_spaced(starts: np.ndarray, count: int) -> list[int]:
    """`count` of `starts` (ascending) spread evenly over them, or all when there are fewer."""
    n = len(starts)
    if count >= n:
        return [int(s) for s in starts]
    picks = ((np.arange(count) + 0.5) * n / count).astype(np.int64)
    return [int(starts[i]) for i in picks]


def spread_per_video(clips: Mapping[bytes, np.ndarray], clips_per_video: int) -> dict:
    """Up to `clips_per_video` clips of each video, evenly spaced in time."""
    return {media: evenly_spaced(starts, clips_per_video) for media, starts in clips.items()}


def _video_order(media_ids, seed: int) -> list[bytes]:
    return sorted(media_ids, key=lambda m: hashlib.sha256(str(seed).encode() + m).digest())


def spread_over_videos(clips: Mapping[bytes, np.ndarray], budget: int, *, seed: int = 0) -> dict:
    """`budget` clips from as many videos as possible, each video's share spread in time.

    Every video gets an equal share (a video with fewer clips gives all of them and
    its unused share goes to the others); with fewer clips than videos, one clip
    each of `budget` videos picked by a seeded order. Deterministic for given records.

    Args:
      clips: `list_clips`' result.
      budget: Clips to select in all.
      seed: Order in which videos get the remainder (and, with a small budget,
        which videos are used).

    Returns:
      media_id -> chosen start times.
    """
    order = _video_order(clips, seed)
    if budget < len(order):
        return {m: evenly_spaced(clips[m], 1) for m in order[:budget]}
    shares = dict.fromkeys(order, 0)
    left, open_videos = budget, list(order)
    while left > 0 and open_videos:
        each = max(left // len(open_videos), 1)
        for m in list(open_videos):
            take = min(each, len(clips[m]) - shares[m], left)
            shares[m] += take
            left -= take
            if shares[m] == len(clips[m]):
                open_videos.remove(m)
            if left == 0:
                break
    return {m: evenly_spaced(clips[m], shares[m]) for m in order if shares[m]}


def selected_count(selection: Selection) -> int:
    return sum(len(v) for v in selection.values())


def key_strings(media_ids, starts):
    """The lookup key of clips (tensors or numpy alike): media_id NUL start."""
    import tensorflow as tf
    return tf.strings.join([media_ids, tf.strings.as_string(starts)],
                           separator=_KEY_SEPARATOR.decode())


def keep_table(selection: Selection):
    """A static hash table `key_strings(media_id, start) -> clip index` (rank in time
    among the video's selected clips); -1 for clips not selected."""
    import tensorflow as tf
    keys, values = [], []
    for media, starts in selection.items():
        for rank, start in enumerate(starts):
            keys.append(media + _KEY_SEPARATOR + str(int(start)).encode())
            values.append(rank)
    if not keys:  # a table needs one entry; this key matches no clip
        keys, values = [_KEY_SEPARATOR], [-1]
    with tf.init_scope():
        return tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string),
                                                tf.constant(values, tf.int32)),
            default_value=-1)


def clip_index_of(table, record):
    """The selected clip index of a serialised record (int32 [], -1: not selected)."""
    import tensorflow as tf

    from tfrecord_tools import schema
    context, _ = tf.io.parse_single_sequence_example(record, context_features={
        schema.MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
        schema.START_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=-1)})
    return table.lookup(key_strings(context[schema.MEDIA_ID], context[schema.START_TIMESTAMP]))


def record_filter(selection: Selection):
    """`keep(record) -> bool` for `tf.data` filters: the record is a selected clip."""
    table = keep_table(selection)
    return lambda record: clip_index_of(table, record) >= 0


def validation_filter(files: Sequence[str], budget: int, *, seed: int = 0):
    """The filter of a representative validation subset of `budget` clips (see module doc).

    Returns:
      (keep function for `clip_dataset(..., keep=)`, clips selected, videos used, videos).
    """
    clips = list_clips(files)
    selection = spread_over_videos(clips, budget, seed=seed)
    return record_filter(selection), selected_count(selection), len(selection), len(clips)


def validation_keep(files: Sequence[str], val_batches: int, batch_size: int, *, seed: int = 0):
    """The `keep` filter of validation during training: `val_batches` x `batch_size`
    clips spread over as many videos as that allows, the same at every validation.

    Returns:
      A `keep(record)` function, or None when `val_batches` is 0 (the whole set).
    """
    if val_batches <= 0:
        return None
    from absl import logging

    from sports1m_tf.data import records
    keep, clips, used, videos = validation_filter(records.list_files(files),
                                                  val_batches * batch_size, seed=seed)
    logging.info("validation reads %d clips from %d of %d videos (the same at every "
                 "validation)", clips, used, videos)
    return keep
