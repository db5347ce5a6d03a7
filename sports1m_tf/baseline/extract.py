"""Clip records → video-level feature vectors: parallel over clips, cached on disk, with progress.

Records are read in this process (TensorFlow's reader, the same files as the
CNNs); each clip's frames go to a pool of spawned worker processes
(`encode.py`, no TensorFlow) that return its pyramid histograms; histograms are
summed per video here, so a video whose clips sit in several shards comes out
whole. Bad input is skipped and reported, never fatal: an unreadable or
corrupt file (from the first bad byte on), a record that is not a clip, a clip
whose frames do not decode, a video none of whose clips could be used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import random
import tempfile
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from sports1m_tf.baseline import encode
from sports1m_tf.baseline.descriptors import FEATURE_TYPES, DescriptorSettings
from sports1m_tf.baseline.histograms import video_vector
from sports1m_tf.baseline.vocabulary import Vocabulary
from sports1m_tf.data.records import compression_of, list_files
from tfrecord_tools import fileio, schema

_BATCH = 64  # clips handed to the pool at a time: bounds memory whatever the dataset size


@dataclasses.dataclass
class Clip:
    """One parsed clip record."""
    source: str                # "file#record index", for reports
    media_id: str
    labels: tuple[int, ...]
    label_strings: tuple[str, ...]
    encoded: list[bytes]       # one JPEG per stored frame


@dataclasses.dataclass
class VideoFeatures:
    """Video vectors of one set of record files.

    Attributes:
      ids: V media ids, sorted.
      vectors: float32 [V, dim].
      label_lists: V tuples of class indices (empty when the records had none).
      clips: int [V], clips used per video.
      class_names: {index: name} seen in the records' label strings.
      problems: [{"source", "reason"}] for every skipped file, record, clip or video.
    """
    ids: list[str]
    vectors: np.ndarray
    label_lists: list[tuple[int, ...]]
    clips: np.ndarray
    class_names: dict[int, str]
    problems: list[dict]


def parse_clip_record(data: bytes, source: str) -> Clip:
    """Parses a serialised clip `SequenceExample`; ValueError names what is wrong."""
    try:
        example = tf.train.SequenceExample.FromString(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise ValueError(f"not a SequenceExample ({type(e).__name__})") from e
    context = example.context.feature
    if schema.MEDIA_ID not in context or not context[schema.MEDIA_ID].bytes_list.value:
        raise ValueError(f"no {schema.MEDIA_ID}")
    frames = example.feature_lists.feature_list[schema.IMAGE_ENCODED].feature
    encoded = [f.bytes_list.value[0] for f in frames if f.bytes_list.value]
    if len(encoded) < 2:
        raise ValueError(f"{len(encoded)} frames in {schema.IMAGE_ENCODED} (need at least 2)")
    labels = tuple(int(v) for v in context[schema.LABEL_INDEX].int64_list.value) \
        if schema.LABEL_INDEX in context else ()
    strings = tuple(v.decode("utf-8", "replace") for v in
                    context[schema.LABEL_STRING].bytes_list.value) \
        if schema.LABEL_STRING in context else ()
    return Clip(source, context[schema.MEDIA_ID].bytes_list.value[0].decode("utf-8", "replace"),
                labels, strings, encoded)


def iter_clips(files: Sequence[str], problems: list[dict]) -> Iterator[Clip]:
    """Clips of `files`, in file order; bad files and records go to `problems`."""
    for path in files:
        index = -1
        try:
            records = tf.data.TFRecordDataset(path, compression_type=compression_of(path))
            for index, data in enumerate(records.as_numpy_iterator()):
                try:
                    yield parse_clip_record(data, f"{path}#{index}")
                except ValueError as e:
                    problems.append({"source": f"{path}#{index}", "reason": str(e)})
        except (ValueError, tf.errors.OpError) as e:
            reason = getattr(e, "message", None) or str(e)
            where = "unreadable" if index < 0 else f"unreadable after record {index}"
            problems.append({"source": path, "reason": f"{where}: {reason.splitlines()[0]}"})
            logging.warning("%s: %s: %s", path, where, reason)


def _run(fn: Callable, tasks: Iterable[tuple], workers: int, initargs: tuple) -> Iterator:
    """Applies `fn` to `tasks` in `workers` spawned processes (inline when workers == 1)."""
    if workers <= 1:
        encode.init_worker(*initargs)
        yield from map(fn, tasks)
        return
    # spawn, not fork: this process holds TensorFlow's threads, which fork would copy broken.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=encode.init_worker, initargs=initargs) as pool:
        batch: list[tuple] = []
        for task in tasks:
            batch.append(task)
            if len(batch) == _BATCH * workers:
                yield from pool.imap(fn, batch, chunksize=4)
                batch = []
        yield from pool.imap(fn, batch, chunksize=4)


def resolve_workers(workers: int) -> int:
    return workers if workers > 0 else (os.cpu_count() or 1)


def sample_descriptors(files: Sequence[str], settings: DescriptorSettings, *,
                       max_clips: int, max_per_type: int, workers: int = 1,
                       seed: int = 0) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Descriptors from a random sample of clips, for fitting the vocabularies.

    Args:
      files: clip record files (the training split).
      settings: descriptor settings.
      max_clips: Clips sampled (reservoir sampling over all records).
      max_per_type: Descriptors kept per type in all.
      workers: Processes (0 = one per core).

    Returns:
      ({type: float32 [M, D]}, problems).
    """
    problems: list[dict] = []
    rng = random.Random(seed)
    reservoir: list[tuple] = []
    for n, clip in enumerate(iter_clips(files, problems)):
        # Keep only the frames the descriptors read: the reservoir holds max_clips clips.
        item = (clip.source, len(clip.encoded), encode.select(clip.encoded, settings))
        if len(reservoir) < max_clips:
            reservoir.append(item)
        elif (j := rng.randrange(n + 1)) < max_clips:
            reservoir[j] = item
    if not reservoir:
        raise ValueError(f"no usable clip in {list(files)}; problems: {problems[:5]}")
    rows = -(-max_per_type // len(reservoir))
    tasks = [item + (rows, seed + i) for i, item in enumerate(reservoir)]
    out: dict[str, list[np.ndarray]] = {t: [] for t in FEATURE_TYPES}
    workers = resolve_workers(workers)
    for source, d, error in tqdm(_run(encode.sample_clip, tasks, workers, (settings, None)),
                                 total=len(tasks), desc="vocabulary sample", unit="clip",
                                 mininterval=2.0):
        if error:
            problems.append({"source": source, "reason": error})
            continue
        for t in FEATURE_TYPES:
            out[t].append(d[t])
    samples = {t: np.concatenate(v)[:max_per_type] if v else np.zeros((0, 1), np.float32)
               for t, v in out.items()}
    return samples, problems


def _cache_key(files: Sequence[str], settings: DescriptorSettings, vocabulary: Vocabulary,
               clips_per_video: int) -> str:
    h = hashlib.sha256()
    for path in files:
        st = tf.io.gfile.stat(path)
        h.update(f"{os.path.abspath(path)}|{st.length}|{st.mtime_nsec}\n".encode())
    h.update(json.dumps([dataclasses.asdict(settings), clips_per_video,
                         vocabulary.digest()]).encode())
    return h.hexdigest()[:24]


def _save(path: str, f: VideoFeatures) -> None:
    width = max([len(l) for l in f.label_lists] + [1])
    labels = np.full((len(f.ids), width), -1, np.int64)
    for i, l in enumerate(f.label_lists):
        labels[i, :len(l)] = l
    meta = json.dumps({"ids": f.ids, "class_names": {str(k): v for k, v in f.class_names.items()},
                       "problems": f.problems})
    with fileio.atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.savez(out, vectors=f.vectors, labels=labels, clips=f.clips,
                 meta=np.frombuffer(meta.encode(), np.uint8))


def _load(path: str) -> VideoFeatures:
    with np.load(path) as data:
        meta = json.loads(data["meta"].tobytes().decode())
        labels = [tuple(int(v) for v in row if v >= 0) for row in data["labels"]]
        return VideoFeatures(meta["ids"], data["vectors"], labels, data["clips"],
                             {int(k): v for k, v in meta["class_names"].items()},
                             meta["problems"])


def extract_features(file_pattern: str | Sequence[str], vocabulary: Vocabulary,
                     settings: DescriptorSettings, *, clips_per_video: int = 20,
                     workers: int = 0, cache_dir: str | None = None,
                     desc: str = "features") -> VideoFeatures:
    """Video vectors of every video in some clip record files.

    Args:
      file_pattern: glob(s) or paths of clip record shards.
      vocabulary: the fitted codebooks.
      settings: descriptor settings (must be those the vocabulary was fitted with).
      clips_per_video: At most this many clips of a video are used (the
        first met; records already hold randomly sampled clips).
      workers: Worker processes (0 = one per core, 1 = in this process).
      cache_dir: Reuse/write `features-<key>.npz` there; the key
        covers the files (path, size, mtime), the settings and the vocabulary.

    Returns:
      VideoFeatures (vectors float32 [V, 5 × Σ K]).
    """
    files = list_files(file_pattern)
    cache = None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        cache = os.path.join(cache_dir, f"features-{_cache_key(files, settings, vocabulary, clips_per_video)}.npz")
        if os.path.exists(cache):
            logging.info("%s: cached features %s", desc, cache)
            return _load(cache)

    problems: list[dict] = []
    sums: dict[str, dict[str, np.ndarray]] = {}
    used: dict[str, int] = {}
    labels: dict[str, tuple[int, ...]] = {}
    names: dict[int, str] = {}
    seen: dict[str, int] = {}

    def tasks() -> Iterator[tuple]:
        for clip in iter_clips(files, problems):
            if seen.get(clip.media_id, 0) >= clips_per_video:
                continue
            seen[clip.media_id] = seen.get(clip.media_id, 0) + 1
            if clip.media_id in labels and labels[clip.media_id] != clip.labels:
                problems.append({"source": clip.source, "reason":
                                 f"video {clip.media_id}: labels {clip.labels} differ from "
                                 f"its other clips' {labels[clip.media_id]}; kept the first"})
            labels.setdefault(clip.media_id, clip.labels)
            names.update(zip(clip.labels, clip.label_strings))
            yield clip.source, clip.media_id, len(clip.encoded), encode.select(clip.encoded, settings)

    workers = resolve_workers(workers)
    with _vocabulary_file(vocabulary) as vocab_path:
        for source, media_id, hist, error in tqdm(
                _run(encode.encode_clip, tasks(), workers, (settings, vocab_path)),
                desc=desc, unit="clip", mininterval=2.0):
            if error:
                problems.append({"source": source, "reason": error})
                continue
            acc = sums.setdefault(media_id, {t: np.zeros_like(h) for t, h in hist.items()})
            for t, h in hist.items():
                acc[t] += h
            used[media_id] = used.get(media_id, 0) + 1
    for media_id in sorted(set(seen) - set(sums)):
        problems.append({"source": f"video {media_id}", "reason": "no usable clip; video skipped"})
    ids = sorted(sums)
    if not ids:
        raise ValueError(f"no usable clip in {files}; problems: {problems[:5]}")
    vectors = np.stack([video_vector(sums[i]) for i in ids])
    result = VideoFeatures(ids, vectors, [labels[i] for i in ids],
                           np.array([used[i] for i in ids]), names, problems)
    if problems:
        logging.warning("%s: skipped %d file(s)/record(s)/clip(s)/video(s); first: %s",
                        desc, len(problems), problems[0])
    logging.info("%s: %d videos, %d clips, vector dimension %d", desc, len(ids),
                 int(result.clips.sum()), vectors.shape[1])
    if cache:
        _save(cache, result)
    return result


@contextlib.contextmanager
def _vocabulary_file(vocabulary: Vocabulary) -> Iterator[str]:
    """The vocabulary saved to a temporary file, for the worker processes to load."""
    fd, path = tempfile.mkstemp(suffix=".npz", prefix="vocabulary-")
    os.close(fd)
    try:
        vocabulary.save(path)
        yield path
    finally:
        os.remove(path)
