"""`dataset.json`: what a conversion produced, built from per-video outcomes.

One file per output folder. It holds the class list and one section per split, so
converting `train` then `test` into the same folder keeps both. Local and Beam
runs build the section with the same function from the same per-video outcomes.

Layout:
  {"format": "sports1m_tf.clips/1", "classes": [...], "num_classes": N,
   "splits": {"train": {
       "shard_pattern": "train-?????-of-00016.tfrecord", "shards": [...],
       "num_shards", "compression", "runner",
       "videos_listed", "videos_converted", "videos_failed", "clips",
       "clips_per_class": {name: n}, "videos_per_class": {name: n},
       "failed": [{"video", "path", "source", "reason"}],
       "warnings": [{"video", "path", "source", "warning"}],
       "settings": {...}, "fingerprint": "..."}}}
A multi-label clip counts once for each of its classes in `clips_per_class`.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Iterable, Iterator

from tfrecord_tools import fileio, shards

FORMAT = "sports1m_tf.clips/1"
FILE_NAME = "dataset.json"


def split_section(*, classes: list[str], outcomes: Iterable[dict], problems: Iterable[dict],
                  split: str, num_shards: int, compression: str, runner: str,
                  settings: dict, fingerprint: str) -> dict:
    """Builds one split's section of `dataset.json`.

    Args:
      classes: class names, index order.
      outcomes: `VideoResult.outcome()` dicts, one per video tried (any order).
      problems: `ManifestProblem.to_json()` dicts (lines that gave no video).
      split, num_shards, compression, runner: how the shards were written.
      settings: the conversion settings to record.
      fingerprint: identifies inputs + settings (for resuming).

    Returns:
      The section dict (JSON-able).
    """
    outcomes = sorted(outcomes, key=lambda o: _source_key(o["source"]))
    problems = sorted(problems, key=lambda p: _source_key(p["source"]))
    clips_per_class = dict.fromkeys(classes, 0)
    videos_per_class = dict.fromkeys(classes, 0)
    failed = [{k: p[k] for k in ("video", "path", "source", "reason")} for p in problems]
    warnings = []
    for o in outcomes:
        for w in o["warnings"]:
            warnings.append({"video": o["video"], "path": o["path"], "source": o["source"],
                             "warning": w})
        if o["failure"]:
            failed.append({"video": o["video"], "path": o["path"], "source": o["source"],
                           "reason": o["failure"]})
            continue
        for i in o["label_indices"]:
            clips_per_class[classes[i]] += o["num_clips"]
            videos_per_class[classes[i]] += 1
    failed.sort(key=lambda f: _source_key(f["source"]))
    names = [os.path.basename(p) for p in shards.shard_paths("", split, num_shards, compression)]
    return {
        "shard_pattern": os.path.basename(shards.shard_pattern("", split, num_shards, compression)),
        "shards": names,
        "num_shards": num_shards,
        "compression": shards.normalise_compression(compression),
        "runner": runner,
        "videos_listed": len(outcomes) + len(problems),
        "videos_converted": sum(1 for o in outcomes if not o["failure"]),
        "videos_failed": len(failed),
        "clips": sum(o["num_clips"] for o in outcomes),
        "clips_per_class": clips_per_class,
        "videos_per_class": videos_per_class,
        "failed": failed,
        "warnings": warnings,
        "settings": settings,
        "fingerprint": fingerprint,
    }


def _source_key(source: str) -> tuple[str, int]:
    name, _, line = source.rpartition(":")
    return (name, int(line)) if line.isdigit() else (source, 0)


def read(output_dir: str) -> dict | None:
    """The folder's `dataset.json`, or None."""
    path = fileio.join(output_dir, FILE_NAME)
    return json.loads(fileio.read_text(path)) if fileio.exists(path) else None


