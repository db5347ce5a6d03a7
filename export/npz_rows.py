"""Embedding rows → one `.npz` file, written in chunks so that no output is held in memory.

`np.savez` needs every array whole. `NpzRows` appends each column's rows to a
raw scratch file beside the output instead, and at `close()` streams them into
the `.npz` (a ZIP of `.npy` files, uncompressed, as `np.savez` writes it): an
`.npy` header with the final shape, then the bytes. The file is complete or
absent: it is written through `fileio.atomic_path`.

Columns (all loadable with `np.load(path, allow_pickle=False)`):
  embedding      float32 [rows, d]
  video          str [rows] (fixed-width unicode, not objects)
  start_seconds  float64 [rows]   only with `per_clip`
  end_seconds    float64 [rows]   only with `per_clip`
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from typing import Sequence

import numpy as np

from tfrecord_tools import fileio

# Rows gathered before they go to the scratch files (4096 fc7 rows of 4096 floats: 64 MB).
CHUNK_ROWS = 1024
_COPY_BYTES = 1 << 22


class NpzRows:
    """Appends rows of embeddings (and their videos and times) to an `.npz` file.

    Example:
      >>> with NpzRows("out.npz", per_clip=True) as rows:
      ...     rows.add("a.mp4", np.ones((2, 4), np.float32), np.array([[0, .64], [1, 1.64]]))
      >>> np.load("out.npz")["video"]
      array(['a.mp4', 'a.mp4'], dtype='<U5')
    """

    def __init__(self, path: str, per_clip: bool, chunk_rows: int = CHUNK_ROWS):
        """Args:
          path: The `.npz` to write (its folder must exist).
          per_clip: Write `start_seconds` and `end_seconds` too.
          chunk_rows: Rows held before they go to the scratch files.
        """
        self.path = path
        self.per_clip = per_clip
        self.chunk_rows = chunk_rows
        self.rows = 0            # added
        self.written = 0         # in the scratch files
        self.width = None
        self._longest = 1
        self._scratch = tempfile.mkdtemp(prefix=".embedding-rows-",
                                         dir=os.path.dirname(os.path.abspath(path)))
        self._files = {name: open(os.path.join(self._scratch, name), "wb")
                       for name in self._columns()}
        self._pending: list[tuple[str, np.ndarray, np.ndarray | None]] = []

    def _columns(self) -> list[str]:
        return ["embedding", "video"] + (["start_seconds", "end_seconds"] if self.per_clip else [])

    def __enter__(self) -> "NpzRows":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()

    def add(self, video: str, embeddings: np.ndarray, seconds: np.ndarray | None = None) -> None:
        """Appends rows of one video.

        Args:
          video: The video id of every row.
          embeddings: float32 [k, d].
          seconds: float64 [k, 2], (start, end) of each row's clip; required with `per_clip`.
        """
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or (self.width is not None and embeddings.shape[1] != self.width):
            raise ValueError(f"embeddings of shape {embeddings.shape} for rows of width "
                             f"{self.width}")
        if self.per_clip and (seconds is None or len(seconds) != len(embeddings)):
            raise ValueError("per-clip rows need a (start, end) pair per row")
        self.width = embeddings.shape[1]
        self._pending.append((video, embeddings, seconds))
        self.rows += len(embeddings)
        if self.rows - self.written >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        for video, embeddings, seconds in self._pending:
            self._files["embedding"].write(embeddings.tobytes())
            line = (json.dumps(video) + "\n").encode("utf-8")
            self._files["video"].write(line * len(embeddings))
            self._longest = max(self._longest, len(video))
            if self.per_clip:
                times = np.asarray(seconds, np.float64).reshape(-1, 2)
                self._files["start_seconds"].write(np.ascontiguousarray(times[:, 0]).tobytes())
                self._files["end_seconds"].write(np.ascontiguousarray(times[:, 1]).tobytes())
            self.written += len(embeddings)
        self._pending = []

    def close(self) -> str:
        """Writes the `.npz` and removes the scratch files; returns its path."""
        self._flush()
        for f in self._files.values():
            f.close()
        try:
            with fileio.atomic_path(self.path) as partial, \
                    zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                self._store(archive, "embedding", np.dtype(np.float32), (self.rows, self.width or 0))
                self._store_videos(archive)
                for name in self._columns()[2:]:
                    self._store(archive, name, np.dtype(np.float64), (self.rows,))
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)
        return self.path

    def discard(self) -> None:
        """Drops everything written so far (no output file)."""
        for f in self._files.values():
            f.close()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def _store(self, archive: zipfile.ZipFile, name: str, dtype: np.dtype,
               shape: Sequence[int]) -> None:
        with archive.open(name + ".npy", "w", force_zip64=True) as out, \
                open(os.path.join(self._scratch, name), "rb") as raw:
            _write_header(out, dtype, shape)
            shutil.copyfileobj(raw, out, _COPY_BYTES)

    def _store_videos(self, archive: zipfile.ZipFile) -> None:
        dtype = np.dtype(f"<U{self._longest}")
        with archive.open("video.npy", "w", force_zip64=True) as out, \
                open(os.path.join(self._scratch, "video"), encoding="utf-8") as lines:
            _write_header(out, dtype, (self.rows,))
            chunk: list[str] = []
            for line in lines:
                chunk.append(json.loads(line))
                if len(chunk) == self.chunk_rows:
                    out.write(np.array(chunk, dtype).tobytes())
                    chunk = []
            out.write(np.array(chunk, dtype).tobytes())


def _write_header(out, dtype: np.dtype, shape: Sequence[int]) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)}
    np.lib.format.write_array_header_2_0(out, header)
