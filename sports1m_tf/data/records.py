"""Clip records on disk: shard listing, GZIP detection, interleaved reading, parsing.

Keys come from `tfrecord_tools.schema` (docs/design.md); nothing here decodes a frame.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import zlib
from typing import Callable, Sequence

import tensorflow as tf

from sports1m_tf.data import record_check
from tfrecord_tools import fileio, schema

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


@dataclasses.dataclass(frozen=True)
class ShardFacts:
    """What a shard looked like when a pipeline was built: each pass checks it still does."""
    compression: str
    records: int  # about how many records it holds (`estimated_records`), or 1
    size: int  # bytes
    tail: bytes  # its last bytes (a record's checksum; a GZIP file's length trailer)
    problem: str | None  # damage found in its framing, or None


TAIL_BYTES = 4


def framing_problem(path: str) -> str | None:
    """Walks an uncompressed shard's record headers; says where it is cut or corrupt, or None.

    TensorFlow reads a cut shard up to the cut and then ends it with a log line
    only, so the records after a cut would be lost on every pass without a word.
    Reads 12 bytes a record (the length and its checksum), not the records.
    """
    with fileio.open_binary(path) as f:
        f.seek(0, 2)
        size, pos = f.tell(), 0
        while pos < size:
            f.seek(pos)
            head = f.read(12)
            if len(head) < 12:
                return f"cut short: {size - pos} stray bytes after the last whole record"
            if int.from_bytes(head[8:12], "little") != _masked_crc32c(head[:8]):
                return f"corrupt record header at byte {pos:,} of {size:,}"
            end = pos + 12 + int.from_bytes(head[:8], "little") + 4
            if end > size:
                return f"cut short: the record at byte {pos:,} ends at {end:,}, past its end"
            pos = end
    return None


def shard_facts(path: str, random_start: bool = False) -> ShardFacts:
    """Compression, size, last bytes and (local, uncompressed shards) framing damage of a shard."""
    compression = compression_of(path)
    with tf.io.gfile.GFile(path, "rb") as f:
        size = f.size()
        f.seek(max(size - TAIL_BYTES, 0))
        tail = f.read(TAIL_BYTES)
    problem = (framing_problem(path) if not compression and not fileio.is_remote(path)
               else None)
    return ShardFacts(compression, estimated_records(path, compression) if random_start else 1,
                      size, tail, problem)


def _unchanged(path: tf.Tensor, size: tf.Tensor, tail: tf.Tensor) -> tf.Tensor:
    """bool []: the file is still there (a look at its folder each pass, no read).

    A missing file is never opened: TFRecordDataset would fail at every retry.
    Whether a present file still has its `size` and last bytes (`tail`) is
    Python's look (`ErrorCounter.check_budget`, every 30 s of training and at a
    stream's end): in the graph that read cost a read of the whole shard every pass
    (FixedLengthRecordDataset reaches the tail by reading what it skips), half
    the reading stage's CPU on 128-record shards. A file replaced meanwhile is read
    as it now is (a cut one to its cut, a corrupt record ends its shard's pass)
    until Python's look names it and ends the run.
    """
    del size, tail
    return tf.size(tf.io.matching_files(path)) > 0


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
                 each_shard: Callable[[tf.data.Dataset], tf.data.Dataset] | None = None,
                 watch=None) -> tf.data.Dataset:
    """Interleaves the records of `files`, each tagged with its file's index.

    Every pass first looks each shard up. A shard that is gone is not opened, so
    that nothing retries it for ever: it gives one empty record instead of its
    records, which fails in the first counted step downstream (a skipped record of
    that file), and then tells `watch`, so that a stream whose files are gone ends.
    Whether a present shard is still the file it was (size, last bytes) is looked
    at from Python (`ErrorCounter.look_now`, `errors.end_if_files_change`).

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
      watch: None, or an object with `built(facts)` (told each file's
        `ShardFacts` once) and `failed(file_index) -> op` (run once a pass
        found the file gone or changed), e.g. `ErrorCounter.read_watch`.

    Returns:
      A dataset of `(file_index int32 [], record string [])` (or what
      `each_shard` makes of them); the index lets a failure be charged to its
      file (see `ErrorCounter`).
    """
    # Threads: on gs:// each look at a file's head is a round trip.
    with concurrent.futures.ThreadPoolExecutor(min(16, len(files))) as pool:
        facts = list(pool.map(lambda path: shard_facts(path, random_start), files))
    if watch is not None:
        watch.built(facts)
    shards = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(files), dtype=tf.int32), list(files), [f.compression for f in facts],
         tf.constant([f.records for f in facts], tf.int64),
         tf.constant([f.size for f in facts], tf.int64), [f.tail for f in facts],
         tf.constant([read_buffer_bytes(f) for f in files], tf.int64)))
    if shuffle_files and len(files) > 1:
        shards = shards.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if random_start:
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        shards = tf.data.Dataset.zip(shards, randoms).map(
            lambda shard, r: (*shard[:3], r % shard[3], *shard[4:]))

    # start: records to rotate by; buffer: read buffer bytes (`read_buffer_bytes`).
    def read_shard(index, path, compression, start, size, tail, buffer):
        whole = _unchanged(path, size, tail)
        # Opened lazily and only while present: a missing file makes TFRecordDataset
        # fail at every retry, which ignore_errors would retry for ever.
        read = lambda: tf.data.Dataset.from_tensors(path).flat_map(
            lambda p: tf.data.TFRecordDataset(tf.io.matching_files(p)[:tf.cast(whole, tf.int32)],
                                              compression_type=compression,
                                              buffer_size=buffer))
        records = read()
        if random_start:
            records = records.skip(start).concatenate(read().take(start))
        records = records.concatenate(_lost(whole, index, watch))
        tagged = tf.data.Dataset.zip(tf.data.Dataset.from_tensors(index).repeat(), records)
        return each_shard(tagged) if each_shard is not None else tagged

    return shards.interleave(read_shard, cycle_length=min(cycle_length, len(files)),
                             block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=deterministic)


def _lost(whole: tf.Tensor, index: tf.Tensor, watch) -> tf.data.Dataset:
    """Nothing for a whole shard; for a gone or changed one, an empty record, then `watch`.

    The watch is told only once the empty record has gone on (lazily, when the
    stream asks for more), so that a stream ending because of it still counts
    that record in its first step.
    """
    lost = tf.data.Dataset.from_tensors(tf.constant("")).take(1 - tf.cast(whole, tf.int64))
    if watch is None:
        return lost

    def tell(_):
        with tf.control_dependencies([watch.failed(index)]):
            return tf.data.Dataset.from_tensors(tf.constant("")).take(0)

    return lost.concatenate(lost.flat_map(tell))


def parse_clip(record: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialised clip `SequenceExample` (all frames stay encoded).

    Args:
      record: string []. One serialised clip.

    Returns:
      dict with `media_id` string [], `labels` int64 [L] (label indices),
      `encoded` string [F] (one JPEG per stored frame), and what
      `record_check` reads: `label_names` string [L'], `height` and `width`
      int64 [] (-1 when the record does not state them).
    """
    context, sequence = tf.io.parse_single_sequence_example(
        record,
        context_features={schema.MEDIA_ID: tf.io.FixedLenFeature([], tf.string),
                          schema.LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
                          **record_check.context_features()},
        sequence_features={schema.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)})
    return {"media_id": context[schema.MEDIA_ID],
            "labels": context[schema.LABEL_INDEX].values,
            "label_names": context[schema.LABEL_STRING].values,
            "height": context[schema.IMAGE_HEIGHT], "width": context[schema.IMAGE_WIDTH],
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
