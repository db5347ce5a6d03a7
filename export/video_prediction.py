"""Whole videos and their segments → predictions through a SavedModel's `predict_video`.

`predict_files` runs the model in this process on the clips that
`export.decode_pool` workers decode, and assembles each file's result (the
video's top 5, and each segment's when the videos are cut into segments) in the
order of the files given. It defines no flags: `sports1m-predict` and the
benchmarks both use it.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from export import decode_pool
from sports1m_tf import cli

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
    with open(os.path.join(version_dir, CLASS_NAMES_ASSET), encoding="utf-8") as f:
        return f.read().rstrip("\n").split("\n")


def model_frames(version_dir: str) -> tuple[int, ...] | None:
    """The clip frames a SavedModel reads (from its model_info.json); None when unknown."""
    try:
        with open(os.path.join(version_dir, MODEL_INFO_FILE), encoding="utf-8") as f:
            return tuple(int(i) for i in json.load(f)["frames"])
    except FileNotFoundError:  # exported before the file existed: send every frame
        return None


class VideoModel:
    """The SavedModel's `predict_video` signature, loaded at its first call and timed.

    Loading on first use lets the decoding processes start while TensorFlow
    loads, and a run where every file fails never loads it.
    """

    def __init__(self, version_dir: str):
        self.version_dir = version_dir
        self.class_names = model_class_names(version_dir)
        self.frames = model_frames(version_dir)
        self._predict = None
        self.seconds = 0.0       # predicting, load excluded
        self.load_seconds = 0.0

    def _load(self):
        start = time.perf_counter()
        import tensorflow as tf
        self._constant = tf.constant
        self._predict = tf.saved_model.load(self.version_dir).signatures["predict_video"]
        self.load_seconds = time.perf_counter() - start

    def __call__(self, clips: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """(probabilities [C], top-k dicts) of one video's (or segment's) clips."""
        if self._predict is None:
            self._load()
        start = time.perf_counter()
        out = self._predict(clips=self._constant(clips))
        probs = out["probabilities"].numpy()[0]
        ids, names, scores = (out[k].numpy()[0] for k in ("top_k_ids", "top_k_names",
                                                          "top_k_scores"))
        self.seconds += time.perf_counter() - start
        return probs, [{"id": int(i), "name": n.decode("utf-8"), "probability": float(s)}
                       for i, n, s in zip(ids, names, scores)]

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[dict]:
        """The top-k dicts of a probability vector (best first; ties by lower id)."""
        ids = np.argsort(-probs, kind="stable")[:k]
        return [{"id": int(i), "name": self.class_names[i], "probability": float(probs[i])}
                for i in ids]



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


def _add_segment(state: _FileState, segment, model: VideoModel, segmented: bool) -> None:
    n = len(segment.clips)
    top_k: list[dict] = []
    if n:
        probs, top_k = model(segment.clips)
        # Weighted by clips: the mean over every view of every clip of the video.
        state.prob_sum = probs * n if state.prob_sum is None else state.prob_sum + probs * n
        state.clips += n
        state.top_k = top_k
    if segmented:
        state.segments.append(_segment_entry(segment, top_k))


def _finish(path: str, state: _FileState, model: VideoModel, segmented: bool) -> dict:
    if state.clips == 0:
        return {"video": path, "error": "too short: no segment holds a whole clip of 16 frames"}
    top_k = model.top_k(state.prob_sum / state.clips) if segmented else state.top_k
    return {"video": path, "clips": state.clips, "top_k": top_k, "segments": state.segments}


def predict_files(model: VideoModel, paths: Sequence[str], options: decode_pool.DecodeOptions,
                  workers: int = 1, on_progress: Callable[[dict], None] | None = None,
                  stats: dict | None = None,
                  on_segment: Callable[[int, object], None] | None = None) -> Iterable[dict]:
    """Results of every file, in the order of `paths`, as soon as each is known.

    Args:
      model: the `VideoModel`.
      paths: the video files.
      options: how each is cut (whole video or segments).
      on_progress: called with each result as its file completes (any order).
      on_segment: called with (index in `paths`, `video_input.Segment`) once each
        segment's clips are predicted: progress inside a long video.
      stats: a dict filled at the end with `seconds`, `wait_seconds` (the model
        waiting for decoding), `model_seconds` and `decode_seconds` (summed over
        the workers), and `load_seconds` (loading the model at the first call, left
        out of `seconds`).

    Yields:
      One dict per path: `video`, `clips`, `top_k` (list of `{id, name,
      probability}`, best first), `segments` (`start_seconds`, `end_seconds`,
      `clips`, `top_k` each; empty without segments); or `video` and `error`.
    """
    segmented = options.segment_seconds > 0
    states = [_FileState() for _ in paths]
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
            _add_segment(states[i], message.segment, model, segmented)
            if on_segment:
                on_segment(i, message.segment)
        else:
            ready[i] = (_finish(paths[i], states[i], model, segmented)
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
                                        frames=model.frames)
    return list(predict_files(model, paths, options, workers))
