"""Whole videos and their segments → predictions through a SavedModel's `predict_video`.

`process_files` runs a model in this process on the clips that
`export.decode_pool` workers decode and hands each segment to a `FileHandler`,
which assembles each file's result in the order of the files given;
`predict_files` does it with a `PredictionHandler` (the video's top 5, and each
segment's when the videos are cut into segments). It defines no flags:
`sports1m-predict`, `sports1m-features` and the benchmarks use it.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from export import decode_pool, frame_bounds
from sports1m_tf import cli
from tfrecord_tools import schema

CLASS_NAMES_ASSET = os.path.join("assets", "class_names.txt")
MODEL_INFO_FILE = os.path.join("assets.extra", "model_info.json")


def resolve_saved_model(path: str) -> str:
    """`path` if it holds a saved_model.pb, else its highest integer version folder."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    found = sorted((int(d) for d in os.listdir(path) if d.isdigit()
                    and os.path.isfile(os.path.join(path, d, "saved_model.pb")))
                   if os.path.isdir(path) else [])
    if not found:
        raise cli.UserError(f"--saved_model {path}: no saved_model.pb there nor in a "
                            "numbered version folder under it; export one with sports1m-export")
    return os.path.join(path, str(found[-1]))


def model_class_names(version_dir: str) -> list[str]:
    """The class names shipped in a SavedModel's assets, in class-index order."""
    return read_class_names(os.path.join(version_dir, CLASS_NAMES_ASSET))


def read_class_names(path: str) -> list[str]:
    """Class names, one a line (`saved_model.write_class_names`' files)."""
    with open(path, encoding="utf-8") as f:
        return f.read().rstrip("\n").split("\n")


