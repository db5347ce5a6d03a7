"""sports1m-features on 10,000 clips: rows per second and peak memory, one row per clip.

    python benchmarks/features.py                 # 10,000 clips, fc7 of width 0.125 (≈ 5 min)
    python benchmarks/features.py --clips=2000 --width=0.0625

Writes `--clips` synthetic clip records (500 videos, 48-pixel frames of smooth
noise, JPEG q90 by the converter's serializer) and a run folder with a
slow-fusion model (32-pixel crop), then runs `sports1m-features --model_dir
--records --per_clip` in a fresh process, as a user would, timing it and reading
its peak resident memory. The output's size is reported beside: the rows are
written in chunks, so the peak should not follow it. A second, smaller run (a
tenth of the clips) shows how the peak grows with the rows.

Writes benchmarks/results/features.json.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import flags

import common

flags.DEFINE_integer("clips", 10000, "Clips to embed.")
flags.DEFINE_integer("clips_per_video", 20, "Clips a video.")
flags.DEFINE_float("width", 0.125, "Width multiplier of the model.")
flags.DEFINE_integer("frame_size", 48, "Stored frame size of the synthetic records.")
common.define_output("features")
FLAGS = flags.FLAGS

CROP = 32


def write_records(path: str, clips: int, per_video: int, size: int) -> None:
    import cv2
    import numpy as np
    import tensorflow as tf

    from tfrecord_tools.clip_encoding import encode_clip
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (64, size // 8, size // 8, 3), np.uint8)
    jpegs = [cv2.imencode(".jpg", cv2.resize(c, (size, size)), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
             .tobytes() for c in coarse]
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(clips):
            video, index = divmod(i, per_video)
            first = index * 16
            writer.write(encode_clip(
                media_id=f"video{video:05d}", label_indices=[0], label_strings=["a"],
                encoded_frames=[jpegs[(i + t) % len(jpegs)] for t in range(16)],
                frame_timestamps_us=[int((first + t) * 1e6 / 25) for t in range(16)],
                frame_rate=25.0, height=size, width=size))


def run_features(model_dir: str, records: str, output: str) -> dict:
    command = [sys.executable, "-c", "import sys; sys.argv[0] = 'sports1m-features'; "
               "from export.features_main import run; run()", f"--model_dir={model_dir}",
               f"--records={records}", "--per_clip", f"--output={output}", "--batch_size=64"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = common.peak_rss_mb(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    import numpy as np
    rows = len(np.load(output, allow_pickle=False)["video"])
    return {"rows": rows, "wall_s": wall, "rows_per_s": rows / wall,
            "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            # Of the children: the largest child so far.
            "peak_rss_mb": peak, "output_mb": os.path.getsize(output) / 1e6}


def main(argv):
    del argv
    import keras

    from sports1m_tf.models import build_model
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "run")
        os.makedirs(model_dir)
        model = build_model("slow_fusion", 10, width=FLAGS.width, input_size=CROP)
        model.save(os.path.join(model_dir, "model.keras"))
        del model
        keras.backend.clear_session()
        report = {}
        # The small run first: children's peak memory only grows.
        for key, clips in (("tenth", FLAGS.clips // 10), ("all", FLAGS.clips)):
            records = os.path.join(tmp, f"{key}.tfrecord")
            write_records(records, clips, FLAGS.clips_per_video, FLAGS.frame_size)
            report[key] = run_features(model_dir, records, os.path.join(tmp, f"{key}.npz"))
            print(key, report[key])
    report["settings"] = {"clips": FLAGS.clips, "clips_per_video": FLAGS.clips_per_video,
                          "width": FLAGS.width, "frame_size": FLAGS.frame_size, "crop": CROP,
                          "embedding_size": int(round(4096 * FLAGS.width)),
                          "shared_machine": True, **common.machine_load()}
    common.write_results(FLAGS.output, report)


if __name__ == "__main__":
    common.run(main)
