"""Manifests: which videos to convert, with which labels.

Three formats:
  csv      `path,label[;label...]` (comma- or tab-separated, optional `path,label`
           header, `#` comments); labels are class names. Paths are relative to
           `video_root` (default: the manifest's folder).
  sports1m The Sports-1M partition files: `URL<space>i,j,...` with 0-based class
           indices into `labels.txt`; the video is the file in `video_root` whose
           name (without extension) is the YouTube id.
  ucf101   The UCF-101 split files: `trainlistNN.txt` (`Class/v_X.avi k`, k 1-based)
           or `testlistNN.txt` (`Class/v_X.avi`, class from the folder), with
           `classInd.txt` (`k Class`, 1-based) beside them or given as `labels`.

Malformed lines and unknown labels become `ManifestProblem`s naming the file and
line; they are reported in `dataset.json` and never stop a conversion. So does a
relative path that climbs out of `video_root` (`../x.mp4`, `a/../../x.mp4`):
relative paths stay inside it, while absolute paths are read as given.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import re
import urllib.parse
from typing import Iterable

from tfrecord_tools import fileio

FORMATS = ("csv", "sports1m", "ucf101")
SPORTS1M_NUM_CLASSES = 487
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".flv", ".mpg", ".mpeg", ".m4v",
                    ".3gp", ".ts", ".wmv")


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One video to convert.

    Attributes:
      video_id: str. Stored as `clip/media_id` and used to seed clip sampling.
      path: str. Where the video should be (it may not exist: the converter reports it).
      label_indices: tuple of int. 0-based class indices.
      label_strings: tuple of str. Class names, parallel to `label_indices`.
      source: str. `FILE:LINE` of the manifest line.
    """

    video_id: str
    path: str
    label_indices: tuple[int, ...]
    label_strings: tuple[str, ...]
    source: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "VideoEntry":
        return cls(d["video_id"], d["path"], tuple(d["label_indices"]),
                   tuple(d["label_strings"]), d["source"])


@dataclasses.dataclass(frozen=True)
class ManifestProblem:
    """A manifest line that yields no video: malformed, unknown label, duplicate."""

    source: str
    reason: str
    video_id: str = ""
    path: str = ""

    def to_json(self) -> dict:
        return {"video": self.video_id, "path": self.path, "source": self.source,
                "reason": self.reason}


@dataclasses.dataclass
class Manifest:
    """A parsed manifest: the class list, the videos and the lines that failed."""

    classes: list[str]
    entries: list[VideoEntry]
    problems: list[ManifestProblem]


