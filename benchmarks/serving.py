"""Latency of the exported signatures against the bare model's forward pass.

    python benchmarks/serving.py                        # moderate: slow fusion, width 0.125 (< 1 min)
    python benchmarks/serving.py --full --repeats=5     # full size: width 1, 487 classes (minutes)
    python benchmarks/serving.py --model=single_frame --multires

The model is exported with `export.saved_model.export_model`, loaded back with
`tf.saved_model.load`, and called on random uint8 clips of the stored size
(200×200, what `sports1m-predict` sends). Timed, p50 and p95 over `--repeats`
calls after two warm-up calls, each served call alternated with its bare forward:

  serving_default  batch 1 and batch 32 (centre view)
  predict_jpeg     batch 1 (16 JPEG frames; only the model's frames are decoded)
  predict_video    the 20 clips of one video (4 views each, averaged)

against the model's own forward (`tf.function` around `model(x, training=False)`)
on the already-cropped input of the same call: 1 and 32 centre views, and the 80
views of `predict_video`. The goal: predict_video within 2× of its 80-view forward.
Writes benchmarks/results/serving.json.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from absl import app, flags

flags.DEFINE_string("model", "slow_fusion", "Model name.")
flags.DEFINE_bool("multires", False, "Multiresolution variant.")
flags.DEFINE_float("width", 0.125, "Width multiplier (1.0 with --full).")
flags.DEFINE_integer("input_size", None, "Crop size (default: the model's, 170 or 178).")
flags.DEFINE_integer("num_classes", 487, "Classes.")
flags.DEFINE_bool("full", False, "Full-size model (width 1.0).")
flags.DEFINE_integer("clips", 20, "Clips of the video given to predict_video.")
flags.DEFINE_integer("batch", 32, "The large serving_default batch.")
flags.DEFINE_integer("repeats", 10, "Timed calls per measurement.")
flags.DEFINE_string("output", "benchmarks/results/serving.json", "JSON output.")
FLAGS = flags.FLAGS


def paired_latency(served, bare, repeats: int) -> tuple[dict, dict]:
    """p50 / p95 / mean wall time (ms) of two calls, alternated so that a busy machine
    slows both alike; two warm-up calls each."""
    for _ in range(2):
        _block(served())
        _block(bare())
    times = {"served": [], "bare": []}
    for _ in range(repeats):
        for key, fn in (("served", served), ("bare", bare)):
            start = time.perf_counter()
            _block(fn())
            times[key].append((time.perf_counter() - start) * 1e3)
    return _summary(times["served"]), _summary(times["bare"])


def _summary(times: list[float]) -> dict:
    import numpy as np
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "mean_ms": float(np.mean(times)), "calls": len(times)}


def _block(outputs):
    """Waits for the results (`.numpy()` copies them to the host, as a server would)."""
    values = outputs.values() if isinstance(outputs, dict) else [outputs]
    for v in values:
        v.numpy()


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from export import signatures
    from export.saved_model import export_model
    from sports1m_tf.data import eval_views
    from sports1m_tf.models import build_model, describe

    width = 1.0 if FLAGS.full else FLAGS.width
    model = build_model(FLAGS.model, FLAGS.num_classes, multires=FLAGS.multires, width=width,
                        input_size=FLAGS.input_size)
    info = describe(model)
    frames, size = info["frames"], info["input_size"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = export_model(model, tmp, "bench", class_names=None, warmup=False)
        export_s = time.perf_counter() - start
        loaded = tf.saved_model.load(path)
    forward = tf.function(lambda x: model(x, training=False))

    rng = np.random.default_rng(0)
    stored = 200

    def clips(n):
        return tf.constant(rng.integers(0, 256, (n, 16, stored, stored, 3), np.uint8))

    def centre(x):  # the model's input for serving_default's call on `x`
        o = (stored - size) // 2
        return tf.constant(tf.gather(x, frames, axis=1)[:, :, o:o + size, o:o + size])

    def views(x):  # the model's 80 views for predict_video's call on `x`
        picked = tf.gather(x, frames, axis=1)
        flat = tf.reshape(picked, [-1, stored, stored, 3])
        v = eval_views(flat, size, signatures.VIEWS)
        return tf.constant(tf.reshape(v, [-1, len(frames), size, size, 3]))

    one, batch, video = clips(1), clips(FLAGS.batch), clips(FLAGS.clips)
    jpeg = tf.constant([[tf.io.encode_jpeg(f, quality=90).numpy() for f in one[0]]])
    default, by_video = loaded.signatures["serving_default"], loaded.signatures["predict_video"]
    by_jpeg = loaded.signatures["predict_jpeg"]
    r, b, n = FLAGS.repeats, FLAGS.batch, FLAGS.clips
    x1, xb, xv = centre(one), centre(batch), views(video)
    results = {}
    results["serving_default_b1"], results["forward_b1"] = paired_latency(
        lambda: default(clips=one), lambda: forward(x1), r)
    results["predict_jpeg_b1"], _ = paired_latency(
        lambda: by_jpeg(jpeg_frames=jpeg), lambda: forward(x1), r)
    results[f"serving_default_b{b}"], results[f"forward_b{b}"] = paired_latency(
        lambda: default(clips=batch), lambda: forward(xb), r)
    results[f"predict_video_{n}clips"], results[f"forward_{4 * n}views"] = paired_latency(
        lambda: by_video(clips=video), lambda: forward(xv), r)
    ratios = {
        "serving_default_b1": results["serving_default_b1"]["p50_ms"]
        / results["forward_b1"]["p50_ms"],
        f"serving_default_b{b}": results[f"serving_default_b{b}"]["p50_ms"]
        / results[f"forward_b{b}"]["p50_ms"],
        "predict_video": results[f"predict_video_{n}clips"]["p50_ms"]
        / results[f"forward_{4 * n}views"]["p50_ms"],
    }
    settings = {"model": FLAGS.model, "multires": FLAGS.multires, "width": width,
                "input_size": size, "num_classes": FLAGS.num_classes, "frames": len(frames),
                "clips": n, "batch": b, "repeats": r,
                "export_s": export_s, "cpu_count": os.cpu_count(),
                "devices": [d.device_type for d in tf.config.list_logical_devices()]}
    for key, value in results.items():
        print(f"{key:28s} p50 {value['p50_ms']:9.1f} ms   p95 {value['p95_ms']:9.1f} ms")
    for key, value in ratios.items():
        print(f"{key:28s} {value:5.2f}× the model's own forward (p50)")
    goal = ratios["predict_video"] <= 2.0
    print(f"goal predict_video <= 2× forward: {'met' if goal else 'NOT met'}")
    os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump({"settings": settings, "latency": results, "ratio_to_forward": ratios,
                   "goal_met": goal}, f, indent=2)
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
