"""sports1m-baseline: the paper's "Feature Histograms + Neural Net" on the CNNs' clip records.

Fit (vocabularies on a sample of training clips, video vectors of train and
val, a small MLP search on val; saves everything to --model_dir):
  sports1m-baseline --mode=fit --train_files='/data/clips/train-*' \
      --val_files='/data/clips/val-*' --model_dir=/models/baseline

Evaluate (writes metrics.json with video Hit@1, Hit@5 and mAP in the same
layout as sports1m-eval, and predictions.csv, to --output_dir):
  sports1m-baseline --mode=evaluate --eval_files='/data/clips/test-*' \
      --model_dir=/models/baseline --output_dir=reports/baseline

Predict (predictions.csv only; the records need no labels):
  sports1m-baseline --mode=predict --eval_files='/data/new/*.tfrecord' \
      --model_dir=/models/baseline --output_dir=/tmp/pred

Video vectors are cached under --cache_dir (default MODEL_DIR/cache), keyed by
the files, the descriptor settings and the vocabulary, so a second run skips
extraction.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from typing import TYPE_CHECKING, Sequence

import numpy as np
from absl import app, flags

from sports1m_tf import cli

cli.quiet_tensorflow_import("sports1m-baseline")  # before the imports below load TensorFlow

from sports1m_tf import metrics
from sports1m_tf.settings import check_settings, from_flags
from sports1m_tf.baseline import fit_settings
from sports1m_tf.baseline.fit_settings import FitSettings
from sports1m_tf.baseline.descriptors import FEATURE_TYPES, DescriptorSettings
from sports1m_tf.baseline.histograms import vector_dimension
from sports1m_tf.baseline.vocabulary import Vocabulary, fit_vocabulary
from sports1m_tf.metrics import TOP_K
from tfrecord_tools import fileio, summary

if TYPE_CHECKING:  # TensorFlow loads with these: imported where used (see sports1m_tf.cli)
    from sports1m_tf.baseline import extract

MODEL_FILE = "model.keras"
VOCABULARY_FILE = "vocabulary.npz"
CONFIG_FILE = "baseline.json"

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Declares the command's flags (at run time, not import: other commands' modules,
    imported in one process by tests, declare flags of the same names)."""
    flags.DEFINE_enum("mode", "fit", ["fit", "evaluate", "predict"], "What to do.")
    flags.DEFINE_list("train_files", None, "Training clip records (globs or paths).")
    flags.DEFINE_list("val_files", None, "Validation clip records, for the MLP search. If "
                      "absent, 20% of the training videos are held out.")
    flags.DEFINE_list("eval_files", None, "Clip records to evaluate or predict.")
    flags.DEFINE_string("model_dir", None, "Where fit writes (and evaluate/predict read) the "
                        "vocabulary, the MLP and baseline.json.")
    flags.DEFINE_string("output_dir", None, "Where evaluate/predict write; default MODEL_DIR/eval.")
    flags.DEFINE_string("cache_dir", None, "Video-vector cache; default MODEL_DIR/cache. "
                        "'none' disables it.")
    fit_settings.define_flags()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def class_names_for(files: Sequence[str], seen: dict[int, str]) -> list[str]:
    """From the dataset.json beside the records, else the records' label strings."""
    for folder in sorted({os.path.dirname(os.path.abspath(f)) for f in files}):
        info = summary.read(folder)
        if info is not None:
            return list(info["classes"])
    if not seen:
        raise ValueError(f"no dataset.json beside {files[0]} and no labels in its records")
    return [seen.get(i, f"class_{i}") for i in range(max(seen) + 1)]


def hold_out(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, int(round(n * fraction)))
    return np.sort(order[cut:]), np.sort(order[:cut])


def _labelled(features: extract.VideoFeatures, name: str) -> None:
    missing = [i for i, l in zip(features.ids, features.label_lists) if not l]
    if missing:
        raise ValueError(f"{name}: {len(missing)} videos have no labels (first: {missing[0]})")


def write_predictions(path: str, features: extract.VideoFeatures, probs: np.ndarray,
                      names: Sequence[str]) -> None:
    """predictions.csv: one row per video, as sports1m-eval writes it (clips for view_rows)."""
    k = min(TOP_K, probs.shape[1])
    top, top_p = metrics.top_k(probs, k)
    labelled = all(features.label_lists)
    hit1 = metrics.hits_at_k(probs, features.label_lists, 1) if labelled else None
    hitk = metrics.hits_at_k(probs, features.label_lists, k) if labelled else None
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["media_id", "labels", "hit_at_1", f"hit_at_{k}", "clips"]
                   + [f"{n}{r + 1}" for r in range(k) for n in ("top", "prob")])
        for v, media_id in enumerate(features.ids):
            truth = ";".join(names[c] for c in features.label_lists[v])
            tops = [x for c, p in zip(top[v], top_p[v]) for x in (names[c], f"{p:.6f}")]
            w.writerow([media_id, truth, "" if hit1 is None else int(hit1[v]),
                        "" if hitk is None else int(hitk[v]), int(features.clips[v])] + tops)


