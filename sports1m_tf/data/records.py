"""Clip records on disk: shard listing, GZIP detection, interleaved reading, parsing.

Keys come from `tfrecord_tools.schema` (docs/design.md); nothing here decodes a frame.
"""
from __future__ import annotations

import concurrent.futures
import glob
import zlib
from typing import Callable, Sequence

import tensorflow as tf

from tfrecord_tools import schema

# gzip member header: magic 1f 8b, then compression method 8 (deflate). An
# uncompressed TFRecord starts with its little-endian uint64 length, which
# would need to be ≡ 0x088b1f (mod 2**24) to look the same: not a clip record.
_GZIP_MAGIC = b"\x1f\x8b\x08"

FilePattern = str | Sequence[str]

# Read buffer of a shard on a remote file system (gs://, s3://, ...), where every
# read is a round trip. Local shards are read unbuffered (see `read_buffer_bytes`).
REMOTE_READ_BUFFER = 1 << 20

# Shards read at once. With each shard started at its own random record, 16 mixed
# no better than 8 (benchmarks/batch_mixing.py).
DEFAULT_CYCLE_LENGTH = 8


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class RecordFiles(tuple):
    """Record files already listed: `list_files` hands them on without asking the
    file system again, so a command lists its globs once however many steps read them."""


def list_files(file_pattern: FilePattern) -> RecordFiles:
    """Expands a glob (or a list of globs and paths) into a sorted list of files.

    Args:
      file_pattern: Glob patterns or file paths (local or any `tf.io.gfile` scheme
        such as gs://), or a `RecordFiles` listed before (returned as it is).

    Returns:
      The matched files, sorted within each pattern, duplicates removed.

    Raises:
      ValueError: a pattern matches no file (the error names the pattern).
    """
    if isinstance(file_pattern, RecordFiles):
        return file_pattern
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    if not patterns:
        raise ValueError("file_pattern is an empty list: no clip records to read")
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern)) if glob.has_magic(pattern) else (
            [pattern] if tf.io.gfile.exists(pattern) else [])
        if not matched:
            raise ValueError(f"no clip record files match {pattern!r}")
        files.extend(m for m in matched if m not in files)
    return RecordFiles(files)


