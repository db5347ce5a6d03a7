"""sports1m-eval: clip and video Hit@k, per-class AP, confusions and model comparison (paper §4.1).

Each sampled clip of a video (up to --clips_per_video) is seen in --views crops
and flips; the softmax outputs of all views of all clips are averaged into the
video's prediction (SPEC §3, §5). Several models (repeat --model_dir,
--checkpoint or --keras_model) are evaluated as one ensemble, the paper's
"CNN Average": their outputs are averaged clip by clip, hence video by video.

Usage:
  # one training run (its latest checkpoint); scalars also go to runs/slow/eval/
  sports1m-eval --model_dir=runs/slow --eval_files='records/test-*.tfrecord' \
      --output_dir=reports/slow
  # CNN Average of four runs
  sports1m-eval --model_dir=runs/single --model_dir=runs/early --model_dir=runs/late \
      --model_dir=runs/slow --eval_files='records/test-*' --output_dir=reports/average
  # a saved model file, and the per-class ΔAP against another report (paper Table 2)
  sports1m-eval --keras_model=runs/slow/model.keras --eval_files='records/test-*' \
      --output_dir=reports/slow_vs_single --compare_with=reports/single/metrics.json
  # all local GPUs (or, to try the distributed path without one, --cpu_devices=2)
  sports1m-eval --model_dir=runs/slow --eval_files=... --output_dir=... --strategy=mirrored

Writes to --output_dir: metrics.json, predictions.csv, video_probs.npz,
confused_pairs.csv, confusion_matrix.png, predictions_montage.png (and
delta_ap.csv with --compare_with).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from typing import Sequence

import numpy as np
from absl import app, flags, logging

from sports1m_tf import cli

from sports1m_tf import cpu_kernels, figures, metrics
from sports1m_tf.video_predictions import VideoAccumulator, VideoPredictions
from tfrecord_tools import schema, summary

# Media ids travel to the accelerators as fixed-length bytes: string tensors
# cannot be copied to a GPU by a distributed dataset (tensorflow#35356).
MAX_MEDIA_ID_BYTES = 256
TOP_K = 5


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
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
    from sports1m_tf import checkpoints as run_checkpoints

    members = []
    for model_dir in model_dirs:
        model = run_checkpoints.restore_model(model_dir)
        step = _checkpoint_step(tf.train.latest_checkpoint(model_dir))
        members.append(Member(model, dict(source="model_dir", path=model_dir, step=step,
                                          model_dir=model_dir)))
    for prefix in checkpoints:
        step = _checkpoint_step(prefix)
        if step is None:
            raise ValueError(f"--checkpoint {prefix!r}: expected a prefix RUN_DIR/ckpt-STEP")
        run_dir = os.path.dirname(prefix) or "."
        model = run_checkpoints.restore_model(run_dir, step=step)
        members.append(Member(model, dict(source="checkpoint", path=prefix, step=step,
                                          model_dir=run_dir)))
    for path in keras_models:
        if not os.path.exists(path):
            raise FileNotFoundError(f"--keras_model {path}: no such file")
        model = keras.saving.load_model(path, compile=False)
        # A training run's final model.keras still belongs to that run (TensorBoard).
        folder = os.path.dirname(os.path.abspath(path))
        run_dir = folder if os.path.exists(os.path.join(folder, "run_config.json")) else None
        step = _checkpoint_step(tf.train.latest_checkpoint(run_dir)) if run_dir else None
        if run_dir and os.path.basename(path) == run_checkpoints.BEST_MODEL_FILE:
            step = (run_checkpoints.load_best_info(run_dir) or {}).get("step")
        members.append(Member(model, dict(source="keras_model", path=path, step=step,
                                          model_dir=run_dir)))
    for member in members:
        member.identity["describe"] = models.describe(member.model)
    return members


def _as_member(item) -> Member:
    if isinstance(item, Member):
        return item
    import sports1m_tf.models as models
    return Member(item, dict(source="object", path=None, step=None, model_dir=None,
                             describe=models.describe(item)))


# ---------------------------------------------------------------------------
# Records: classes, labels, and clear errors before any model runs
# ---------------------------------------------------------------------------
def check_labels(files: Sequence[str], num_classes: int) -> None:
    """Checks the first record of every shard for labels the models can score.

    Raises:
      ValueError: naming the shard, when its first record has no
        `clip/label/index` or a label >= `num_classes`.
    """
    import tensorflow as tf

    from sports1m_tf.data import compression_of

    for path in files:
        records = tf.data.TFRecordDataset(path, compression_type=compression_of(path)).take(1)
        for record in records:
            context, _ = tf.io.parse_single_sequence_example(
                record, context_features={schema.LABEL_INDEX: tf.io.VarLenFeature(tf.int64)})
            labels = context[schema.LABEL_INDEX].values.numpy()
            if labels.size == 0:
                raise ValueError(f"{path}: its records carry no labels ({schema.LABEL_INDEX}); "
                                 "evaluation needs labelled clips")
            if labels.max() >= num_classes:
                raise ValueError(f"{path}: label {labels.max()} but the model has "
                                 f"{num_classes} classes: records of another dataset?")


def resolve_classes(members: Sequence[Member], files: Sequence[str]) -> list[str]:
    """Class names for the report; checks every model has that many classes.

    From the records' dataset.json, else the first training run's
    run_config.json, else `class_0`, `class_1`, ...
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
                input_checks.run_class_names(member.identity.get("model_dir")), info["classes"],
                model_source=member.identity.get("model_dir") or "", data_source=info_path)
        return list(info["classes"])
    for member in members:
        config_path = os.path.join(member.identity.get("model_dir") or "", "run_config.json")
        if member.identity.get("model_dir") and os.path.exists(config_path):
            with open(config_path) as f:
                names = json.load(f).get("class_names")
            if names and len(names) == num_classes:
                return list(names)
    logging.warning("no dataset.json beside the records and no class names in a run "
                    "config: classes are reported as class_0..class_%d", num_classes - 1)
    return [f"class_{i}" for i in range(num_classes)]


