"""Predicting videos: models in, one averaged prediction per video out.

Here the evaluation loads one or several models (`load_members`), reads each
sampled clip of every video in its views (`sports1m_tf.data.eval_dataset`: the
centre crop, its flip, the top-left crop, the flipped bottom-right crop), runs
every model over them under a distribution strategy (`score_videos`) and
averages the softmax outputs of every view of every clip into the video's
prediction (`VideoAccumulator`; docs/design.md, "Evaluation").

The evaluation batches arrive in reading order; a video's clips may sit in
several shards (and so arrive interleaved with other videos, or at both ends of
the pass), and under a distribution strategy a clip's views may even be split
between replicas. So the grouping never assumes adjacency: each row is added to
its video's running sum, found through a dict `media id → row`, and the mean is
taken at the end (sum / count; with whole clips this equals the mean over views
followed by a mean over clips, because every clip then carries the same number
of views).

Memory: one float32 running sum per video and model, `videos × models × C × 4`
bytes (Sports-1M test: 200,000 × 487 × 4 B ≈ 0.39 GB per model), plus a
multi-hot label row per video (× C bytes). The per-view outputs themselves
(20 clips × 4 views = 80 rows per video) are never kept. Nothing smaller is
possible for the exact paper metrics: a class's average precision ranks every
video by that class's score, so the video × class matrix is needed at the end
anyway. float32 sums of at most a few hundred probabilities lose < 1e-5.

TensorFlow is imported inside the functions that run models: the sports1m-eval
command imports this module before TensorFlow may load (see `sports1m_tf.cli`).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Sequence

import numpy as np
from absl import logging

from sports1m_tf import metrics, run_folder

# Media ids travel to the accelerators as fixed-length bytes: string tensors
# cannot be copied to a GPU by a distributed dataset (tensorflow#35356).
MAX_MEDIA_ID_BYTES = 256


@dataclasses.dataclass
class VideoPredictions:
    """The averaged predictions of every video, in first-seen order.

    Attributes:
      media_ids: list of V str.
      probs: float32 `[V, *trailing]`, e.g. `[V, C]` or `[V, models, C]`.
      labels: bool `[V, C]` multi-hot (the union over the video's clips).
      rows: int64 `[V]`, the number of view rows averaged into each video.
    """
    media_ids: list[str]
    probs: np.ndarray
    labels: np.ndarray
    rows: np.ndarray


class VideoAccumulator:
    """Running per-video sums of per-view outputs (see the module docstring).

    Example:
      >>> acc = VideoAccumulator(num_classes=3)
      >>> acc.add(["a", "b", "a"], np.eye(3, dtype=np.float32), np.eye(3, dtype=bool))  # new videos
      2
      >>> acc.result().probs      # a: mean of rows 0 and 2
      array([[0.5, 0. , 0.5],
             [0. , 1. , 0. ]], dtype=float32)
    """

    def __init__(self, num_classes: int, trailing_shape: Sequence[int] | None = None):
        """Args:
          num_classes: int. C, the width of the label rows.
          trailing_shape: shape of one row of outputs; defaults to `(C,)`.
        """
        self.num_classes = num_classes
        self.trailing_shape = tuple(trailing_shape or (num_classes,))
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._sums = np.zeros((16, *self.trailing_shape), np.float32)
        self._labels = np.zeros((16, num_classes), bool)
        self._rows = np.zeros(16, np.int64)
        self.label_conflicts = 0  # videos whose clips disagreed on their labels

    def __len__(self) -> int:
        return len(self._ids)

    def _grow(self, needed: int) -> None:
        # Doubling keeps the amortised cost of a new video O(1).
        capacity = self._sums.shape[0]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity)
        for name in ("_sums", "_labels", "_rows"):
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), old.dtype)
            new[:old.shape[0]] = old
            setattr(self, name, new)

    def _video_rows(self, media_ids: Sequence[str]) -> np.ndarray:
        rows = np.empty(len(media_ids), np.int64)
        for i, media_id in enumerate(media_ids):
            row = self._index.get(media_id)
            if row is None:
                row = self._index[media_id] = len(self._ids)
                self._ids.append(media_id)
            rows[i] = row
        self._grow(len(self._ids))
        return rows

    def add(self, media_ids: Sequence[str], outputs: np.ndarray, labels: np.ndarray) -> int:
        """Adds a batch of view rows.

        Args:
          media_ids: B str. The video of each row.
          outputs: `[B, *trailing_shape]` softmax outputs.
          labels: `[B, C]` multi-hot (bool or 0/1 floats).

        Returns:
          The number of videos seen for the first time in this batch.
        """
        outputs = np.asarray(outputs, np.float32)
        labels = np.asarray(labels).astype(bool)
        if outputs.shape[1:] != self.trailing_shape or outputs.shape[0] != len(media_ids):
            raise ValueError(f"outputs of shape {outputs.shape} for {len(media_ids)} rows of "
                             f"shape {self.trailing_shape}")
        before = len(self._ids)
        rows = self._video_rows(media_ids)
        new = rows >= before
        # A video's clips should agree on its labels; count the ones that do not.
        seen = rows[~new]
        conflict = (self._labels[seen] != labels[~new]).any(axis=1)
        self.label_conflicts += len(np.unique(seen[conflict]))
        np.add.at(self._sums, rows, outputs)
        np.add.at(self._rows, rows, 1)
        np.logical_or.at(self._labels, rows, labels)
        return len(self._ids) - before

    def result(self) -> VideoPredictions:
        """The mean of each video's rows (float32), its labels and row counts."""
        n = len(self._ids)
        count = self._rows[:n].reshape((n,) + (1,) * len(self.trailing_shape))
        return VideoPredictions(media_ids=list(self._ids),
                                probs=(self._sums[:n] / np.maximum(count, 1)).astype(np.float32),
                                labels=self._labels[:n].copy(), rows=self._rows[:n].copy())


@dataclasses.dataclass
class Member:
    """One model of the evaluated ensemble and where it came from.

    Attributes:
      model: keras.Model. uint8 clips → softmax `[batch, C]`.
      identity: dict. `source` (model_dir / checkpoint / keras_model / object),
        `path`, `step` (int or None), `model_dir` (a training run, or None) and
        `describe` (`sports1m_tf.models.describe(model)`).
    """
    model: object
    identity: dict


def _checkpoint_step(prefix: str | None) -> int | None:
    match = re.search(r"ckpt-(\d+)$", prefix or "")
    return int(match.group(1)) if match else None


def load_members(model_dirs: Sequence[str] = (), checkpoints: Sequence[str] = (),
                 keras_models: Sequence[str] = ()) -> list[Member]:
    """Loads every model named on the command line (call inside a strategy's scope).

    Args:
      model_dirs: training runs (`restore_model(dir)`: latest checkpoint, else model.keras).
      checkpoints: checkpoint prefixes `RUN_DIR/ckpt-STEP` (`restore_model(RUN_DIR, STEP)`).
      keras_models: `.keras` files.

    Returns:
      One `Member` per model, in that order.
    """
    import keras
    import tensorflow as tf

    import sports1m_tf.models as models  # registers the custom layers for load_model

    members = []
    for model_dir in model_dirs:
        model = run_folder.restore_model(model_dir)
        step = _checkpoint_step(tf.train.latest_checkpoint(model_dir))
        members.append(Member(model, dict(source="model_dir", path=model_dir, step=step,
                                          model_dir=model_dir)))
    for prefix in checkpoints:
        step = _checkpoint_step(prefix)
        if step is None:
            raise ValueError(f"--checkpoint {prefix!r}: expected a prefix RUN_DIR/ckpt-STEP")
        run_dir = os.path.dirname(prefix) or "."
        model = run_folder.restore_model(run_dir, step=step)
        members.append(Member(model, dict(source="checkpoint", path=prefix, step=step,
                                          model_dir=run_dir)))
    for path in keras_models:
        if not os.path.exists(path):
            raise FileNotFoundError(f"--keras_model {path}: no such file")
        model = keras.saving.load_model(path, compile=False)
        # A training run's final model.keras still belongs to that run (TensorBoard).
        run_dir = run_folder.run_folder_of(path)
        step = _checkpoint_step(tf.train.latest_checkpoint(run_dir)) if run_dir else None
        if run_dir and os.path.basename(path) == run_folder.BEST_MODEL_FILE:
            step = (run_folder.load_best_info(run_dir) or {}).get("step")
        members.append(Member(model, dict(source="keras_model", path=path, step=step,
                                          model_dir=run_dir)))
    for member in members:
        member.identity["describe"] = models.describe(member.model)
    return members


def as_member(item) -> Member:
    if isinstance(item, Member):
        return item
    import sports1m_tf.models as models
    return Member(item, dict(source="object", path=None, step=None, model_dir=None,
                             describe=models.describe(item)))


def resolve_classes(members: Sequence[Member], files: Sequence[str]) -> list[str]:
    """Class names for the report; checks every model has that many classes.

    From the records' dataset.json, else the first training run's
    run config, else `class_0`, `class_1`, ...
    """
    sizes = {m.identity["describe"]["num_classes"] for m in members}
    if len(sizes) > 1:
        raise ValueError("the models have different numbers of classes: " + ", ".join(
            f"{m.identity['path']}: {m.identity['describe']['num_classes']}" for m in members))
    num_classes = sizes.pop()
    from sports1m_tf.data import dataset_info, input_checks
    info, info_path = dataset_info.dataset_info(files)
    if info is not None:
        if len(info["classes"]) != num_classes:
            bad = members[0].identity["path"] or members[0].identity["describe"]["name"]
            raise ValueError(f"{bad} scores {num_classes} classes but {info_path} lists "
                             f"{len(info['classes'])}: a checkpoint of another dataset?")
        for member in members:  # the same count is not enough: the same names, same order
            input_checks.check_class_names(
                run_folder.run_class_names(member.identity.get("model_dir")), info["classes"],
                model_source=member.identity.get("model_dir") or "", data_source=info_path)
        return list(info["classes"])
    for member in members:
        names = run_folder.run_class_names(member.identity.get("model_dir"))
        if names and len(names) == num_classes:
            return names
    logging.warning("no dataset.json beside the records and no class names in a run "
                    "config: classes are reported as class_0..class_%d", num_classes - 1)
    return [f"class_{i}" for i in range(num_classes)]


def _input_specs(members: Sequence[Member]) -> tuple[list[dict], list[int]]:
    """Distinct (frames, crop size) inputs and, per member, which one it reads.

    Models that read the same frames at the same size share one decoded pipeline.
    """
    specs, which = [], []
    for member in members:
        d = member.identity["describe"]
        spec = dict(model=d["name"], frame_indices=tuple(d["frames"]), input_size=d["input_size"])
        key = (spec["frame_indices"], spec["input_size"])
        keys = [(s["frame_indices"], s["input_size"]) for s in specs]
        if key not in keys:
            specs.append(spec)
            keys.append(key)
        which.append(keys.index(key))
    return specs, which


def _make_dataset(files, specs, *, batch_size, num_classes, clips_per_video, views):
    """One dataset of numeric tensors: every input group's frames plus the clip bookkeeping."""
    import tensorflow as tf

    from sports1m_tf.data import eval_dataset

    datasets = [eval_dataset(files, model=s["model"], frame_indices=list(s["frame_indices"]),
                             input_size=s["input_size"], batch_size=batch_size,
                             num_classes=num_classes, clips_per_video=clips_per_video,
                             views=views) for s in specs]
    counters = [d.error_counter for d in datasets]

    def merge(*groups):
        first = groups[0]
        # Pipelines of different frame sets read the same records in the same
        # order; a record one of them cannot decode would shift the others.
        checks = [tf.debugging.assert_less_equal(
            tf.strings.length(first["media_id"]), MAX_MEDIA_ID_BYTES,
            message=f"a media id is longer than {MAX_MEDIA_ID_BYTES} bytes")]
        for g in groups[1:]:
            checks.append(tf.debugging.assert_equal(
                tf.strings.join([g["media_id"], tf.strings.as_string(g["clip_index"])], "#"),
                tf.strings.join([first["media_id"], tf.strings.as_string(first["clip_index"])],
                                "#"),
                message="the input pipelines of the ensemble's models fell out of step "
                        "(a record only some models could read?)"))
        with tf.control_dependencies(checks):
            media = tf.io.decode_raw(first["media_id"], tf.uint8, fixed_length=MAX_MEDIA_ID_BYTES)
        out = {f"frames_{i}": g["frames"] for i, g in enumerate(groups)}
        out.update(media=media, labels=first["labels"], clip_index=first["clip_index"],
                   view_index=first["view_index"])
        return out

    ds = tf.data.Dataset.zip(tuple(datasets)).map(merge).prefetch(tf.data.AUTOTUNE)
    return ds, counters


def _stream(members, which, dataset, strategy, want_frames):
    """Yields host NumPy batches: probs `[b, M, C]`, media ids, labels, clip/view index, frames."""
    import tensorflow as tf

    models = [m.model for m in members]

    def replica_step(batch, with_frames):
        probs = tf.stack([model(batch[f"frames_{g}"], training=False)
                          for model, g in zip(models, which)], axis=1)
        out = {k: batch[k] for k in ("media", "labels", "clip_index", "view_index")}
        out["probs"] = tf.cast(probs, tf.float32)
        if with_frames:
            frames = batch["frames_0"]
            out["frame"] = frames[:, frames.shape[1] // 2]  # the middle frame of the clip
        return out

    @tf.function(reduce_retracing=True)
    def distributed_step(batch, with_frames):
        return strategy.run(replica_step, args=(batch, with_frames))

    for batch in strategy.experimental_distribute_dataset(dataset):
        out = distributed_step(batch, bool(want_frames()))
        # Per-replica results, concatenated in replica order: each row keeps its
        # own media id, so it does not matter how the batch was split.
        local = {k: [t.numpy() for t in strategy.experimental_local_results(v)]
                 for k, v in out.items()}
        host = {k: np.concatenate(v, axis=0) for k, v in local.items()}
        host["media_id"] = [bytes(row).rstrip(b"\0").decode("utf-8") for row in host.pop("media")]
        yield host


@dataclasses.dataclass
class _ClipHits:
    """Centre-view clip Hit@1, counted per member and for the ensemble."""
    hits: np.ndarray  # [M + 1]
    clips: int = 0

    def add(self, probs: np.ndarray, labels: np.ndarray, view_index: np.ndarray) -> None:
        centre = view_index == 0
        if not centre.any():
            return
        p, y = probs[centre], labels[centre].astype(bool)
        for m in range(p.shape[1]):
            self.hits[m] += metrics.hits_at_k(p[:, m], y, 1).sum()
        self.hits[-1] += metrics.hits_at_k(p.mean(axis=1), y, 1).sum()
        self.clips += int(centre.sum())


def score_videos(members: Sequence, eval_files, *, num_classes: int, clips_per_video: int = 20,
                   views: int = 4, batch_size: int = 32, strategy=None, montage_videos: int = 12,
                   total_videos: int | None = None, show_progress: bool = True) -> dict:
    """Runs every model over the records and groups the outputs by video.

    Args:
      members: `Member`s or keras models (uint8 clips → softmax `[b, C]`).
      clips_per_video, views, batch_size: as `sports1m_tf.data.eval_dataset`
        (batch_size is global: split between replicas).
      strategy: a `tf.distribute.Strategy` (models loaded in its scope), or None.
      montage_videos: Frames kept for the first this many videos.
      total_videos: For the progress bar.

    Returns:
      dict: `videos` (`VideoPredictions`, probs `[V, M, C]`), `clip_hits` float
      `[M + 1]` (members, then the ensemble), `clips` int, `rows` int, `frames`
      {media_id: uint8 `[S, S, 3]`}, `skipped_records` int.
    """
    import tensorflow as tf
    from tqdm import tqdm

    from sports1m_tf.data import errors, list_files

    members = [as_member(m) for m in members]
    strategy = strategy or tf.distribute.get_strategy()
    files = list_files(eval_files)
    specs, which = _input_specs(members)
    dataset, counters = _make_dataset(files, specs, batch_size=batch_size,
                                      num_classes=num_classes, clips_per_video=clips_per_video,
                                      views=views)
    videos = VideoAccumulator(num_classes, (len(members), num_classes))
    clip_hits = _ClipHits(np.zeros(len(members) + 1))
    frames: dict[str, np.ndarray] = {}
    rows = 0
    bar = tqdm(total=total_videos, unit="video", desc="evaluating", disable=not show_progress,
               mininterval=2.0)
    with errors.end_if_files_change(counters):
        for batch in _stream(members, which, dataset, strategy,
                             want_frames=lambda: len(frames) < montage_videos):
            bar.update(videos.add(batch["media_id"], batch["probs"], batch["labels"]))
            clip_hits.add(batch["probs"], batch["labels"], batch["view_index"])
            rows += len(batch["media_id"])
            if "frame" in batch:
                first = (batch["view_index"] == 0) & (batch["clip_index"] == 0)
                for i in np.flatnonzero(first):
                    if len(frames) < montage_videos:
                        frames.setdefault(batch["media_id"][i], batch["frame"][i])
    bar.close()
    skipped = sum(c.total() for c in counters)
    for c in counters:
        c.look_now()
        c.log_summary()
        if c.files_gone_or_changed():  # the scores would be of records that are no more
            raise c.budget_error()
    if len(videos) == 0:
        raise ValueError(f"no clip of {eval_files!r} could be evaluated: "
                         f"{counters[0].describe()}")
    if videos.label_conflicts:
        logging.warning("%d videos have clips with different labels: their labels were merged",
                        videos.label_conflicts)
    return dict(videos=videos.result(), clip_hits=clip_hits.hits / clip_hits.clips,
                clips=clip_hits.clips, rows=rows, frames=frames, skipped_records=skipped,
                label_conflicts=videos.label_conflicts, files=files)