def compression_of(path: str) -> str:
    """'GZIP' if the file starts with a gzip header, else '' (plain TFRecord).

    Raises:
      ValueError: the file is neither (its first record header's checksum is
        wrong), e.g. a stray file matched by a glob.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        head = f.read(12)
    if head[:len(_GZIP_MAGIC)] == _GZIP_MAGIC:
        return "GZIP"
    # A TFRecord starts with uint64 length + masked crc32c of those 8 bytes.
    if head and (len(head) < 12 or
                 int.from_bytes(head[8:12], "little") != _masked_crc32c(head[:8])):
        raise ValueError(f"{path} is not a TFRecord file (GZIP or plain): bad first header")
    return ""


def estimated_records(path: str, compression: str) -> int:
    """About how many records a shard holds: its size over its first record's (≥ 1).

    Clip records of one split are of similar size; a GZIP shard's size is its
    compressed size (JPEG frames barely compress), so the estimate errs low.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        head = f.read(1 << 16)
        size = f.size()
    if compression == "GZIP":
        head = zlib.decompressobj(wbits=31).decompress(head, 8)
    if len(head) < 8:
        return 1
    first = int.from_bytes(head[:8], "little") + 16  # length, two CRCs, the record
    return max(1, size // first)


def read_buffer_bytes(path: str) -> int:
    """The TFRecord read buffer for `path`: 0 (none) for a local file, else `REMOTE_READ_BUFFER`.

    Unbuffered, a record is read straight into its string (one copy from the
    page cache, not two), and skipping records (a random start) seeks past them
    instead of copying them through the buffer: measured, about 8% of the
    training pipeline's CPU time at 1 frame.
    """
    return REMOTE_READ_BUFFER if "://" in path else 0


def read_records(files: Sequence[str], *, shuffle_files: bool, seed: int | None,
                 deterministic: bool, cycle_length: int = DEFAULT_CYCLE_LENGTH,
                 random_start: bool = False,
                 each_shard: Callable[[tf.data.Dataset], tf.data.Dataset] | None = None
                 ) -> tf.data.Dataset:
    """Interleaves the records of `files`, each tagged with its file's index.

    Args:
      files: paths of TFRecord shards (GZIP or not, detected per file).
      shuffle_files: Shuffle the shard order each epoch.
      seed: Seed of the shard shuffle and of the start records.
      deterministic: Keep a reproducible interleave order.
      cycle_length: Shards read at once (capped at the number of files).
      random_start: Each pass reads each shard from its own random record
        (about uniform over the shard) to its end, then its beginning: shards
        are not read in lockstep, and no two passes see the same sequence.
      each_shard: function or None. Applied to each shard's stream of
        `(file_index, record)` inside the interleave, e.g. to parse each record
        in the reading thread while it is still in the CPU's cache.

    Returns:
      A dataset of `(file_index int32 [], record string [])` (or what
      `each_shard` makes of them); the index lets a failure be charged to its
      file (see `ErrorCounter`).
    """
    def facts(path: str) -> tuple[str, int]:
        compression = compression_of(path)
        return compression, estimated_records(path, compression) if random_start else 1

    # Threads: on gs:// each look at a file's head is a round trip.
    with concurrent.futures.ThreadPoolExecutor(min(16, len(files))) as pool:
        compressions, sizes = zip(*pool.map(facts, files))
    shards = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(files), dtype=tf.int32), list(files), list(compressions),
         tf.constant(sizes, tf.int64), tf.constant([read_buffer_bytes(f) for f in files],
                                                   tf.int64)))
    if shuffle_files and len(files) > 1:
        shards = shards.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if random_start:
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        shards = tf.data.Dataset.zip(shards, randoms).map(
            lambda shard, r: (*shard[:3], r % shard[3], shard[4]))

    def read_shard(index, path, compression, start, buffer):  # start: records to rotate by
        records = tf.data.TFRecordDataset(path, compression_type=compression,
                                          buffer_size=buffer)
        if random_start:
            records = records.skip(start).concatenate(records.take(start))
        tagged = tf.data.Dataset.zip(tf.data.Dataset.from_tensors(index).repeat(), records)
        return each_shard(tagged) if each_shard is not None else tagged

    return shards.interleave(read_shard, cycle_length=min(cycle_length, len(files)),
                             block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=deterministic)


def parse_clip(record: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialised clip `SequenceExample` (all frames stay encoded).

    Args:
      record: string []. One serialised clip.

    Returns:
      dict with `media_id` string [], `labels` int64 [L] (L >= 1 label indices)
      and `encoded` string [F] (one JPEG per stored frame).
    """
    context, sequence = tf.io.parse_single_sequence_example(
        record,
        context_features={schema.MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
                          schema.LABEL_INDEX: tf.io.VarLenFeature(tf.int64)},
        sequence_features={schema.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)})
    return {"media_id": context[schema.MEDIA_ID],
            "labels": context[schema.LABEL_INDEX].values,
            "encoded": sequence[schema.IMAGE_ENCODED]}


def encoded_frames_at(encoded: tf.Tensor, indices: Sequence[int]) -> tf.Tensor:
    """The encoded frames at `indices`, failing (so the record is skipped) if too few are stored.

    Args:
      encoded: string [F]. Every stored frame of a clip.
      indices: the frame indices a model reads (e.g. `frames_needed(model)`).

    Returns:
      string [len(indices)].
    """
    needed = max(indices) + 1
    check = tf.debugging.assert_greater_equal(
        tf.size(encoded), needed,
        message=f"clip has fewer frames than the {needed} the model reads")
    with tf.control_dependencies([check]):
        return tf.gather(encoded, indices)