# ---------------------------------------------------------------------------
# The pass over the records
# ---------------------------------------------------------------------------
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


def predict_videos(members: Sequence, eval_files, *, num_classes: int, clips_per_video: int = 20,
                   views: int = 4, batch_size: int = 32, strategy=None, montage_videos: int = 12,
                   total_videos: int | None = None, show_progress: bool = True) -> dict:
    """Runs every model over the records and groups the outputs by video.

    Args:
      members: `Member`s or keras models (uint8 clips → softmax `[b, C]`).
      eval_files: str or list of str. Record globs.
      num_classes: int. C.
      clips_per_video, views, batch_size: as `sports1m_tf.data.eval_dataset`
        (batch_size is global: split between replicas).
      strategy: a `tf.distribute.Strategy` (models loaded in its scope), or None.
      montage_videos: int. Frames kept for the first this many videos.
      total_videos: int. For the progress bar.
      show_progress: bool.

    Returns:
      dict: `videos` (`VideoPredictions`, probs `[V, M, C]`), `clip_hits` float
      `[M + 1]` (members, then the ensemble), `clips` int, `rows` int, `frames`
      {media_id: uint8 `[S, S, 3]`}, `skipped_records` int.
    """
    import tensorflow as tf
    from tqdm import tqdm

    from sports1m_tf.data import list_files

    members = [_as_member(m) for m in members]
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
        c.log_summary()
    if len(videos) == 0:
        raise ValueError(f"no clip of {eval_files!r} could be evaluated ({skipped} records "
                         "skipped as unreadable or unlabelled)")
    if videos.label_conflicts:
        logging.warning("%d videos have clips with different labels: their labels were merged",
                        videos.label_conflicts)
    return dict(videos=videos.result(), clip_hits=clip_hits.hits / clip_hits.clips,
                clips=clip_hits.clips, rows=rows, frames=frames, skipped_records=skipped,
                label_conflicts=videos.label_conflicts, files=files)


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------
def _none_if_nan(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def video_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Video Hit@1/@5, per-class AP and mAP of video predictions `[V, C]`."""
    ap = metrics.average_precision_per_class(probs, labels)
    return {"video_hit_at_1": metrics.hit_at_k(probs, labels, 1),
            "video_hit_at_5": metrics.hit_at_k(probs, labels, min(TOP_K, probs.shape[1])),
            "mAP": metrics.mean_average_precision(ap_per_class=ap), "ap": ap}


def write_predictions_csv(path: str, videos: VideoPredictions, probs: np.ndarray,
                          class_names: Sequence[str]) -> None:
    """One row per video: labels, Hit@1/@5, the top-5 classes and probabilities."""
    k = min(TOP_K, probs.shape[1])
    top, top_p = metrics.top_k(probs, k)
    hit1 = metrics.hits_at_k(probs, videos.labels, 1)
    hit5 = metrics.hits_at_k(probs, videos.labels, k)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["media_id", "labels", "hit_at_1", f"hit_at_{k}", "view_rows"]
                   + [f"{name}{r + 1}" for r in range(k) for name in ("top", "prob")])
        for v, media_id in enumerate(videos.media_ids):
            truth = ";".join(class_names[c] for c in np.flatnonzero(videos.labels[v]))
            tops = [x for c, p in zip(top[v], top_p[v]) for x in (class_names[c], f"{p:.6f}")]
            w.writerow([media_id, truth, int(hit1[v]), int(hit5[v]), int(videos.rows[v])] + tops)


def write_video_probs(path: str, videos: VideoPredictions, class_names: Sequence[str]) -> None:
    """Every video's full prediction, for offline ensembles and analysis.

    Arrays: `media_ids` str [V], `member_probs` float32 [V, M, C] (the ensemble
    is their mean over M), `labels` bool [V, C], `view_rows` int [V],
    `class_names` str [C]. Size ≈ V × M × C × 4 bytes.
    """
    np.savez(path, media_ids=np.asarray(videos.media_ids), member_probs=videos.probs,
             labels=videos.labels, view_rows=videos.rows, class_names=np.asarray(class_names))


def write_confused_pairs_csv(path: str, counts: np.ndarray, class_names: Sequence[str],
                             top_n: int = 50) -> list[dict]:
    """The most confused class pairs (both directions summed); returns them as dicts."""
    pairs = [dict(class_a=class_names[a], class_b=class_names[b], count=n,
                  a_predicted_as_b=int(counts[a, b]), b_predicted_as_a=int(counts[b, a]))
             for a, b, n in metrics.most_confused_pairs(counts, top_n)]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["class_a", "class_b", "count", "a_predicted_as_b",
                               "b_predicted_as_a"])
        w.writeheader()
        w.writerows(pairs)
    return pairs


def compare_reports(this: dict, other_path: str, output_dir: str, top_n: int = 10) -> dict:
    """Per-class ΔAP = this AP − other AP (paper Table 2): delta_ap.csv and the extremes.

    Args:
      this: the metrics dict of this evaluation.
      other_path: another report's metrics.json (or the folder holding it).
      output_dir: where delta_ap.csv goes.
      top_n: classes listed for each side.

    Returns:
      dict with `other`, `other_mAP`, `delta_mAP`, `this_better` and
      `other_better` (lists of {class, ap, other_ap, delta_ap}, largest gain first).
    """
    if os.path.isdir(other_path):
        other_path = os.path.join(other_path, "metrics.json")
    if not os.path.exists(other_path):
        raise FileNotFoundError(f"--compare_with {other_path}: no such report")
    with open(other_path) as f:
        other = json.load(f)
    mine, theirs = this["per_class_ap"], other.get("per_class_ap")
    if not isinstance(theirs, dict) or set(theirs) != set(mine):
        raise ValueError(f"{other_path} does not report AP for the same classes as this "
                         "evaluation: compare reports of the same dataset")
    rows = []
    for index, name in enumerate(mine):
        a, b = mine[name], theirs[name]
        delta = None if a is None or b is None else a - b
        rows.append(dict(class_index=index, **{"class": name}, ap=a, other_ap=b, delta_ap=delta))
    rows.sort(key=lambda r: (r["delta_ap"] is None, -(r["delta_ap"] or 0.0)))
    with open(os.path.join(output_dir, "delta_ap.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["class_index", "class", "ap", "other_ap", "delta_ap"])
        w.writeheader()
        w.writerows(rows)
    defined = [r for r in rows if r["delta_ap"] is not None]
    short = lambda r: {k: r[k] for k in ("class", "ap", "other_ap", "delta_ap")}
    result = dict(other=other_path, other_mAP=other.get("mAP"),
                  delta_mAP=None if this["mAP"] is None or other.get("mAP") is None
                  else this["mAP"] - other["mAP"],
                  this_better=[short(r) for r in defined[:top_n] if r["delta_ap"] > 0],
                  other_better=[short(r) for r in defined[::-1][:top_n] if r["delta_ap"] < 0])
    for side in ("this_better", "other_better"):
        logging.info("%s: %s", side, ", ".join(f"{r['class']} ({r['delta_ap']:+.3f})"
                                               for r in result[side]))
    return result


def _write_tensorboard(member_reports: Sequence[dict]) -> None:
    """Each training run's own scalars to RUN_DIR/eval/ at its checkpoint's step."""
    import tensorflow as tf

    for report in member_reports:
        run_dir = report["identity"].get("model_dir")
        if not run_dir or not os.path.exists(os.path.join(run_dir, "run_config.json")):
            continue
        writer = tf.summary.create_file_writer(os.path.join(run_dir, "eval"))
        with writer.as_default(step=report["identity"].get("step") or 0):
            for key in ("clip_hit_at_1", "video_hit_at_1", "video_hit_at_5", "mAP"):
                if report[key] is not None:
                    tf.summary.scalar(key, report[key])
        writer.close()


def evaluate(members: Sequence, eval_files, *, output_dir: str, clips_per_video: int = 20,
             views: int = 4, batch_size: int = 32, strategy=None,
             compare_with: str | None = None, class_names: Sequence[str] | None = None,
             montage_videos: int = 12, confusion_classes: int = 30,
             write_tensorboard: bool = True, show_progress: bool = True) -> dict:
    """Evaluates one model or an ensemble on clip records and writes the report.

    Args:
      members: `Member`s (from `load_members`) or keras models; several = an
        ensemble whose per-clip outputs are averaged.
      eval_files: str or list of str. Record globs or paths.
      output_dir: str. Where the report goes (created).
      clips_per_video: int. Clips per video (the first ones read). Defaults to 20.
      views: int. Crops/flips per clip (1..4). Defaults to 4.
      batch_size: int. Global batch of views.
      strategy: `tf.distribute.Strategy` or None (models must be built in its scope).
      compare_with: str. Another report's metrics.json → delta_ap.csv.
      class_names: C names; default from dataset.json / run_config.json.
      montage_videos: int. Videos in the prediction montage.
      confusion_classes: int. Classes in the confusion-matrix figure.
      write_tensorboard: bool. Scalars to RUN_DIR/eval/ for members from a training run.
      show_progress: bool. tqdm bar over videos.

    Returns:
      The metrics dict written to `output_dir/metrics.json`.
    """
    from sports1m_tf.data import list_files

    members = [_as_member(m) for m in members]
    if not members:
        raise ValueError("no model to evaluate: give --model_dir, --checkpoint or --keras_model")
    files = list_files(eval_files)
    from sports1m_tf.data import input_checks
    for size in sorted({m.identity["describe"]["input_size"] for m in members}):
        input_checks.check_crop_fits(files, size)
    names = list(class_names) if class_names is not None else resolve_classes(members, files)
    num_classes = len(names)
    if any(m.identity["describe"]["num_classes"] != num_classes for m in members):
        raise ValueError(f"{num_classes} class names for models of "
                         f"{members[0].identity['describe']['num_classes']} classes")
    check_labels(files, num_classes)
    os.makedirs(output_dir, exist_ok=True)
    from sports1m_tf.data import dataset_info
    info, _ = dataset_info.dataset_info(files)

    out = predict_videos(members, files, num_classes=num_classes,
                         clips_per_video=clips_per_video, views=views, batch_size=batch_size,
                         strategy=strategy, montage_videos=montage_videos,
                         total_videos=dataset_info.expected_videos(files, info), show_progress=show_progress)
    videos: VideoPredictions = out["videos"]
    # The ensemble's video prediction: the mean over models of their video means
    # (= the video mean of the clip-averaged outputs: every model saw the same rows).
    ensemble = videos.probs.mean(axis=1)
    overall = video_metrics(ensemble, videos.labels)
    member_reports = []
    for m, member in enumerate(members):
        report = video_metrics(videos.probs[:, m], videos.labels)
        member_reports.append(dict(identity=member.identity,
                                   clip_hit_at_1=float(out["clip_hits"][m]),
                                   video_hit_at_1=report["video_hit_at_1"],
                                   video_hit_at_5=report["video_hit_at_5"],
                                   mAP=_none_if_nan(report["mAP"])))
    counts = metrics.confusion_counts(ensemble, videos.labels)
    result = {
        "clip_hit_at_1": float(out["clip_hits"][-1]),
        "video_hit_at_1": overall["video_hit_at_1"],
        "video_hit_at_5": overall["video_hit_at_5"],
        "mAP": _none_if_nan(overall["mAP"]),
        "classes_with_positives": int((~np.isnan(overall["ap"])).sum()),
        "per_class_ap": {n: _none_if_nan(a) for n, a in zip(names, overall["ap"])},
        "videos": len(videos.media_ids),
        "clips": out["clips"],
        "view_rows": out["rows"],
        "skipped_records": out["skipped_records"],
        "label_conflicts": out["label_conflicts"],
        "num_classes": num_classes,
        "settings": dict(eval_files=eval_files if isinstance(eval_files, str) else list(eval_files),
                         num_files=len(files), clips_per_video=clips_per_video, views=views,
                         batch_size=batch_size,
                         strategy=type(strategy).__name__ if strategy else "default",
                         replicas=strategy.num_replicas_in_sync if strategy else 1),
        "models": [m.identity for m in members],
        "ensemble": len(members) > 1,
        "members": member_reports,
    }
    groups = metrics.ucf101_groups(names)
    if sum(len(v) for k, v in groups.items() if k != metrics.UCF101_REST_GROUP) >= 40:
        result["group_mAP"] = {k: _none_if_nan(v)
                               for k, v in metrics.group_map(overall["ap"], groups).items()}

    write_predictions_csv(os.path.join(output_dir, "predictions.csv"), videos, ensemble, names)
    write_video_probs(os.path.join(output_dir, "video_probs.npz"), videos, names)
    result["confused_pairs"] = write_confused_pairs_csv(
        os.path.join(output_dir, "confused_pairs.csv"), counts, names)[:10]
    figures.plot_confusion(counts, names, os.path.join(output_dir, "confusion_matrix.png"),
                           top_n=confusion_classes)
    if out["frames"]:
        shown = [i for i, media_id in enumerate(videos.media_ids) if media_id in out["frames"]]
        top, top_p = metrics.top_k(ensemble[shown], min(TOP_K, num_classes))
        figures.plot_prediction_montage(
            [out["frames"][videos.media_ids[i]] for i in shown],
            [list(np.flatnonzero(videos.labels[i])) for i in shown], top, top_p, names,
            os.path.join(output_dir, "predictions_montage.png"),
            titles=[videos.media_ids[i] for i in shown])
    if compare_with:
        result["comparison"] = compare_reports(result, compare_with, output_dir)
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1)
    if write_tensorboard:
        _write_tensorboard(member_reports)
    logging.info("%d videos, %d clips: clip Hit@1 %.4f, video Hit@1 %.4f, Hit@5 %.4f, "
                 "mAP %s → %s", result["videos"], result["clips"], result["clip_hit_at_1"],
                 result["video_hit_at_1"], result["video_hit_at_5"], result["mAP"], output_dir)
    return result


# ---------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
    """Declares the command's flags (at run time: other commands' modules, imported in
    the same process by tests, declare flags of the same names, e.g. --output_dir)."""
    flags.DEFINE_multi_string("model_dir", [], "Training run directory (repeat for an ensemble).")
    flags.DEFINE_multi_string("checkpoint", [], "Checkpoint prefix RUN_DIR/ckpt-STEP (repeatable).")
    flags.DEFINE_multi_string("keras_model", [], ".keras model file (repeatable).")
    flags.DEFINE_multi_string("eval_files", None, "Clip-record globs or paths.")
    flags.DEFINE_integer("clips_per_video", 20, "Clips per video (paper: 20).")
    flags.DEFINE_integer("views", 4, "Views per clip: centre, centre flipped, top-left, "
                         "bottom-right flipped (paper: 4).")
    flags.DEFINE_integer("batch_size", 32, "Views per batch, over all replicas.")
    flags.DEFINE_string("output_dir", None, "Report directory.")
    flags.DEFINE_string("compare_with", None, "Another report's metrics.json: per-class ΔAP.")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored"],
                      "default: one device; mirrored: all local GPUs (MirroredStrategy).")
    flags.DEFINE_integer("cpu_devices", 1, "With --strategy=mirrored and no GPU: split the CPU "
                         "into this many logical devices (exercises the distributed path).")
    flags.DEFINE_integer("montage_videos", 12, "Videos in predictions_montage.png.")
    flags.DEFINE_integer("confusion_classes", 30, "Classes in confusion_matrix.png.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv: Sequence[str]) -> None:
    del argv
    import tensorflow as tf

    for name in ("eval_files", "output_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    if not (FLAGS.model_dir or FLAGS.checkpoint or FLAGS.keras_model):
        raise app.UsageError("give at least one --model_dir, --checkpoint or --keras_model")
    strategy = None
    if FLAGS.strategy == "mirrored":
        devices = None
        if FLAGS.cpu_devices > 1 and not tf.config.list_physical_devices("GPU"):
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
            devices = [f"/cpu:{i}" for i in range(FLAGS.cpu_devices)]
        strategy = tf.distribute.MirroredStrategy(devices)
    with (strategy.scope() if strategy else tf.distribute.get_strategy().scope()):
        members = load_members(FLAGS.model_dir, FLAGS.checkpoint, FLAGS.keras_model)
    try:
        evaluate(members, FLAGS.eval_files, output_dir=FLAGS.output_dir,
                 clips_per_video=FLAGS.clips_per_video, views=FLAGS.views,
                 batch_size=FLAGS.batch_size, strategy=strategy,
                 compare_with=FLAGS.compare_with, montage_videos=FLAGS.montage_videos,
                 confusion_classes=FLAGS.confusion_classes, show_progress=FLAGS.progress)
    except ValueError as e:  # records or settings that do not fit the models
        raise cli.UserError(str(e)) from None


def run() -> None:
    define_flags()
    cli.entry(main)()


if __name__ == "__main__":
    run()
