"""TFRecord shards: names, atomic writing, and dealing clips over shards.

Shards are `SPLIT-00000-of-000NN.tfrecord` (`.tfrecord.gz` with GZIP). Each is
written under a hidden temporary name (`.tmp-SPLIT-...`, which no `SPLIT-*`
pattern matches) and renamed when every shard is complete, so a reader never sees
a partial shard. Clips are dealt round-robin over the shards in the order the
caller gives (`layout.mixed_stream`: clips of many videos interleaved), so every
shard holds clips of many videos and classes, and a video's clips land in
different shards.
"""
from __future__ import annotations

import os
import re
from typing import Iterable

from tfrecord_tools import fileio

COMPRESSIONS = ("none", "GZIP")


def normalise_compression(compression: str | None) -> str:
    """`none` or `GZIP` from any accepted spelling ('', None, 'gzip', ...)."""
    c = (compression or "none").strip()
    if c.lower() in ("", "none"):
        return "none"
    if c.upper() == "GZIP":
        return "GZIP"
    raise ValueError(f"compression {compression!r}: expected one of {COMPRESSIONS}")


def suffix(compression: str) -> str:
    return ".tfrecord.gz" if normalise_compression(compression) == "GZIP" else ".tfrecord"


def shard_name(split: str, index: int, num_shards: int, compression: str) -> str:
    """`SPLIT-00003-of-00016.tfrecord[.gz]`."""
    return f"{split}-{index:05d}-of-{num_shards:05d}{suffix(compression)}"


def shard_paths(output_dir: str, split: str, num_shards: int, compression: str) -> list[str]:
    return [fileio.join(output_dir, shard_name(split, i, num_shards, compression))
            for i in range(num_shards)]


def shard_pattern(output_dir: str, split: str, num_shards: int, compression: str) -> str:
    """A glob matching exactly this split's shards."""
    return fileio.join(output_dir, f"{split}-?????-of-{num_shards:05d}{suffix(compression)}")


def write_shards(output_dir: str, split: str, num_shards: int, compression: str,
                 records: Iterable[bytes]) -> list[int]:
    """Deals `records` round-robin over `num_shards` shards, written atomically.

    Args:
      output_dir: Folder of the shards (local or gs://).
      num_shards: Number of shards (empty ones are written too, so the
        `-of-NNNNN` set is always complete).
      compression: `none` or `GZIP`.
      records: serialised records, in the order to deal them.

    Returns:
      Records per shard.

    Raises:
      fileio.DiskFull: the disk filled up (naming the shard; no temporary file is
        left, and shards written before are untouched).
    """
    import tensorflow as tf  # deferred: the converter's workers never come here
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    compression = normalise_compression(compression)
    fileio.makedirs(output_dir)
    finals = shard_paths(output_dir, split, num_shards, compression)
    temps = [fileio.join(output_dir, f".tmp-{os.getpid()}-{os.path.basename(p)}") for p in finals]
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compression == "GZIP" else "")
    counts = [0] * num_shards
    try:
        writers = []
        try:
            writers += [tf.io.TFRecordWriter(t, options) for t in temps]
            for i, record in enumerate(records):
                writers[i % num_shards].write(record)
                counts[i % num_shards] += 1
        finally:
            for w in writers:
                w.close()
    except BaseException as e:
        for t in temps:
            fileio.remove_quietly(t)
        if fileio.is_disk_full(e):
            named = str(fileio.disk_full(e).filename)
            shard = next((p for t, p in zip(temps, finals) if t == named), output_dir)
            raise fileio.disk_full(e, shard) from None
        raise
    for t, p in zip(temps, finals):
        fileio.rename(t, p)
    remove_stale(output_dir, split, keep=finals)
    return counts


_SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.tfrecord(\.gz)?$")


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """(split, index, total) from a shard's file name, or None."""
    m = _SHARD_RE.match(os.path.basename(name))
    return (m.group("split"), int(m.group("index")), int(m.group("total"))) if m else None


def remove_stale(output_dir: str, split: str, keep: Iterable[str]) -> list[str]:
    """Removes this split's shards from earlier runs with another shard count or
    compression, and temporary files left by killed runs. Returns what it removed."""
    keep = {os.path.basename(p) for p in keep}
    removed = []
    if not fileio.isdir(output_dir):
        return removed
    for name in fileio.listdir(output_dir):
        parsed = parse_shard_name(name)
        stale_shard = parsed is not None and parsed[0] == split and name not in keep
        stale_temp = name.startswith(".tmp-") and f"-{split}-" in name
        if stale_shard or stale_temp:
            fileio.remove(fileio.join(output_dir, name))
            removed.append(name)
    return removed
