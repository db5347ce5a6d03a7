"""Clip records → embedding rows through a trained model (a run folder), for converted datasets.

The clips are chosen as the evaluation chooses them (up to N a video, evenly
spaced in time, whatever the shard layout: `clip_selection.spread_per_video`);
each clip's embedding is computed as the SavedModel's `embed_video` computes it
(`export.signatures.clip_embeddings`: the layer's activations averaged over the 4
evaluation views of the stored frames), so records and video files give the same
embedding for the same frames. A video's row is the mean over its clips.
Imports TensorFlow.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from export import signatures
from sports1m_tf.data import clip_selection, input_checks, records
from sports1m_tf.models import describe
from sports1m_tf.evaluation.video_scores import VideoAccumulator
from tfrecord_tools import schema

_CONTEXT = {schema.MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
            schema.START_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            schema.END_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            schema.FRAME_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=0.0)}


def clip_batches(files: Sequence[str], frame_indices: Sequence[int],
                 selection: clip_selection.Selection, batch_size: int) -> tf.data.Dataset:
    """The selected clips' frames and times, in batches.

    Args:
      files: clip-record files.
      frame_indices: the clip frames to decode (the model's).
      selection: the clips to read (`clip_selection.spread_per_video`, ...).
      batch_size: Clips a batch.

    Returns:
      A dataset of dicts: `frames` uint8 [B, T, S, S, 3] (the model's T frames
      at the stored size S), `media_id` string [B], `seconds` float64 [B, 2]
      (first frame's time, and the time just after the last frame).
    """
    table = clip_selection.keep_table(selection)

    def parse(_, record):
        context, sequence = tf.io.parse_single_sequence_example(
            record, context_features=_CONTEXT,
            sequence_features={schema.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([],
                                                                                   tf.string)})
        encoded = records.encoded_frames_at(sequence[schema.IMAGE_ENCODED], frame_indices)
        frames = tf.stack([tf.io.decode_jpeg(encoded[i], channels=3)
                           for i in range(len(frame_indices))])
        start = tf.cast(context[schema.START_TIMESTAMP], tf.float64) / 1e6
        last = tf.cast(context[schema.END_TIMESTAMP], tf.float64) / 1e6
        frame_seconds = 1.0 / tf.maximum(tf.cast(context[schema.FRAME_RATE], tf.float64), 1e-6)
        return {"frames": frames, "media_id": context[schema.MEDIA_ID],
                "seconds": tf.stack([start, last + frame_seconds]),
                "keep": clip_selection.clip_index_of(table, record) >= 0}

    ds = records.read_records(files, shuffle_files=False, seed=None, deterministic=True)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True).filter(lambda clip: clip["keep"])
    ds = ds.map(lambda clip: {k: v for k, v in clip.items() if k != "keep"})
    return ds.batch(batch_size).prefetch(2)


def record_embeddings(model: keras.Model, file_pattern, *,
                      layer: str = signatures.DEFAULT_EMBEDDING_LAYER, max_clips: int = 20,
                      batch_size: int = 32, per_clip: bool = False
                      ) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """Embedding rows of the clips in clip records.

    Args:
      model: a `sports1m_tf.models` model (a run's, `run_folder.restore_model`).
      file_pattern: str or list of str. Record globs or paths.
      layer: `fc7` or `fc6`.
      max_clips: Most clips a video, evenly spaced in time.
      batch_size: Clips a batch (4 views each go through the model).
      per_clip: One row per clip; otherwise one per video, after every clip is read.

    Yields:
      (video id, float32 [k, d] rows, float64 [k, 2] (start, end) seconds or None
      for per-video rows), in the order the records are read.
    """
    info = describe(model)
    files = records.list_files(file_pattern)
    input_checks.check_crop_fits(files, info["input_size"], crop_flag="the run's input_size")
    features = signatures.embedding_model(model, layer)

    @tf.function(reduce_retracing=True)
    def embed(frames):
        return signatures.clip_embeddings(lambda x: features(x, training=False), frames,
                                          info["input_size"])

    videos = None if per_clip else VideoAccumulator(1, (features.output_shape[-1],))
    selection = clip_selection.spread_per_video(clip_selection.list_clips(files), max_clips)
    for batch in clip_batches(files, info["frames"], selection, batch_size):
        rows = embed(batch["frames"]).numpy()
        ids = [m.decode("utf-8") for m in batch["media_id"].numpy()]
        if videos is not None:
            videos.add(ids, rows, np.zeros((len(ids), 1), bool))
            continue
        seconds = batch["seconds"].numpy()
        for start, stop in _runs(ids):
            yield ids[start], rows[start:stop], seconds[start:stop]
    if videos is not None:
        result = videos.result()
        for video, row in zip(result.media_ids, result.probs):
            yield video, row[np.newaxis], None


def _runs(ids: Sequence[str]) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal consecutive ids."""
    bounds = [0] + [i for i in range(1, len(ids)) if ids[i] != ids[i - 1]] + [len(ids)]
    return list(zip(bounds[:-1], bounds[1:]))
