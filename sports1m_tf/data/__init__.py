"""Clip records → batches of uint8 clips (SPEC §3): training/validation and evaluation views."""
from sports1m_tf.data.augment import (VIEWS, centre_crop, eval_views, flip_clip,
                                      random_crop_and_flip)
from sports1m_tf.data.clip_dataset import clip_dataset, multi_hot, soft_target
from sports1m_tf.data.errors import ErrorCounter
from sports1m_tf.data.eval_dataset import eval_dataset
from sports1m_tf.data.records import compression_of, list_files, parse_clip

__all__ = ["VIEWS", "ErrorCounter", "centre_crop", "clip_dataset", "compression_of",
           "eval_dataset", "eval_views", "flip_clip", "list_files", "multi_hot", "parse_clip",
           "random_crop_and_flip", "soft_target"]
