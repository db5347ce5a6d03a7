"""One verdict per clip record: what `sports1m-inspect` reports and what training and evaluation skip.

A record can parse and still lie: a label index past the class list, a label
name that is another class's, frames that are PNG, frames of another size than
the record states, fewer frames than a clip. Decoding alone catches some of
these and not others (a PNG frame decodes in evaluation's full decode but not
in training's cropped one), so every reader asks this one check instead.

`problem_code` is graph code without control flow, cheap enough to run on every
record where it is parsed (a few comparisons on fields the parse reads anyway,
one look at the first two bytes of every frame, one JPEG header read);
`sound_clip` gives a record's frames only if it is sound, so that the pipeline
skips a record with a problem and its `ErrorCounter` names the file and counts
the kind of problem.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import tensorflow as tf

from sports1m_tf.data import dataset_info
from tfrecord_tools import schema

# Index 0 is a sound record; the others name each problem, in the order it is checked.
PROBLEMS = (
    "sound",
    "no label",
    "label index outside the class list",
    "label name is not the class of its index",
    "frames are not JPEG",
    "frame size is not the one the record states",
    "fewer frames than a clip",
    "a frame read is cut short or of another size",
    "frames are smaller than the crop",
)
_JPEG_START = b"\xff\xd8"  # start of image: PNG, GIF and others start otherwise
_JPEG_END = b"\xff\xd9"  # end of image: a frame cut short lacks it


@dataclasses.dataclass(frozen=True)
class Rules:
    """What a record of a split must be, from its `dataset.json` where there is one.

    Attributes:
      num_classes: label indices must lie in [0, num_classes) (None: only >= 0).
      class_names: the class of each index (None: label names are not checked).
      clip_frames: frames a clip holds at least.
    """
    num_classes: int | None
    class_names: tuple[str, ...] | None = None
    clip_frames: int = schema.CLIP_FRAMES


def rules_for(files: Sequence[str], num_classes: int | None = None,
              clip_frames: int | None = None) -> Rules:
    """The rules of the records in `files`: classes and clip length from their `dataset.json`.

    Args:
      files: the record files (their folder's `dataset.json` is read if present).
      num_classes: the label range; defaults to the number of classes listed
        (without either, labels are only checked to be >= 0).
      clip_frames: frames per clip; defaults to the conversion's setting, else
        `schema.CLIP_FRAMES`.
    """
    info, _ = dataset_info.dataset_info(files)
    names = tuple(info["classes"]) if info and info.get("classes") else None
    if num_classes is None and names is not None:
        num_classes = len(names)
    if names is not None and len(names) != num_classes:
        names = None  # another class list than the model's: checked elsewhere, by name
    if clip_frames is None:
        basenames = {f.rsplit("/", 1)[-1] for f in files}
        settings = [section.get("settings", {}) for section in (info or {}).get(
            "splits", {}).values() if basenames & set(section.get("shards", ()))]
        frames = [int(s["clip_frames"]) for s in settings if s.get("clip_frames")]
        clip_frames = min(frames) if frames else schema.CLIP_FRAMES
    return Rules(None if num_classes is None else int(num_classes), names, int(clip_frames))


def context_features() -> dict:
    """The context features the check reads besides the label indices."""
    return {schema.LABEL_STRING: tf.io.VarLenFeature(tf.string),
            schema.IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            schema.IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=-1)}


def problem_code(labels: tf.Tensor, label_names: tf.Tensor, height: tf.Tensor,
                 width: tf.Tensor, encoded: tf.Tensor, rules: Rules) -> tf.Tensor:
    """int32 []: 0 for a sound record, else the index in `PROBLEMS` of its first problem.

    No control flow (it runs on tf.data's single-threaded executor) and nothing
    that can fail: a record with a problem must be counted before it is skipped.

    Args:
      labels: int64 [L]. `clip/label/index`.
      label_names: string [L']. `clip/label/string` (may be empty: not checked).
      height, width: int64 []. The stored size the record states (-1: not stated).
      encoded: string [F]. The frames.
      rules: `Rules`.
    """
    return _verdict(labels, label_names, height, width, encoded, rules)[0]


def _verdict(labels, label_names, height, width, encoded, rules: Rules,
             read: Sequence[int] = (), min_size: int = 0):
    """(problem code, int32 [2] height and width of frame 0, string [len(read)] the frames
    at `read` or None): `problem_code`, and for a reader the frames it decodes (whole,
    of frame 0's size) and the crop it takes (`min_size`), so that a sound record's
    frames decode without failing."""
    if rules.num_classes is not None:  # one unsigned comparison also refuses negatives
        outside = tf.reduce_any(tf.bitcast(labels, tf.uint64) >= rules.num_classes)
    else:
        outside = tf.reduce_any(labels < 0)
    if rules.class_names:
        names = tf.gather(tf.constant(rules.class_names),
                          tf.clip_by_value(labels, 0, rules.num_classes - 1))
        # Joined, so that lists of different lengths compare unequal without a branch.
        misnamed = (tf.size(label_names) > 0) & tf.not_equal(
            tf.strings.reduce_join(names, separator="\0"),
            tf.strings.reduce_join(label_names, separator="\0"))
    else:
        misnamed = tf.constant(False)
    count = tf.size(encoded)
    jpeg = tf.reduce_all(tf.equal(tf.strings.substr(encoded, 0, len(_JPEG_START)), _JPEG_START))
    # Frame 0's header where it is a JPEG, else a stand-in that reads as the stated
    # size: the header read must not fail before the problem is counted.
    readable = jpeg & (count > 0)
    first = tf.raw_ops.Select(condition=readable, x=tf.strings.reduce_join(encoded[:1]),
                              y=_stand_in())
    shape = tf.io.extract_jpeg_shape(first)[:2]
    stated = tf.cast(tf.stack([height, width]), tf.int32)
    resized = readable & tf.reduce_any((stated >= 0) & tf.not_equal(shape, stated))
    problems = [False, tf.size(labels) == 0, outside, misnamed, ~jpeg, resized,
                count < rules.clip_frames]
    picked = None
    if read:
        # Each frame read, on its own; where it is missing or frame 0 is not a JPEG
        # (already a problem), frame 0's stand-in, so that nothing here fails before
        # the problem is counted. Its header and its end marker are looked at.
        chosen = [tf.raw_ops.Select(condition=readable & (i < count),
                                    x=tf.strings.reduce_join(encoded[i:i + 1]), y=first)
                  for i in read]
        sizes = tf.stack([tf.io.extract_jpeg_shape(frame)[:2] for frame in chosen])
        picked = tf.stack(chosen)
        ends = tf.equal(tf.strings.substr(picked, -len(_JPEG_END), len(_JPEG_END)), _JPEG_END)
        problems.append(readable & ~(tf.reduce_all(ends) & tf.reduce_all(
            tf.equal(sizes, shape))))
    else:
        problems.append(False)
    problems.append(readable & tf.reduce_any(shape < min_size) if min_size else False)
    # The first problem's index: argmax of [0, problems...] is 0 when there is none.
    code = tf.argmax(tf.cast(tf.stack(problems), tf.int32), output_type=tf.int32)
    return code, shape, picked


@functools.cache
def _stand_in() -> bytes:
    """A 1x1 JPEG, read in place of a first frame that is not one."""
    with tf.init_scope():
        return tf.io.encode_jpeg(tf.zeros([1, 1, 1], tf.uint8)).numpy()


# Added to the frame indices of a record with a problem: past any clip, so the
# gather of its frames fails and the record is skipped, by data (no branch).
_REFUSED = 1 << 24


def sound_clip(clip: dict, rules: Rules, indices: Sequence[int],
               count: Callable[[tf.Tensor], object] | None = None,
               min_size: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    """The frames at `indices` of a sound record, and their size; fails for a record with a problem.

    Besides `problem_code`, the frames at `indices` must end as a JPEG ends and be
    of frame 0's size, and that size at least `min_size` (the reader's crop): a
    sound record's frames then decode without failing, so a reader may decode
    many records in one step without one record's fault costing the others.

    Args:
      clip: the parsed record (`records.parse_clip`).
      rules: `Rules`.
      indices: the frames wanted (e.g. the model's `frames_needed`).
      count: `fn(code) -> code` that counts the kind of problem and hands the
        code on once counted (`ErrorCounter.problem_counter`), or None.
      min_size: the smallest height and width the reader accepts.

    Returns:
      (string [len(indices)] encoded frames, int32 [2] their height and width),
      which exist only once the record is found sound and holds those frames
      (else the step fails, so the record is skipped, and counted where the step is).
    """
    code, size, frames = _verdict(clip["labels"], clip["label_names"], clip["height"],
                                  clip["width"], clip["encoded"], rules, indices, min_size)
    if count is not None:
        code = count(code)  # the same code, known only once counted: then the gather fails
    return tf.gather(frames, tf.range(len(indices)) + code * _REFUSED), size


def stand_in_record(rules: Rules, indices: Sequence[int], min_size: int = 0) -> bytes:
    """A serialised clip that `sound_clip(.., rules, indices, min_size=min_size)` finds sound
    (label 0, black frames), for a step that must not fail on the record it is given."""
    from tfrecord_tools import clip_encoding
    side = max(min_size, 16)
    with tf.init_scope():
        frame = tf.io.encode_jpeg(tf.zeros([side, side, 3], tf.uint8)).numpy()
    frames = max(rules.clip_frames, max(indices, default=0) + 1)
    return clip_encoding.encode_clip(
        media_id="stand-in", label_indices=[0],
        label_strings=[rules.class_names[0] if rules.class_names else "0"],
        encoded_frames=[frame] * frames, frame_timestamps_us=list(range(frames)),
        frame_rate=1.0, height=side, width=side)


def verdict_function(rules: Rules) -> Callable[[bytes], str | None]:
    """`fn(serialised record) -> problem or None`, the same check in Python (for inspection).

    The record must parse as a clip (`records.parse_clip`); one traced function
    serves every record.
    """
    from sports1m_tf.data import records

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def check(record):
        clip = records.parse_clip(record)
        return problem_code(clip["labels"], clip["label_names"], clip["height"],
                            clip["width"], clip["encoded"], rules)

    def verdict(record: bytes) -> str | None:
        code = int(check(tf.constant(record)))
        return PROBLEMS[code] if code else None

    return verdict
