"""Clip records → batches of uint8 clips: training/validation and evaluation views.

The crops, flips and views are described in docs/design.md ("Input and augmentation").
Importing this package imports TensorFlow.
"""
from sports1m_tf.data.augment import VIEWS, centre_crop, eval_views, flip_clip
from sports1m_tf.data.clip_dataset import clip_dataset, multi_hot_labels, soft_target
from sports1m_tf.data.errors import ErrorCounter
from sports1m_tf.data.eval_dataset import eval_dataset
from sports1m_tf.data.records import compression_of, list_files, parse_clip

__all__ = ["VIEWS", "ErrorCounter", "centre_crop", "clip_dataset", "compression_of",
           "eval_dataset", "eval_views", "flip_clip", "list_files", "multi_hot_labels", "parse_clip",
           "soft_target"]
