"""sports1m-inspect: check and summarise clip shards.

Counts clips and videos per split and class, frames per clip and frame sizes,
measures whether each split's record order mixes videos (distinct videos per 32
consecutive records of a shard, against a uniform random draw),
checks every record: it parses as a clip SequenceExample, and it is sound by the
same check training and evaluation skip records by (`sports1m_tf.data.record_check`:
labels within the split's class list and named as their index's class, JPEG
frames of the size the record states, a whole clip of them), naming the shard and
record index of each bad record and counting each kind of problem, and saves a
PNG contact sheet of a few clips.

Examples:
  sports1m-inspect /data/clips                       # every *.tfrecord[.gz] in the folder
  sports1m-inspect '/data/clips/train-*' --contact_sheet=train.png --decode_all
  sports1m-inspect /data/clips --json_out=report.json

Exits 1 if any record failed the check or nothing matched.
"""
from __future__ import annotations

import collections
import json
import os

import numpy as np
from absl import app, flags

from sports1m_tf import cli

from tfrecord_tools import fileio, mixing, schema, shards

_CONTACT_SHEET = flags.DEFINE_string("contact_sheet", None,
                                     "PNG contact sheet path ('' for none). Default: "
                                     "contact_sheet.png in the records' folder.")
_SHEET_CLIPS = flags.DEFINE_integer("sheet_clips", 6, "Clips (rows) on the contact sheet, at "
                                    "least: every class gets a row (up to "
                                    "64 classes).")
_SHEET_FRAMES = flags.DEFINE_integer("sheet_frames", 8, "Frames (columns) per clip on the sheet.")
_DECODE_ALL = flags.DEFINE_bool("decode_all", False, "Decode every JPEG frame (slower), "
                                "not only those on the contact sheet.")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Also write the report as JSON here.")

# A record without labels parses; the record check calls it "no label".
_REQUIRED_CONTEXT = (schema.MEDIA_ID, schema.IMAGE_HEIGHT, schema.IMAGE_WIDTH)


def find_shards(dir_or_pattern: str) -> list[str]:
    """Shards in a folder (`*.tfrecord`, `*.tfrecord.gz`) or matching a glob pattern."""
    if fileio.isdir(dir_or_pattern):
        return sorted(fileio.glob_files(fileio.join(dir_or_pattern, "*.tfrecord"))
                      + fileio.glob_files(fileio.join(dir_or_pattern, "*.tfrecord.gz")))
    return [p for p in fileio.glob_files(dir_or_pattern) if not fileio.isdir(p)]


def _compression(path: str) -> str:
    if path.endswith(".gz"):
        return "GZIP"
    return "GZIP" if fileio.read_head(path, 2) == b"\x1f\x8b" else ""


def _iter_raw(path: str):
    """(index, bytes) of each record; raises `_Framing(index, message)` at corrupt framing."""
    import tensorflow as tf  # deferred: --help stays fast
    ds = tf.data.TFRecordDataset(path, compression_type=_compression(path))
    it = iter(ds)
    index = 0
    while True:
        try:
            raw = next(it)
        except StopIteration:
            return
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise _Framing(index, e.message.splitlines()[0]) from None
        yield index, raw.numpy()
        index += 1


class _Framing(Exception):
    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index, self.message = index, message


def _check(raw: bytes) -> tuple[dict | None, str | None]:
    """Parses one record; returns (fields, None) or (None, what is wrong)."""
    import tensorflow as tf
    try:
        ex = tf.train.SequenceExample.FromString(raw)
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError types
        return None, f"not a SequenceExample ({type(e).__name__})"
    ctx, fl = ex.context.feature, ex.feature_lists.feature_list
    missing = [k for k in _REQUIRED_CONTEXT if k not in ctx] + \
              [k for k in (schema.IMAGE_ENCODED,) if k not in fl]
    if missing:
        return None, f"missing keys {missing}"
    frames = [f.bytes_list.value[0] if f.bytes_list.value else b""
              for f in fl[schema.IMAGE_ENCODED].feature]
    if not frames or not all(frames):
        return None, "empty image/encoded frame list or frame"
    if schema.IMAGE_TIMESTAMP in fl and len(fl[schema.IMAGE_TIMESTAMP].feature) != len(frames):
        return None, (f"{len(frames)} frames but {len(fl[schema.IMAGE_TIMESTAMP].feature)} "
                      "timestamps")
    return {
        "video": ctx[schema.MEDIA_ID].bytes_list.value[0].decode(),
        "labels": list(ctx[schema.LABEL_INDEX].int64_list.value)
        if schema.LABEL_INDEX in ctx else [],
        "names": [s.decode() for s in ctx[schema.LABEL_STRING].bytes_list.value]
        if schema.LABEL_STRING in ctx else [],
        "size": (ctx[schema.IMAGE_HEIGHT].int64_list.value[0],
                 ctx[schema.IMAGE_WIDTH].int64_list.value[0]),
        "frames": frames,
    }, None


