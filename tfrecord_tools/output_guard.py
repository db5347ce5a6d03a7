"""What a conversion may do to its output folder: never lose records it did not write.

Three guards, checked before anything is written:
  - the output folder is a writable folder (not a file);
  - a split already holding records from another manifest or other settings is
    replaced only with `overwrite=True`;
  - one conversion of a split into a folder at a time: an exclusive lock on the
    file `OUTPUT_DIR/.SPLIT.lock` (`fileio.exclusive_lock`), held by the kernel
    for the process: it ends with the process however the process ends (killed,
    a zombie), so a dead holder never blocks and a reused pid means nothing.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from tfrecord_tools import fileio, shards, summary


class OutputError(ValueError):
    """The output folder cannot take this conversion as asked (the message says why)."""


def check_output_dir(output_dir: str) -> None:
    """Fails unless `output_dir` is, or can become, a writable folder."""
    if fileio.is_remote(output_dir):
        return
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputError(f"--output_dir {output_dir} is a file, not a folder: "
                          "give a folder path")
    parent = output_dir
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent.rstrip(os.sep))
    parent = parent or "."
    if not os.path.isdir(parent):
        raise OutputError(f"--output_dir {output_dir}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"--output_dir {output_dir}: {parent} is not writable: "
                          "choose a folder you can write to")


def existing_split_files(output_dir: str, split: str) -> list[str]:
    """Names of the shards of `split` already in the folder."""
    if not fileio.isdir(output_dir):
        return []
    return sorted(n for n in fileio.listdir(output_dir)
                  if (parsed := shards.parse_shard_name(n)) and parsed[0] == split)


def check_replace(output_dir: str, split: str, fingerprint: str, overwrite: bool) -> None:
    """Fails when the split's records come from another manifest or other settings.

    Args:
      output_dir: the conversion's folder.
      split: the split about to be written.
      fingerprint: this conversion's inputs and settings (`Job.fingerprint`).
      overwrite: the user said the old records may go.

    Raises:
      OutputError: the split holds records this conversion would replace.
    """
    if overwrite:
        return
    existing = existing_split_files(output_dir, split)
    if not existing:
        return
    info = summary.read(output_dir)
    section = (info or {}).get("splits", {}).get(split)
    if section is not None and section.get("fingerprint") == fingerprint:
        return  # the same conversion: resume or nothing to do
    what = ("other settings or another manifest "
            f"({section['settings'].get('manifest', '?')})" if section else
            "an unknown conversion (not in dataset.json)")
    raise OutputError(
        f"{output_dir} already holds split {split!r} ({len(existing)} shards) from {what}; "
        f"converting would replace it. Use another --split or --output_dir, or pass "
        "--overwrite to replace those records")


def lock_path(output_dir: str, split: str) -> str:
    return fileio.join(output_dir, f".{split}.lock")


@contextlib.contextmanager
def split_lock(output_dir: str, split: str) -> Iterator[str]:
    """Holds the lock of `split` in `output_dir` for the duration of a conversion.

    Remote folders (gs://) have no such lock: the user coordinates conversions there.

    Raises:
      OutputError: another process holds the lock (the message names it and the folder).
    """
    path = lock_path(output_dir, split)
    try:
        with fileio.exclusive_lock(path, f"split {split!r} of {output_dir}"):
            yield path
    except fileio.LockHeld as e:
        raise OutputError(str(e)) from None