def _none_if_nan(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


# ---------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------
def fit(train_files: Sequence[str], val_files: Sequence[str] | None, model_dir: str,
        settings: FitSettings = FitSettings(), *, cache_dir: str | None = None) -> dict:
    """Fits vocabularies and the MLP; writes model.keras, vocabulary.npz, baseline.json.

    Returns:
      The baseline.json dict (settings, classes, dimension, search results, problems).
    """
    from sports1m_tf.baseline import classifier, extract
    from sports1m_tf.data.records import list_files

    start = time.time()
    os.makedirs(model_dir, exist_ok=True)
    train_list = list_files(train_files)
    descriptors, seed = settings.descriptors(), settings.seed

    # --- vocabularies ------------------------------------------------------
    samples, sample_problems = extract.sample_descriptors(
        train_list, descriptors, max_clips=settings.vocabulary_clips,
        max_per_type=settings.vocabulary_samples, workers=settings.workers, seed=seed)
    vocabulary = fit_vocabulary(samples, settings.sizes(), neighbours=settings.soft_neighbours,
                                seed=seed)
    vocabulary.save(os.path.join(model_dir, VOCABULARY_FILE))
    dim = vector_dimension(vocabulary.sizes)
    print(f"video vector dimension: {dim} = 5 pyramid cells x ({' + '.join(f'{vocabulary.sizes[t]} {t}' for t in FEATURE_TYPES)} words)")

    # --- video vectors -----------------------------------------------------
    kw = dict(clips_per_video=settings.clips_per_video, workers=settings.workers,
              cache_dir=cache_dir)
    train = extract.extract_features(train_list, vocabulary, descriptors, desc="train", **kw)
    _labelled(train, "train")
    names = class_names_for(train_list, train.class_names)
    if val_files:
        val = extract.extract_features(val_files, vocabulary, descriptors,
                                       desc="val", **kw)
        _labelled(val, "val")
        x_train, y_train, x_val, y_val = (train.vectors, train.label_lists, val.vectors,
                                          val.label_lists)
        problems = train.problems + val.problems
    else:
        keep, held = hold_out(len(train.ids), 0.2, seed)
        x_train, x_val = train.vectors[keep], train.vectors[held]
        y_train = [train.label_lists[i] for i in keep]
        y_val = [train.label_lists[i] for i in held]
        problems = list(train.problems)
    problems = sample_problems + problems

    # --- MLP search ----------------------------------------------------------
    model, results = classifier.search(classifier.grid(*settings.search_space()), x_train,
                                       y_train, x_val, y_val, len(names),
                                       epochs=settings.epochs, patience=settings.patience,
                                       batch_size=settings.batch_size, seed=seed)
    model.save(os.path.join(model_dir, MODEL_FILE))
    chosen = next(r for r in results if r.get("chosen"))
    config = {
        "model": "feature_histograms",
        "classes": names,
        "num_classes": len(names),
        "dimension": dim,
        "descriptor_settings": dataclasses.asdict(descriptors),
        "vocabulary_sizes": vocabulary.sizes,
        "soft_neighbours": settings.soft_neighbours,
        "clips_per_video": settings.clips_per_video,
        "train_files": list(train_files), "val_files": list(val_files or []),
        "train_videos": len(x_train), "val_videos": len(x_val),
        "search": results, "chosen": chosen["config"],
        "skipped": problems,
        "seconds": round(time.time() - start, 1),
    }
    fileio.write_text_atomic(os.path.join(model_dir, CONFIG_FILE), json.dumps(config, indent=1))
    print(f"chosen {chosen['config']}: val video Hit@1 {chosen['val_hit_at_1']:.4f}; "
          f"{len(problems)} skipped item(s); model in {model_dir}")
    return config


def load(model_dir: str):
    """(keras model, Vocabulary, baseline.json dict) from a fitted model_dir."""
    import keras

    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: run --mode=fit with --model_dir={model_dir}")
    with open(path) as f:
        config = json.load(f)
    return (keras.models.load_model(os.path.join(model_dir, MODEL_FILE)),
            Vocabulary.load(os.path.join(model_dir, VOCABULARY_FILE)), config)


def evaluate(eval_files: Sequence[str], model_dir: str, output_dir: str, *,
             labels_required: bool = True, workers: int = 0,
             cache_dir: str | None = None, clips_per_video: int | None = None) -> dict:
    """Scores the videos of `eval_files`; writes predictions.csv and (with labels) metrics.json.

    Returns:
      The metrics dict (keys as in sports1m-eval's metrics.json; clip_hit_at_1 is
      None: the baseline classifies whole videos), or {"videos": V} for predictions only.
    """
    from sports1m_tf.baseline import extract

    model, vocabulary, config = load(model_dir)
    settings = DescriptorSettings(**config["descriptor_settings"])
    clips = clips_per_video or config["clips_per_video"]
    features = extract.extract_features(eval_files, vocabulary, settings, clips_per_video=clips,
                                        workers=workers, cache_dir=cache_dir, desc="eval")
    names = config["classes"]
    probs = model.predict(features.vectors, batch_size=256, verbose=0)
    os.makedirs(output_dir, exist_ok=True)
    write_predictions(os.path.join(output_dir, "predictions.csv"), features, probs, names)
    if not labels_required:
        return {"videos": len(features.ids), "skipped": features.problems}
    _labelled(features, "eval")
    bad = [l for ls in features.label_lists for l in ls if l >= len(names)]
    if bad:
        raise ValueError(f"eval records carry label {max(bad)} but the model has {len(names)} "
                         "classes: records of another dataset?")
    ap = metrics.average_precision_per_class(probs, features.label_lists)
    result = {
        "clip_hit_at_1": None,
        "video_hit_at_1": metrics.hit_at_k(probs, features.label_lists, 1),
        "video_hit_at_5": metrics.hit_at_k(probs, features.label_lists, min(TOP_K, len(names))),
        "mAP": _none_if_nan(metrics.mean_average_precision(ap_per_class=ap)),
        "classes_with_positives": int((~np.isnan(ap)).sum()),
        "per_class_ap": {n: _none_if_nan(a) for n, a in zip(names, ap)},
        "videos": len(features.ids),
        "clips": int(features.clips.sum()),
        "skipped_records": len(features.problems),
        "skipped": features.problems,
        "num_classes": len(names),
        "settings": {"eval_files": list(eval_files), "clips_per_video": clips},
        "models": [{"name": "feature_histograms", "model_dir": os.path.abspath(model_dir),
                    "dimension": config["dimension"], "chosen": config["chosen"]}],
    }
    fileio.write_text_atomic(os.path.join(output_dir, "metrics.json"),
                             json.dumps(result, indent=1))
    print(f"{result['videos']} videos, {result['clips']} clips: video Hit@1 "
          f"{result['video_hit_at_1']:.4f}, Hit@5 {result['video_hit_at_5']:.4f}, "
          f"mAP {result['mAP']}; {len(features.problems)} skipped; {output_dir}/metrics.json")
    return result


# ---------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------
def main(argv: Sequence[str]) -> None:
    del argv
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required")
    cache_dir = FLAGS.cache_dir or os.path.join(FLAGS.model_dir, "cache")
    cache_dir = None if cache_dir == "none" else cache_dir
    if FLAGS.mode == "fit":
        if not FLAGS.train_files:
            raise app.UsageError("--mode=fit needs --train_files")
        settings = from_flags(FitSettings)
        check_settings(settings)
        fit(_listed("train_files"), _listed("val_files"), FLAGS.model_dir, settings,
            cache_dir=cache_dir)
    else:
        if not FLAGS.eval_files:
            raise app.UsageError(f"--mode={FLAGS.mode} needs --eval_files")
        evaluate(_listed("eval_files"), FLAGS.model_dir,
                 FLAGS.output_dir or os.path.join(FLAGS.model_dir, "eval"),
                 labels_required=FLAGS.mode == "evaluate", workers=FLAGS.workers,
                 cache_dir=cache_dir, clips_per_video=FLAGS.clips_per_video)


def _listed(flag: str) -> Sequence[str] | None:
    """The record files of `--flag`, listed once for every step that reads them."""
    from sports1m_tf.data.records import list_files
    try:
        return list_files(FLAGS[flag].value) if FLAGS[flag].value else None
    except ValueError as e:
        raise cli.UserError(f"--{flag}: {e}") from None


run = cli.entry(main, define=define_flags)


if __name__ == "__main__":
    run()