def _decode(jpeg: bytes) -> np.ndarray | None:
    import cv2
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return img


def inspect_records(dir_or_pattern: str, *, contact_sheet: str | None = None,
                    sheet_clips: int = 6, sheet_frames: int = 8, decode_all: bool = False) -> dict:
    """Checks and summarises clip shards.

    Args:
      dir_or_pattern: A folder of shards or a glob pattern.
      contact_sheet: Where to save the PNG contact sheet.
      sheet_clips: Clips on the sheet (spread over the shards).
      sheet_frames: Frames per clip on the sheet (evenly spaced).
      decode_all: Decode every frame, reporting those that do not decode.

    Returns:
      {"shards": [...], "records": n, "splits": {split: {"clips", "videos",
       "clips_per_class", "videos_per_class", "mixing"}}, "frames_per_clip": {n: clips},
       "frame_sizes": {"HxW": clips}, "errors": [{"shard", "record", "error"}],
       "problems": {kind of error: records},
       "contact_sheet": path or None}.
    """
    paths = find_shards(dir_or_pattern)
    splits: dict[str, dict] = {}
    frames_per_clip: collections.Counter = collections.Counter()
    sizes: collections.Counter = collections.Counter()
    errors: list[dict] = []
    samples: list[dict] = []
    total = 0
    verdicts: dict = {}
    for path in paths:
        verdict = _verdict_of(path, verdicts)
        parsed = shards.parse_shard_name(path)
        split = parsed[0] if parsed else os.path.basename(path).split(".")[0]
        s = splits.setdefault(split, {"clips": 0, "videos": set(),
                                      "clips_per_class": collections.Counter(),
                                      "videos_per_class": collections.defaultdict(set),
                                      "mixing": mixing.Meter()})
        try:
            for index, raw in _iter_raw(path):
                total += 1
                fields, problem = _check(raw)
                if problem is None:
                    problem = verdict(raw)
                if problem is None and decode_all:
                    bad = [i for i, f in enumerate(fields["frames"]) if _decode(f) is None]
                    if bad:
                        problem = f"frames {bad} do not decode as images"
                if fields is not None:  # a record that fails the check still has its place
                    s["mixing"].add(path, fields["video"])
                if problem:
                    errors.append({"shard": path, "record": index, "error": problem})
                    continue
                s["clips"] += 1
                s["videos"].add(fields["video"])
                for label, name in zip(fields["labels"], fields["names"] or
                                       [str(i) for i in fields["labels"]]):
                    s["clips_per_class"][name] += 1
                    s["videos_per_class"][name].add(fields["video"])
                frames_per_clip[len(fields["frames"])] += 1
                sizes["%dx%d" % fields["size"]] += 1
                if _wants_sample(samples, fields, sheet_clips, index == 0 or
                                 len(paths) < sheet_clips):
                    samples.append(fields)
        except _Framing as e:
            errors.append({"shard": path, "record": e.index,
                           "error": f"corrupt TFRecord data (the rest of the shard is "
                                    f"unreadable): {e.message}"})
    sheet = None
    if contact_sheet and samples:
        sheet = _write_contact_sheet(contact_sheet, samples, sheet_frames)
        errors += [{"shard": "", "record": -1, "error": m} for m in sheet[1]]
        sheet = sheet[0]
    return {
        "shards": paths,
        "records": total,
        "splits": {k: {"clips": v["clips"], "videos": len(v["videos"]),
                       "clips_per_class": dict(sorted(v["clips_per_class"].items())),
                       "videos_per_class": {c: len(vs) for c, vs in
                                            sorted(v["videos_per_class"].items())},
                       "mixing": v["mixing"].report()}
                   for k, v in splits.items()},
        "frames_per_clip": {str(k): v for k, v in sorted(frames_per_clip.items())},
        "frame_sizes": dict(sizes),
        "errors": errors,
        "problems": dict(collections.Counter(_kind(e["error"]) for e in errors)),
        "contact_sheet": sheet,
    }


def _verdict_of(path: str, verdicts: dict):
    """The record check of `path`'s split (its rules from the folder's dataset.json)."""
    from sports1m_tf.data import record_check  # deferred: it imports TensorFlow
    rules = record_check.rules_for([path])
    if rules not in verdicts:
        verdicts[rules] = record_check.verdict_function(rules)
    return verdicts[rules]


def _kind(error: str) -> str:
    """The kind of a problem, for counting: the message up to its details."""
    return error.split(" (")[0].split(":")[0]


MAX_SHEET_CLASSES = 64  # rows given to classes not yet on the sheet