def read_model_info(version_dir: str, relative_path: str = MODEL_INFO_FILE) -> dict:
    """A SavedModel's model_info.json; {} for one exported before the file existed."""
    try:
        with open(os.path.join(version_dir, relative_path), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def model_frames(version_dir: str) -> tuple[int, ...] | None:
    """The clip frames a SavedModel reads (from its model_info.json); None when unknown
    (a model exported before the file existed: send every frame)."""
    frames = read_model_info(version_dir).get("frames")
    return None if frames is None else tuple(int(i) for i in frames)


def model_bounds(version_dir: str) -> frame_bounds.FrameBounds | None:
    """The frame bounds a SavedModel enforces (`export.frame_bounds`); None when unknown
    (a model exported before model_info.json existed)."""
    info = read_model_info(version_dir)
    return frame_bounds.from_model_info(info) if info else None


class ClassifyingModel:
    """What every video model of `sports1m-predict` has: class names and the top k of them."""

    class_names: list[str]

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[dict]:
        """The top-k dicts of a probability vector (best first; ties by lower id)."""
        ids = np.argsort(-probs, kind="stable")[:k]
        return [{"id": int(i), "name": self.class_names[i], "probability": float(probs[i])}
                for i in ids]


class VideoModel(ClassifyingModel):
    """The SavedModel's `predict_video` (and `embed_video`) signature, loaded at its first
    call and timed.

    Loading on first use lets the decoding processes start while TensorFlow
    loads, and a run where every file fails never loads it.
    """

    def __init__(self, version_dir: str):
        self.version_dir = version_dir
        self.class_names = model_class_names(version_dir)
        self.info = read_model_info(version_dir)
        self.frames = model_frames(version_dir)
        # Clients send the converter's 200-pixel frames; the signatures resize them to
        # the model's stored size.
        self.frame_size = schema.FRAME_SIZE
        self.bounds = model_bounds(version_dir)
        self._loaded = None
        self.seconds = 0.0       # predicting, load excluded
        self.load_seconds = 0.0

    def _signature(self, name: str):
        if self._loaded is None:
            start = time.perf_counter()
            import tensorflow as tf
            self._constant = tf.constant
            self._loaded = tf.saved_model.load(self.version_dir)
            self.load_seconds = time.perf_counter() - start
        return self._loaded.signatures[name]

    def __call__(self, clips: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """(probabilities [C], top-k dicts) of one video's (or segment's) clips."""
        predict = self._signature("predict_video")
        start = time.perf_counter()
        out = predict(clips=self._constant(clips))
        probs = out["probabilities"].numpy()[0]
        ids, names, scores = (out[k].numpy()[0] for k in ("top_k_ids", "top_k_names",
                                                          "top_k_scores"))
        self.seconds += time.perf_counter() - start
        return probs, [{"id": int(i), "name": n.decode("utf-8"), "probability": float(s)}
                       for i, n, s in zip(ids, names, scores)]

    def embed(self, clips: np.ndarray) -> np.ndarray:
        """float32 [n, d]: each clip's embedding (`embed_video`'s `clip_embeddings`)."""
        embed = self._signature("embed_video")
        start = time.perf_counter()
        out = embed(clips=self._constant(clips))["clip_embeddings"].numpy()
        self.seconds += time.perf_counter() - start
        return out

class FileHandler:
    """What a run over files does with each file's segments (`process_files`).

    Subclasses keep a state per file: `new_state()`, then `add_segment(state,
    segment)` for each decoded segment in time order, then `finish(path, state)`
    gives the file's result dict. `model` has `frames` (the clip offsets to
    convert), `seconds` and `load_seconds` (`VideoModel`'s).
    """

    def __init__(self, model):
        self.model = model

    def new_state(self):
        raise NotImplementedError

    def add_segment(self, state, segment) -> None:
        raise NotImplementedError

    def finish(self, path: str, state) -> dict:
        raise NotImplementedError


class _FileState:
    """A file's segment results and the running sum of its clips' probabilities."""

    def __init__(self):
        self.segments: list[dict] = []
        self.prob_sum = None
        self.clips = 0
        self.top_k: list[dict] = []


def _segment_entry(segment, top_k: list[dict]) -> dict:
    return {"start_seconds": round(segment.start_seconds, 3),
            "end_seconds": round(segment.end_seconds, 3),
            "clips": int(len(segment.clips)), "top_k": top_k}


class PredictionHandler(FileHandler):
    """Each file's top 5, and each segment's when `segmented`."""

    def __init__(self, model: VideoModel, segmented: bool):
        super().__init__(model)
        self.segmented = segmented

    def new_state(self) -> _FileState:
        return _FileState()

    def add_segment(self, state: _FileState, segment) -> None:
        n = len(segment.clips)
        top_k: list[dict] = []
        if n:
            probs, top_k = self.model(segment.clips)
            # Weighted by clips: the mean over every view of every clip of the video.
            state.prob_sum = probs * n if state.prob_sum is None else state.prob_sum + probs * n
            state.clips += n
            state.top_k = top_k
        if self.segmented:
            state.segments.append(_segment_entry(segment, top_k))

    def finish(self, path: str, state: _FileState) -> dict:
        if state.clips == 0:
            return too_short(path)
        top_k = self.model.top_k(state.prob_sum / state.clips) if self.segmented \
            else state.top_k
        return {"video": path, "clips": state.clips, "top_k": top_k,
                "segments": state.segments}


def too_short(path: str) -> dict:
    """The error result of a file none of whose segments holds a whole clip."""
    return {"video": path, "error": "too short: no segment holds a whole clip of 16 frames"}


def predict_files(model: VideoModel, paths: Sequence[str], options: decode_pool.DecodeOptions,
                  workers: int = 1, on_progress: Callable[[dict], None] | None = None,
                  stats: dict | None = None,
                  on_segment: Callable[[int, object], None] | None = None) -> Iterable[dict]:
    """Predictions of every file (`process_files` with a `PredictionHandler`).

    Yields:
      One dict per path: `video`, `clips`, `top_k` (list of `{id, name,
      probability}`, best first), `segments` (`start_seconds`, `end_seconds`,
      `clips`, `top_k` each; empty without segments); or `video` and `error`.
    """
    handler = PredictionHandler(model, options.segment_seconds > 0)
    return process_files(handler, paths, options, workers, on_progress, stats, on_segment)


def process_files(handler: FileHandler, paths: Sequence[str],
                  options: decode_pool.DecodeOptions, workers: int = 1,
                  on_progress: Callable[[dict], None] | None = None,
                  stats: dict | None = None,
                  on_segment: Callable[[int, object], None] | None = None) -> Iterable[dict]:
    """Results of every file, in the order of `paths`, as soon as each is known.

    Args:
      handler: what to do with each file's segments (its `model` runs in this process).
      paths: the video files.
      options: how each is cut (whole video or segments).
      on_progress: called with each result as its file completes (any order).
      on_segment: called with (index in `paths`, `video_input.Segment`) once each
        segment's clips have gone through the model: progress inside a long video.
      stats: a dict filled at the end with `seconds`, `wait_seconds` (the model
        waiting for decoding), `model_seconds` and `decode_seconds` (summed over
        the workers), and `load_seconds` (loading the model at the first call, left
        out of `seconds`).

    Yields:
      `handler.finish`'s dict for each path, or `video` and `error`.
    """
    model = handler.model
    states = [handler.new_state() for _ in paths]
    ready: dict[int, dict] = {}
    emitted = 0
    stats = {} if stats is None else stats
    stats.update(seconds=0.0, wait_seconds=0.0, model_seconds=0.0, load_seconds=0.0,
                 decode_seconds=0.0)
    if not paths:
        return
    start = time.perf_counter()
    waited_from = start
    model_seconds, load_seconds = model.seconds, model.load_seconds
    for message in decode_pool.decode_stream(paths, options, workers):
        stats["wait_seconds"] += time.perf_counter() - waited_from
        i = message.file
        if message.kind == "segment":
            handler.add_segment(states[i], message.segment)
            if on_segment:
                on_segment(i, message.segment)
        else:
            ready[i] = (handler.finish(paths[i], states[i])
                        if message.kind == "done" else {"video": paths[i], "error": message.error})
            stats["decode_seconds"] += message.decode_seconds
            states[i] = None
            if on_progress:
                on_progress(ready[i])
            while emitted in ready:
                yield ready.pop(emitted)
                emitted += 1
        waited_from = time.perf_counter()
    # Loading the model is neither waiting for decoding nor predicting.
    load_seconds = model.load_seconds - load_seconds
    stats["seconds"] = time.perf_counter() - start - load_seconds
    stats["model_seconds"] = model.seconds - model_seconds
    stats["load_seconds"] = load_seconds


def predict_videos(saved_model: str, paths: list[str], max_clips: int = 20,
                   segment_seconds: float = 0.0, workers: int = 1) -> list[dict]:
    """Predictions for `paths` (see `predict_files`), as a list."""
    model = VideoModel(resolve_saved_model(saved_model))
    options = decode_pool.DecodeOptions(max_clips=max_clips, segment_seconds=segment_seconds,
                                        frames=model.frames, bounds=model.bounds)
    return list(predict_files(model, paths, options, workers))