def read_text_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file (a BOM is allowed).

    Raises:
      ValueError: the file is not UTF-8; names the file, line and column.
    """
    data = fileio.read_bytes(path)
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column "
                         f"{column}): save the file as UTF-8") from None


def read_class_names(path: str) -> list[str]:
    """Reads a class list: one name a line (Sports-1M `labels.txt`, 0-based), or
    `k name` lines numbered 0.. or 1.. (UCF-101 `classInd.txt`).

    Raises:
      ValueError: naming the file and line, for a numbered file with gaps or duplicates.
    """
    lines = [(n, ln.strip()) for n, ln in enumerate(read_text_lines(path), 1)]
    lines = [(n, ln) for n, ln in lines if ln and not ln.startswith("#")]
    numbered = [re.match(r"^(\d+)\s+(\S.*)$", ln) for _, ln in lines]
    if lines and all(numbered):
        numbers = [int(m.group(1)) for m in numbered]
        base = numbers[0]
        if base in (0, 1) and numbers == list(range(base, base + len(numbers))):
            return [m.group(2).strip() for m in numbered]
        for (n, _), k, want in zip(lines, numbers, range(base, base + len(numbers))):
            if k != want:
                raise ValueError(f"{path}:{n}: class number {k}, expected {want} "
                                 "(numbered class files must count up from 0 or 1)")
    names = [ln for _, ln in lines]
    seen: dict[str, int] = {}
    for n, name in lines:
        if name in seen:
            raise ValueError(f"{path}:{n}: class {name!r} repeats line {seen[name]}")
        seen[name] = n
    return names


def guess_split(manifest_path: str) -> str:
    """`test` if the manifest's file name mentions test, else `train` (library default;
    the command requires --split unless `split_from_name` finds one)."""
    return "test" if "test" in os.path.basename(manifest_path).lower() else "train"


# The split names the published manifest formats put in their file names.
_FORMAT_SPLIT_NAMES = {
    "ucf101": re.compile(r"^(train|test)list\d*\.txt$", re.IGNORECASE),
    "sports1m": re.compile(r"^(train|test)_partition\.txt$", re.IGNORECASE),
}


def split_from_name(manifest_path: str, fmt: str) -> str | None:
    """The split a manifest format's own file naming gives (UCF-101 `trainlist01.txt`,
    Sports-1M `test_partition.txt`), or None (csv manifests have no such naming)."""
    pattern = _FORMAT_SPLIT_NAMES.get(fmt)
    match = pattern.match(os.path.basename(manifest_path)) if pattern else None
    return match.group(1).lower() if match else None


def read_manifest(path: str, fmt: str, *, video_root: str | None = None,
                  labels: str | None = None) -> Manifest:
    """Parses a manifest of any of the three formats.

    Args:
      path: The manifest file (local or gs://).
      fmt: One of `FORMATS`.
      video_root: Where the videos are; defaults to the manifest's folder.
      labels: Class-name file; required for nothing, inferred from a csv,
        `classInd.txt` beside a ucf101 list, numbers as names for sports1m.

    Returns:
      A `Manifest`.

    Raises:
      ValueError: unknown format, or a class file that cannot be read.
      FileNotFoundError: the manifest or class file is missing.
    """
    if fmt not in FORMATS:
        raise ValueError(f"manifest format {fmt!r}: expected one of {FORMATS}")
    if not fileio.exists(path):
        raise FileNotFoundError(f"manifest {path} does not exist")
    root = video_root or os.path.dirname(path) or "."
    lines = _numbered_lines(path)
    if fmt == "csv":
        return _read_csv(path, lines, root, labels)
    if fmt == "sports1m":
        return _read_sports1m(path, lines, root, labels)
    return _read_ucf101(path, lines, root, labels)


def _numbered_lines(path: str) -> list[tuple[int, str]]:
    out = []
    for n, line in enumerate(read_text_lines(path), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((n, line))
    return out


def _class_lookup(classes: Iterable[str]) -> dict[str, int]:
    """Name → index, exact names first, then case-insensitively (UCF-101 spells
    HandstandPushups and HandStandPushups)."""
    classes = list(classes)
    table = {c.lower(): i for i, c in enumerate(classes)}
    table.update({c: i for i, c in enumerate(classes)})
    return table


def climbs_out(relative: str, root: str) -> str | None:
    """Why a manifest's relative path is refused (None when it stays inside `root`).

    Decided on the text, not on the disk (`..` past `root`); a symbolic link inside
    `root` is followed as the file system says. Absolute and remote paths are not
    relative: the caller reads them as given.
    """
    norm = os.path.normpath(relative)
    if norm != os.pardir and not norm.startswith(os.pardir + os.sep):
        return None
    return (f"path {relative!r} climbs out of {root}, the folder manifest paths are relative "
            "to (--video_root): give an absolute path to read a file elsewhere")


def _finish(classes: list[str], parsed: list[tuple[str, str, list[int], str]],
            problems: list[ManifestProblem]) -> Manifest:
    """Builds entries from (video_id, path, label indices, source), dropping duplicates."""
    entries, first = [], {}
    for vid, p, indices, src in parsed:
        if vid in first:
            problems.append(ManifestProblem(src, f"duplicate video id {vid!r} (first at {first[vid]})",
                                            vid, p))
            continue
        first[vid] = src
        entries.append(VideoEntry(vid, p, tuple(indices), tuple(classes[i] for i in indices), src))
    problems.sort(key=_source_order)
    return Manifest(classes, entries, problems)


def _source_order(problem: ManifestProblem) -> tuple[str, int]:
    name, _, line = problem.source.rpartition(":")
    return (name, int(line) if line.isdigit() else 0)


def _dedupe(indices: list[int]) -> list[int]:
    return list(dict.fromkeys(indices))


def _csv_fields(line: str) -> list[str]:
    """A manifest line's fields, read as CSV (a quoted field keeps its commas)."""
    delim = "\t" if "\t" in line else ","
    return [f.strip() for f in next(csv.reader([line], delimiter=delim, skipinitialspace=True))]


def _read_csv(path, lines, root, labels) -> Manifest:
    problems: list[ManifestProblem] = []
    rows: list[tuple[str, list[str], str]] = []
    for k, (n, line) in enumerate(lines):
        src = f"{path}:{n}"
        try:
            fields = _csv_fields(line)
        except csv.Error as e:
            fields, error = [], str(e)
        else:
            error = ""
        if len(fields) < 2:
            problems.append(ManifestProblem(src, f"malformed line {line[:80]!r}: expected "
                                                 f"`path,label[;label...]`{' (' + error + ')' if error else ''}"))
            continue
        # A path with an unquoted comma: everything but the last field.
        video, label_field = ",".join(fields[:-1]).strip(), fields[-1]
        if k == 0 and video.lower() in ("path", "video", "filename", "file") \
                and label_field.lower().startswith("label"):
            continue  # header
        names = [s.strip() for s in label_field.split(";") if s.strip()]
        if not video or not names:
            problems.append(ManifestProblem(src, f"malformed line {line[:80]!r}: empty path or label",
                                            path=video))
            continue
        rows.append((video, names, src))
    classes = read_class_names(labels) if labels else sorted({n for _, ns, _ in rows for n in ns})
    lookup = {c: i for i, c in enumerate(classes)}
    parsed, rel = [], {}
    for video, names, src in rows:
        rel[src] = video
        absolute = fileio.is_remote(video) or os.path.isabs(video)
        full = video if absolute else fileio.join(root, video)
        stem = os.path.splitext(os.path.basename(video))[0]
        outside = None if absolute else climbs_out(video, root)
        if outside:
            problems.append(ManifestProblem(src, outside, stem, video))
            continue
        unknown = [n for n in names if n not in lookup]
        if unknown:
            problems.append(ManifestProblem(
                src, f"label {unknown[0]!r} not in the class list ({labels or 'inferred'})", stem, full))
            continue
        parsed.append((stem, full, _dedupe([lookup[n] for n in names]), src))
    # File stems are the ids, unless two different files share a stem (class
    # folders holding `001.mp4` each, or `a.mp4` beside `a.avi`): then the path as
    # the manifest writes it.
    stems: dict[str, set[str]] = {}
    for vid, p, _, _ in parsed:
        stems.setdefault(vid, set()).add(p)
    parsed = [(vid if len(stems[vid]) == 1 else _path_id(rel[src]), p, li, src)
              for vid, p, li, src in parsed]
    return _finish(classes, parsed, problems)


def _path_id(rel: str) -> str:
    return rel.split("://", 1)[-1].lstrip("/")


def _youtube_id(token: str) -> str | None:
    if "://" not in token:
        return token if re.fullmatch(r"[\w-]+", token) else None
    url = urllib.parse.urlparse(token)
    ids = urllib.parse.parse_qs(url.query).get("v")
    if ids:
        return ids[0]
    if url.netloc.endswith("youtu.be") and url.path.strip("/"):
        return url.path.strip("/")
    return None


def _file_index(root: str) -> dict[str, str]:
    """Lower-cased file name and stem → path, for every video file under `root`."""
    index: dict[str, str] = {}
    if not fileio.isdir(root):
        return index
    for p in fileio.walk_files(root):
        name = os.path.basename(p)
        stem, ext = os.path.splitext(name)
        if ext.lower() not in VIDEO_EXTENSIONS:
            continue
        index.setdefault(name.lower(), p)
        index.setdefault(stem.lower(), p)
    return index


def _read_sports1m(path, lines, root, labels) -> Manifest:
    problems: list[ManifestProblem] = []
    rows = []
    for n, line in lines:
        src = f"{path}:{n}"
        parts = line.split()
        vid = _youtube_id(parts[0]) if len(parts) == 2 else None
        try:
            indices = [int(s) for s in parts[1].split(",")] if vid else []
        except ValueError:
            indices = []
        if not vid or not indices or min(indices) < 0:
            problems.append(ManifestProblem(src, f"malformed line {line[:80]!r}: expected "
                                                 "`https://www.youtube.com/watch?v=ID i,j,...`"))
            continue
        rows.append((vid, _dedupe(indices), src))
    if labels:
        classes = read_class_names(labels)
    else:
        top = max([max(ix) for _, ix, _ in rows], default=-1) + 1
        classes = [str(i) for i in range(max(top, SPORTS1M_NUM_CLASSES))]
    index = _file_index(root)
    parsed = []
    for vid, indices, src in rows:
        p = index.get(vid.lower(), fileio.join(root, vid))
        bad = [i for i in indices if i >= len(classes)]
        if bad:
            problems.append(ManifestProblem(
                src, f"label {bad[0]} not in the class list ({len(classes)} classes in "
                     f"{labels or 'default'})", vid, p))
            continue
        parsed.append((vid, p, indices, src))
    return _finish(classes, parsed, problems)


def _read_ucf101(path, lines, root, labels) -> Manifest:
    class_file = labels or fileio.join(os.path.dirname(path) or ".", "classInd.txt")
    if not fileio.exists(class_file):
        raise FileNotFoundError(f"ucf101 manifest {path}: class file {class_file} does not exist "
                                "(pass --labels=.../classInd.txt)")
    classes = read_class_names(class_file)
    lookup = _class_lookup(classes)
    problems: list[ManifestProblem] = []
    index: dict[str, str] | None = None
    parsed = []
    for n, line in lines:
        src = f"{path}:{n}"
        parts = line.split()
        if len(parts) not in (1, 2) or "/" not in parts[0]:
            problems.append(ManifestProblem(src, f"malformed line {line[:80]!r}: expected "
                                                 "`Class/v_Class_gNN_cNN.avi [k]`"))
            continue
        rel = parts[0]
        folder, name = rel.split("/")[-2], rel.split("/")[-1]
        stem = os.path.splitext(name)[0]
        full = fileio.join(root, rel)
        outside = climbs_out(rel, root)
        if outside:
            problems.append(ManifestProblem(src, outside, stem, rel))
            continue
        if len(parts) == 2:
            if not parts[1].isdigit():
                problems.append(ManifestProblem(src, f"malformed line {line[:80]!r}: class number "
                                                     f"{parts[1]!r} is not an integer", stem, full))
                continue
            k = int(parts[1]) - 1  # classInd.txt and the lists count from 1
            if not 0 <= k < len(classes):
                problems.append(ManifestProblem(
                    src, f"label {parts[1]} not in the class list ({class_file}: 1..{len(classes)})",
                    stem, full))
                continue
        else:
            k = lookup.get(folder, lookup.get(folder.lower(), -1))
            if k < 0:
                problems.append(ManifestProblem(
                    src, f"label {folder!r} not in the class list ({class_file})", stem, full))
                continue
        if not fileio.exists(full):
            # Case variants (HandStandPushups) and flat folders: find the file by name.
            if index is None:
                index = _file_index(root)
            full = index.get(name.lower(), full)
        parsed.append((stem, full, [k], src))
    return _finish(classes, parsed, problems)
