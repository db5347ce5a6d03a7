"""Reporting an evaluation: metrics.json, the CSVs, the figures, ΔAP between reports.

Everything here works on the video predictions of
`sports1m_tf.evaluation.video_scores.score_videos`; the metrics themselves are in
`sports1m_tf.metrics` (docs/design.md, "Metrics"). Files written to the report
folder: metrics.json, predictions.csv, video_probs.npz, confused_pairs.csv,
confusion_matrix.png, predictions_montage.png (and delta_ap.csv when compared),
each written whole or not at all (`fileio.atomic_path`): a rerun never reads half a
report. Confusions are kept sparse (`metrics.Confusions`), so any number of classes fits.
"""
from __future__ import annotations

import csv
import json
import os
from typing import Sequence

import numpy as np
from absl import logging

from sports1m_tf import metrics, run_folder
from sports1m_tf.evaluation import figures
from sports1m_tf.metrics import TOP_K
from sports1m_tf.evaluation.video_scores import VideoPredictions
from tfrecord_tools import fileio


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
    with fileio.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
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
    with fileio.atomic_path(path) as tmp:  # keeps the .npz ending: savez adds none
        np.savez(tmp, media_ids=np.asarray(videos.media_ids), member_probs=videos.probs,
                 labels=videos.labels, view_rows=videos.rows,
                 class_names=np.asarray(class_names))


def write_confused_pairs_csv(path: str, counts: metrics.Confusions,
                             class_names: Sequence[str], top_n: int = 50) -> list[dict]:
    """The most confused class pairs (both directions summed); returns them as dicts."""
    pairs = [dict(class_a=class_names[a], class_b=class_names[b], count=n,
                  a_predicted_as_b=counts.get(a, b), b_predicted_as_a=counts.get(b, a))
             for a, b, n in metrics.most_confused_pairs(counts, top_n)]
    with fileio.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, ["class_a", "class_b", "count", "a_predicted_as_b",
                               "b_predicted_as_a"])
        w.writeheader()
        w.writerows(pairs)
    return pairs


def compare_reports(this: dict, other_path: str, output_dir: str, top_n: int = 10) -> dict:
    """Per-class ΔAP = this AP − other AP (as the paper's Table 2): delta_ap.csv and the extremes.

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
    with fileio.atomic_path(os.path.join(output_dir, "delta_ap.csv")) as tmp, \
            open(tmp, "w", newline="") as f:
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


def write_tensorboard(member_reports: Sequence[dict]) -> None:
    """Each training run's own scalars to RUN_DIR/eval/ at its checkpoint's step."""
    import tensorflow as tf

    for report in member_reports:
        run_dir = report["identity"].get("model_dir")
        if not run_folder.is_run_folder(run_dir):
            continue
        writer = tf.summary.create_file_writer(os.path.join(run_dir, "eval"))
        with writer.as_default(step=report["identity"].get("step") or 0):
            for key in ("clip_hit_at_1", "video_hit_at_1", "video_hit_at_5", "mAP"):
                if report[key] is not None:
                    tf.summary.scalar(key, report[key])
        writer.close()


def metrics_report(predicted: dict, class_names: Sequence[str], identities: Sequence[dict],
                   settings: dict) -> dict:
    """The metrics dict of an evaluation (what metrics.json holds, before the files' extras).

    Args:
      predicted: `score_videos`' result.
      class_names: C names.
      identities: each member's identity (`Member.identity`), in member order.
      settings: how the evaluation ran (files, clips, views, strategy).

    Returns:
      dict: clip and video Hit@k, mAP and per-class AP of the ensemble, counts,
      `settings`, `models`, `ensemble` and `members` (each member's own scores).
    """
    videos: VideoPredictions = predicted["videos"]
    # The ensemble's video prediction: the mean over models of their video means
    # (= the video mean of the clip-averaged outputs: every model saw the same rows).
    overall = video_metrics(videos.probs.mean(axis=1), videos.labels)
    members = []
    for m, identity in enumerate(identities):
        own = video_metrics(videos.probs[:, m], videos.labels)
        members.append(dict(identity=identity, clip_hit_at_1=float(predicted["clip_hits"][m]),
                            video_hit_at_1=own["video_hit_at_1"],
                            video_hit_at_5=own["video_hit_at_5"], mAP=_none_if_nan(own["mAP"])))
    result = {
        "clip_hit_at_1": float(predicted["clip_hits"][-1]),
        "video_hit_at_1": overall["video_hit_at_1"],
        "video_hit_at_5": overall["video_hit_at_5"],
        "mAP": _none_if_nan(overall["mAP"]),
        "classes_with_positives": int((~np.isnan(overall["ap"])).sum()),
        "per_class_ap": {n: _none_if_nan(a) for n, a in zip(class_names, overall["ap"])},
        "videos": len(videos.media_ids),
        "clips": predicted["clips"],
        "view_rows": predicted["rows"],
        "skipped_records": predicted["skipped_records"],
        "label_conflicts": predicted["label_conflicts"],
        "num_classes": len(class_names),
        "settings": settings,
        "models": list(identities),
        "ensemble": len(identities) > 1,
        "members": members,
    }
    groups = metrics.ucf101_groups(class_names)
    if sum(len(v) for k, v in groups.items() if k != metrics.UCF101_REST_GROUP) >= 40:
        result["group_mAP"] = {k: _none_if_nan(v)
                               for k, v in metrics.group_map(overall["ap"], groups).items()}
    return result


def write_report(output_dir: str, result: dict, predicted: dict, class_names: Sequence[str],
                 *, confusion_classes: int = 30, compare_with: str | None = None) -> dict:
    """Writes the report folder; returns `result` with `confused_pairs` (and `comparison`).

    Args:
      output_dir: The report folder (created).
      result: `metrics_report`'s dict.
      predicted: `score_videos`' result (videos, montage frames).
      class_names: C names.
      confusion_classes: Classes in the confusion-matrix figure.
      compare_with: Another report's metrics.json → delta_ap.csv.
    """
    os.makedirs(output_dir, exist_ok=True)
    videos: VideoPredictions = predicted["videos"]
    ensemble = videos.probs.mean(axis=1)
    counts = metrics.Confusions.from_predictions(ensemble, videos.labels)  # sparse: any C
    write_predictions_csv(os.path.join(output_dir, "predictions.csv"), videos, ensemble,
                          class_names)
    write_video_probs(os.path.join(output_dir, "video_probs.npz"), videos, class_names)
    result["confused_pairs"] = write_confused_pairs_csv(
        os.path.join(output_dir, "confused_pairs.csv"), counts, class_names)[:10]
    figures.plot_confusion(counts, class_names,
                           os.path.join(output_dir, "confusion_matrix.png"),
                           top_n=confusion_classes)
    frames = predicted["frames"]
    if frames:
        shown = [i for i, media_id in enumerate(videos.media_ids) if media_id in frames]
        top, top_p = metrics.top_k(ensemble[shown], min(TOP_K, len(class_names)))
        figures.plot_prediction_montage(
            [frames[videos.media_ids[i]] for i in shown],
            [list(np.flatnonzero(videos.labels[i])) for i in shown], top, top_p, class_names,
            os.path.join(output_dir, "predictions_montage.png"),
            titles=[videos.media_ids[i] for i in shown])
    if compare_with:
        result["comparison"] = compare_reports(result, compare_with, output_dir)
    fileio.write_text_atomic(os.path.join(output_dir, "metrics.json"),
                             json.dumps(result, indent=1))
    return result
