"""File access for local and remote (gs://, ...) paths with TensorFlow imported only when needed.

Local paths use the standard library so that converter workers start without the
≈3.5 s TensorFlow import; a path with a URL scheme goes through `tf.io.gfile`.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import glob
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
from typing import Iterator


def is_remote(path: str) -> bool:
    """True when `path` has a URL scheme (gs://, s3://, hdfs://...) other than file://."""
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _gfile():
    import tensorflow as tf  # deferred: only remote paths need it
    return tf.io.gfile


def join(*parts: str) -> str:
    """Joins path parts; keeps URL schemes intact."""
    if parts and is_remote(parts[0]):
        return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])
    return os.path.join(*parts)


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(_local(path))


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(_local(path))


def size(path: str) -> int:
    """Size in bytes."""
    return _gfile().stat(path).length if is_remote(path) else os.path.getsize(_local(path))


def makedirs(path: str) -> None:
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(_local(path), exist_ok=True)


def listdir(path: str) -> list[str]:
    """Names (not paths) in a directory, sorted."""
    names = _gfile().listdir(path) if is_remote(path) else os.listdir(_local(path))
    return sorted(n.rstrip("/") for n in names)


def walk_files(root: str) -> Iterator[str]:
    """Every file path under `root`, recursively, in sorted order."""
    if is_remote(root):
        for dirpath, _, files in _gfile().walk(root):
            for name in sorted(files):
                yield join(dirpath, name)
        return
    for dirpath, dirnames, files in os.walk(_local(root)):
        dirnames.sort()
        for name in sorted(files):
            yield os.path.join(dirpath, name)


def glob_files(pattern: str) -> list[str]:
    """Sorted paths matching a glob pattern."""
    if is_remote(pattern):
        return sorted(_gfile().glob(pattern))
    return sorted(glob.glob(_local(pattern)))


def remove(path: str) -> None:
    if is_remote(path):
        _gfile().remove(path)
    else:
        os.remove(_local(path))


def rmtree(path: str) -> None:
    if not exists(path):
        return
    if is_remote(path):
        _gfile().rmtree(path)
    else:
        shutil.rmtree(_local(path))


def rename(src: str, dst: str) -> None:
    """Renames, replacing `dst`; atomic on local file systems (on GCS it is copy+delete)."""
    if is_remote(src):
        _gfile().rename(src, dst, overwrite=True)
    else:
        os.replace(_local(src), _local(dst))


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        with _gfile().GFile(path, "rb") as f:
            return f.read()
    with open(_local(path), "rb") as f:
        return f.read()


def open_binary(path: str):
    """A binary file object for reading `path` (local or remote), to read it in parts."""
    return _gfile().GFile(path, "rb") if is_remote(path) else open(_local(path), "rb")


def read_head(path: str, n: int) -> bytes:
    """The first `n` bytes of a file."""
    if is_remote(path):
        with _gfile().GFile(path, "rb") as f:
            return f.read(n)
    with open(_local(path), "rb") as f:
        return f.read(n)


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8-sig")


# How TensorFlow's file writers report a full disk: "PATH; No space left on device"
# in a ResourceExhaustedError, with no errno.
_NO_SPACE = "No space left on device"
_NO_SPACE_PATH = re.compile(r"(\S+); " + _NO_SPACE)


class DiskFull(OSError):
    """A write found no space left; `filename` is the file the caller was writing
    (None when unknown)."""

    def __init__(self, path: str | None):
        super().__init__(errno.ENOSPC, "no space left on device (the disk is full: free space "
                                       "there, or write to another disk)", path)

    def __reduce__(self):  # crosses process pools whole
        return DiskFull, (self.filename,)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}" if self.filename else self.strerror


def is_disk_full(error: BaseException) -> bool:
    """True for an error of a write that found the disk full: an OSError with ENOSPC,
    or TensorFlow's error for it (which carries the message, not the errno)."""
    return getattr(error, "errno", None) == errno.ENOSPC or _NO_SPACE in str(error)


def disk_full(error: BaseException, path: str | None = None) -> DiskFull:
    """`error` as a `DiskFull` naming `path` (default: the path the error names)."""
    if path is None:
        found = _NO_SPACE_PATH.search(str(error))
        path = getattr(error, "filename", None) or (found.group(1) if found else None)
    return DiskFull(path)


def remove_quietly(path: str) -> None:
    """Removes a file or folder if it is there; a failure to remove is left unsaid
    (this runs while another error is being raised)."""
    with contextlib.suppress(OSError, Exception):
        if exists(path):
            rmtree(path) if isdir(path) else remove(path)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path` to write the whole file to; renames it to
    `path` when the block ends, removes it when the block raises.

    This is the project's one way to write a file a later run trusts (shards, JSON
    records, models): a reader, or a rerun after a kill or a full disk, sees the old
    file or the new one, never half of one. The temporary name is hidden, unique to
    the process and keeps `path`'s ending (Keras saves only to `.keras` names).

    Raises:
      DiskFull: the disk filled up while the block wrote (names `path`).
    """
    folder, name = os.path.split(path)
    tmp = join(folder, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{name}") if folder \
        else f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{name}"
    try:
        yield tmp
        rename(tmp, path)
    except BaseException as e:
        remove_quietly(tmp)
        if is_disk_full(e) and not isinstance(e, DiskFull):
            raise disk_full(e, path) from None
        raise


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes `data` to `path` through `atomic_path`, synced to disk before the rename."""
    with atomic_path(path) as tmp:
        if is_remote(path):
            with _gfile().GFile(tmp, "wb") as f:
                f.write(data)
        else:
            with open(_local(tmp), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


class LockHeld(Exception):
    """Another live process holds the lock; the message names the folder and the holder."""


def _holder_text(fd: int) -> str:
    """'pid N on HOST since TIME' from a lock file's record, or what is known."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "a process that has not yet written its name"
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"since {holder.get('since', '?')}")


@contextlib.contextmanager
def exclusive_lock(path: str, what: str) -> Iterator[None]:
    """Holds an exclusive `flock` on the file `path` (created if missing) for the block.

    One writer per folder, decided by the kernel: the lock goes with the open file, so
    it is released when the holder ends however it ends (exit, SIGKILL, a zombie whose
    descriptors are closed), and a pid reused by another process never blocks. The
    holder's pid, host and start time are written into the file only to name it in
    the refusal; the file itself stays (removing it would race with a waiter).

    Remote paths (gs://, ...) have no such lock: the block runs unlocked and the user
    coordinates writers there.

    Args:
      path: the lock file, inside the folder it guards (e.g. `RUN_DIR/.lock`).
      what: what the folder is, for the message ("run folder runs/slow").

    Raises:
      LockHeld: another process holds the lock: '{what} is in use by pid N on HOST
        since TIME (lock file PATH)...'.
    """
    if is_remote(path):
        yield
        return
    import fcntl
    local = _local(path)
    os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
    fd = os.open(local, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(
                f"{what} is in use by {_holder_text(fd)} (lock file {local}); wait for "
                "that process to end, or give another folder") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.datetime.now(datetime.timezone.utc)
              .strftime("%Y-%m-%d %H:%M:%S UTC")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # before the unlock: no stale name for the next reader
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """Yields a local file path for `path`: itself if local, else a temporary copy.

    OpenCV's decoders need a real file; remote videos are copied first.
    """
    if not is_remote(path):
        yield _local(path)
        return
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="sports1m-video-")
    os.close(fd)
    try:
        _gfile().copy(path, tmp, overwrite=True)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
