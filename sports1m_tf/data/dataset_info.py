"""The one reader of `dataset.json`, the summary the converter writes beside a split's shards.

Training, evaluation, fine-tuning, export and the baseline all learn the class
names, the stored frame size and the split's video count from here.
"""
from __future__ import annotations

import os
from typing import Sequence

from tfrecord_tools import summary


def dataset_info(files: Sequence[str]) -> tuple[dict | None, str | None]:
    """The `dataset.json` beside the shards (and its path), or (None, None).

    Raises:
      ValueError: the shards come from folders whose dataset.json files list
        different classes.
    """
    found: dict[str, dict] = {}
    for folder in sorted({os.path.dirname(f) for f in files}):
        info = summary.read(folder)
        if info is not None:
            found[os.path.join(folder, summary.FILE_NAME)] = info
    if not found:
        return None, None
    (path, info), *others = found.items()
    for other_path, other in others:
        if other["classes"] != info["classes"]:
            raise ValueError(f"{path} and {other_path} list different classes: evaluate "
                             "records of one conversion at a time")
    return info, path


def expected_videos(files: Sequence[str], info: dict | None) -> int | None:
    """Videos in the records when they are exactly one split's shards, else None."""
    if not info:
        return None
    names = {os.path.basename(f) for f in files}
    for section in info.get("splits", {}).values():
        if set(section.get("shards", ())) == names:
            return int(section["videos_converted"])
    return None


def read_classes(file_patterns: Sequence[str]) -> list[str] | None:
    """Class names from the `dataset.json` beside the records, or None."""
    from sports1m_tf.data.records import list_files
    info, _ = dataset_info(list_files(file_patterns))
    return list(info["classes"]) if info and info.get("classes") else None
