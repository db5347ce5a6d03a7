"""What a conversion may do to its output folder: never lose records it did not write.

Three guards, checked before anything is written:
  - the output folder is a writable folder (not a file);
  - a split already holding records from another manifest or other settings is
    replaced only with `overwrite=True`;
  - one conversion of a split into a folder at a time: a lock file
    `OUTPUT_DIR/.SPLIT.lock` taken atomically, naming the process that holds it,
    removed when the conversion ends (however it ends). A lock left by a process
    that no longer runs on this machine is taken over.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from typing import Iterator

from absl import logging

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


def _holder_alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell: assume it runs
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def split_lock(output_dir: str, split: str) -> Iterator[str]:
    """Holds `OUTPUT_DIR/.SPLIT.lock` for the duration of a conversion.

    Raises:
      OutputError: another live process holds the lock (the message names it).
    """
    path = lock_path(output_dir, split)
    if fileio.is_remote(output_dir):  # no atomic create there: the user coordinates
        yield path
        return
    os.makedirs(output_dir, exist_ok=True)
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
            try:
                with open(path) as f:
                    holder = json.load(f)
            except (OSError, ValueError):
                holder = {}
            if holder and attempt == 0 and not _holder_alive(holder):
                logging.warning("%s: taking over the lock of process %s, which no longer runs",
                                path, holder.get("pid"))
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            raise OutputError(
                f"another conversion of split {split!r} into {output_dir} is running "
                f"(lock {path}, held by {holder or 'an unknown process'}); wait for it to "
                "finish, or delete the lock file if no conversion runs") from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