def class_differences(ours: Iterable[str], theirs: Iterable[str], *,
                      names: tuple[str, str] = ("the model", "the data"),
                      subset: bool = False) -> str:
    """How two class lists differ, '' when they agree: the one comparison of class lists
    (model against records, manifest against model, conversion against conversion).

    Order matters (a label index names a class by position). With `subset`, `ours`
    agrees when every name in it is one of `theirs` (a manifest without a labels file).
    `names` say what the two lists are, in the message.
    """
    ours, theirs = list(ours), list(theirs)
    ours_set, theirs_set = set(ours), set(theirs)  # once: lists of 100,000 classes occur
    only_ours = [n for n in ours if n not in theirs_set]
    only_theirs = [] if subset else [n for n in theirs if n not in ours_set]
    if ours == theirs or (subset and not only_ours):
        return ""
    a, b = names
    parts = []
    if len(ours) != len(theirs) and not subset:
        parts.append(f"{len(ours)} classes in {a}, {len(theirs)} in {b}")
    if only_ours:
        parts.append(f"only {a} has {_some(only_ours)}")
    if only_theirs:
        parts.append(f"only {b} has {_some(only_theirs)}")
    if not parts or (not only_ours and not only_theirs):
        where = {n: i for i, n in reversed(list(enumerate(theirs)))}  # first position
        moved = [f"{n!r} is {i} in {a} but {where[n]} in {b}"
                 for i, n in enumerate(ours) if i >= len(theirs) or theirs[i] != n]
        parts.append("the same classes in another order: " + _some(moved, quote=False))
    return "; ".join(parts)


def _some(items: list[str], quote: bool = True, limit: int = 5) -> str:
    shown = [repr(n) if quote else n for n in items[:limit]]
    return ", ".join(shown) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_classes(output_dir: str, classes: list[str]) -> None:
    """Raises ValueError if the folder already holds a conversion with other classes
    (its label indices would mean other classes)."""
    existing = read(output_dir)
    differences = existing and class_differences(
        classes, existing["classes"], names=("this manifest", "the folder's conversion"))
    if differences:
        raise ValueError(f"{fileio.join(output_dir, FILE_NAME)}: {differences}; convert "
                         "into another --output_dir")


@contextlib.contextmanager
def _one_writer(output_dir: str) -> Iterator[None]:
    """Holds an exclusive lock on the folder's `dataset.json` while a split is written.

    Conversions of different splits into one folder may run at once (the demo
    runs three); each reads, changes and rewrites the file, and without the lock
    the last writer would drop the others' sections. Remote folders have one
    writer, the Beam driver.
    """
    if fileio.is_remote(output_dir):
        yield
        return
    import fcntl
    path = os.path.join(output_dir, f".{FILE_NAME}.lock")
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # the holder before us may have removed the file we waited on
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        os.unlink(path)  # before unlocking: a waiter then sees a stale inode and retries
        os.close(fd)


def write_split(output_dir: str, classes: list[str], split: str, section: dict) -> str:
    """Writes (atomically) `dataset.json` with this split's section replaced. Returns its path."""
    path = fileio.join(output_dir, FILE_NAME)
    # Each shard's size as written: a reader can then tell a shard cut short (a copy
    # that stopped, a full disk) from a whole one with one stat, at any scale.
    section = {**section, "shard_bytes": {
        name: fileio.size(fileio.join(output_dir, name)) for name in section.get("shards", ())
        if fileio.exists(fileio.join(output_dir, name))}}
    with _one_writer(output_dir):
        data = read(output_dir) or {"format": FORMAT, "classes": classes, "splits": {}}
        data.update(classes=classes, num_classes=len(classes))
        data["splits"][split] = section
        fileio.write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


def console_lines(section: dict, max_failures: int = 20) -> list[str]:
    """The conversion's summary for the console: counts, partial decodes, empty classes.

    Args:
      section: a split's `dataset.json` section (plus `dataset_json`, its path).
      max_failures: failures listed one a line before "... and N more".

    Returns:
      Lines to print once, in order.
    """
    partial = sorted({w["video"] for w in section.get("warnings", ())
                      if "decode" in w["warning"]})
    lines = [f"{section['clips']} clips from {section['videos_converted']} videos into "
             f"{section['num_shards']} shards; {section['videos_failed']} failed; "
             f"{len(partial)} decoded only partly; see {section['dataset_json']}"]
    for f in section["failed"][:max_failures]:
        lines.append(f"  failed: {f['source']}: {f['path'] or f['video']}: {f['reason']}")
    if len(section["failed"]) > max_failures:
        lines.append(f"  ... and {len(section['failed']) - max_failures} more (dataset.json)")
    for video in partial[:max_failures]:
        lines.append(f"  partly decoded: {video}")
    empty = [c for c, n in section.get("clips_per_class", {}).items() if not n]
    if empty and section["clips"]:
        lines.append(f"  {len(empty)} classes have 0 clips in this split: {', '.join(empty[:20])}"
                     f"{' ...' if len(empty) > 20 else ''}; a model trained on it keeps them "
                     "as outputs no clip teaches (training warns), and evaluation has no "
                     "positives for them")
    return lines