def _wants_sample(samples: list[dict], fields: dict, sheet_clips: int, spread: bool) -> bool:
    """Whether a clip goes on the contact sheet: one of a class not yet shown, else
    up to `sheet_clips` clips spread over the shards."""
    shown = {label for sample in samples for label in sample["labels"]}
    if not set(fields["labels"]) <= shown:
        return len(shown) < MAX_SHEET_CLASSES
    return spread and len(samples) < sheet_clips


def default_sheet_path(dir_or_pattern: str) -> str:
    """contact_sheet.png in the folder of the records."""
    folder = dir_or_pattern if fileio.isdir(dir_or_pattern) else os.path.dirname(dir_or_pattern)
    return fileio.join(folder or ".", "contact_sheet.png")


def _write_contact_sheet(path: str, samples: list[dict], columns: int
                         ) -> tuple[str, list[str]]:
    """One row per clip: `columns` evenly spaced frames, the video id and classes on top."""
    import cv2
    cell = 128
    rows, problems = [], []
    for clip in samples:
        picks = np.linspace(0, len(clip["frames"]) - 1, min(columns, len(clip["frames"])))
        tiles = []
        for i in picks.round().astype(int):
            img = _decode(clip["frames"][i])
            if img is None:
                problems.append(f"contact sheet: frame {i} of a clip of {clip['video']} does "
                                "not decode")
                img = np.zeros((cell, cell, 3), np.uint8)
            tiles.append(cv2.resize(img, (cell, cell), interpolation=cv2.INTER_AREA))
        tiles += [np.zeros((cell, cell, 3), np.uint8)] * (columns - len(tiles))
        row = np.concatenate(tiles, axis=1)
        banner = np.full((18, row.shape[1], 3), 255, np.uint8)
        text = f"{clip['video']}  {', '.join(clip['names']) or clip['labels']}"
        cv2.putText(banner, text[:80], (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
        rows.append(np.concatenate([banner, row], axis=0))
    ok, png = cv2.imencode(".png", np.concatenate(rows, axis=0))
    if not ok:
        raise RuntimeError("PNG encoding of the contact sheet failed")
    parent = os.path.dirname(path)
    if parent:
        fileio.makedirs(parent)
    fileio.write_bytes_atomic(path, png.tobytes())
    return path, problems


def format_mixing(m: dict) -> str:
    """One line: does the split's record order mix videos (see `mixing.py`)?"""
    if m["distinct_per_32"] is None:
        return f"  mixing: no shard holds {m['batch']} records; nothing to measure"
    verdict = ("mixes" if m["mixes"] else
               "does NOT mix: reconvert with this sports1m-convert, or train with "
               "--shuffle_buffer near the split's clip count")
    return (f"  mixing: {m['distinct_per_32']} distinct videos per {m['batch']} consecutive "
            f"records, {m['uniform_per_32']} in a uniform random draw "
            f"({100 * m['ratio']:.0f}%): {verdict}")


def format_report(report: dict) -> str:
    """The report as text."""
    out = [f"{len(report['shards'])} shards, {report['records']} records"]
    for split, s in report["splits"].items():
        out.append(f"split {split}: {s['clips']} clips from {s['videos']} videos, "
                   f"{len(s['clips_per_class'])} classes")
        out.append(format_mixing(s["mixing"]))
        for name, n in s["clips_per_class"].items():
            out.append(f"  {name:30s} {n:8d} clips {s['videos_per_class'][name]:6d} videos")
    out.append("frames per clip: " + ", ".join(f"{k}: {v} clips"
                                               for k, v in report["frames_per_clip"].items()))
    out.append("frame sizes: " + ", ".join(f"{k}: {v} clips"
                                           for k, v in report["frame_sizes"].items()))
    if report["contact_sheet"]:
        out.append(f"contact sheet: {report['contact_sheet']}")
    if report["errors"]:
        out.append(f"{len(report['errors'])} BAD RECORDS:")
        out += [f"  {e['shard']} record {e['record']}: {e['error']}" for e in report["errors"]]
        out.append("problems: " + ", ".join(f"{kind}: {n}" for kind, n in
                                            sorted(report["problems"].items())))
    else:
        out.append("every record parses")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise app.UsageError("usage: sports1m-inspect DIR_OR_PATTERN [flags]")
    sheet = (default_sheet_path(argv[1]) if _CONTACT_SHEET.value is None
             else _CONTACT_SHEET.value or None)
    report = inspect_records(argv[1], contact_sheet=sheet,
                             sheet_clips=_SHEET_CLIPS.value, sheet_frames=_SHEET_FRAMES.value,
                             decode_all=_DECODE_ALL.value)
    if not report["shards"]:
        raise cli.UserError(f"no shard matches {argv[1]}: give a folder of shards or a glob "
                            "such as 'records/train-*'")
    print(format_report(report))
    if _JSON_OUT.value:
        fileio.write_text_atomic(_JSON_OUT.value, json.dumps(report, indent=1) + "\n")
    return 1 if report["errors"] else 0


run = cli.entry(main)


if __name__ == "__main__":
    run()
