"""How many distinct videos a training batch holds, against a uniform random draw.

The paper trains on clips drawn at random from the whole dataset; our reader can
only mix what the shards put near each other. This benchmark writes the same
clips (tiny frames: the measure depends on record order, not pixels) in two
layouts with the real shard writer:
  * previous: each video's clips consecutively, videos in a seeded order, dealt
    round-robin over the shards (the converter before the mixed layout);
  * mixed: `tfrecord_tools.layout` (what `sports1m-convert` writes now);
then reads them with `sports1m_tf.data.clip_dataset` in training mode (batch 32)
for 1, 16 and 64 shards, with the default reader settings and a few shuffle
buffers, and counts distinct videos per batch (each clip's label is its video).
Also: the distinct videos per 32 consecutive records in file order (what
`sports1m-inspect` reports), the reader's memory at 200-pixel frames, and the
converter's cost per video before and after the mixed layout (the same videos
converted by this tree and by `--before_ref`, in fresh processes).

Run (≈5 minutes on 2 shared cores):
  nice -n 5 python benchmarks/batch_mixing.py
  python benchmarks/batch_mixing.py --parts=converter      # only the converter's cost
Writes benchmarks/results/batch_mixing.json.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

# The tests' record and video writers.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import common  # noqa: E402
import testvideos  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("videos", 120, "Videos of the synthetic split.")
flags.DEFINE_integer("clips", 100, "Clips per video.")
flags.DEFINE_integer("batches", 40, "Batches read per configuration and seed (from the start).")
flags.DEFINE_integer("seeds", 2, "Reader seeds per configuration.")
flags.DEFINE_list("shards", ["1", "16", "64"], "Shard counts.")
flags.DEFINE_list("buffers", ["256", "1024", "4096", "10000"],
                  "Shuffle buffers besides the default.")
flags.DEFINE_list("cycles", ["16"], "Interleave cycle lengths besides the default "
                  "(with the default buffer).")
flags.DEFINE_list("layouts", ["previous", "mixed"], "Layouts to measure.")
flags.DEFINE_integer("convert_videos", 40, "Videos converted for the cost per video.")
flags.DEFINE_list("parts", ["mixing", "converter"], "What to measure; the JSON's other parts "
                  "are kept from its last run.")
flags.DEFINE_integer("convert_repeats", 5, "Alternating repeats of each converter; median kept.")
flags.DEFINE_string("before_ref", "58d3eb6",
                    "Git commit of the converter before the mixed layout (round-robin dealing).")
common.define_output("batch_mixing", "Where the JSON goes.")

RECORD_KB_200 = 180  # a 16-frame clip of 200x200 JPEG q90 (≈11 KB a frame)
READ_BUFFER_KB = 1024  # TFRecordDataset buffer per shard being read


def reader_memory_mb(shuffle_buffer: int, cycle_length: int) -> float:
    """Records in the shuffle buffer plus one read buffer per open shard, at 200 px."""
    return round((shuffle_buffer * RECORD_KB_200 + cycle_length * READ_BUFFER_KB) / 1024, 1)


def write_split(folder: str, clips: dict, num_shards: int, mixed: bool, seed: int = 0) -> str:
    from tfrecord_tools import layout, shards
    if mixed:
        stream = layout.mixed_stream([(v, len(r)) for v, r in clips.items()],
                                     lambda v: iter(clips[v]), seed)
    else:
        stream = (r for v in layout.video_order(clips, seed) for r in clips[v])
    shards.write_shards(folder, "train", num_shards, "none", stream)
    return shards.shard_pattern(folder, "train", num_shards, "none")


def file_order(pattern: str) -> dict:
    """Distinct videos per 32 consecutive records of each shard, as sports1m-inspect."""
    import glob

    import tensorflow as tf

    from tfrecord_tools import mixing, schema
    meter = mixing.Meter()
    for path in sorted(glob.glob(pattern)):
        for raw in tf.data.TFRecordDataset(path):
            ex = tf.train.SequenceExample.FromString(raw.numpy())
            meter.add(path, ex.context.feature[schema.MEDIA_ID].bytes_list.value[0])
    return meter.report()


def batch_distinct(pattern: str, num_videos: int, seed: int, batches: int, **reader) -> float:
    from tfrecord_tools import mixing
    return float(np.mean(mixing.reader_distinct_per_batch(
        pattern, num_videos, batches=batches, seed=seed, frame_indices=[0], clip_frames=1,
        **reader)))


def mixing_table(root: str) -> dict:
    import importlib
    cd = importlib.import_module("sports1m_tf.data.clip_dataset")  # the module, not the function
    from sports1m_tf.data import records
    from tfrecord_tools import mixing
    clips = testvideos.tiny_clip_records(FLAGS.videos, FLAGS.clips, frame_size=8, clip_frames=1)
    ideal = mixing.uniform_distinct([FLAGS.clips] * FLAGS.videos)
    default_buffer = cd.DEFAULT_SHUFFLE_BUFFER
    default_cycle = records.DEFAULT_CYCLE_LENGTH
    rows = []
    for layout_name in FLAGS.layouts:
        for num_shards in map(int, FLAGS.shards):
            folder = os.path.join(root, f"{layout_name}-{num_shards}")
            pattern = write_split(folder, clips, num_shards, layout_name == "mixed")
            order = file_order(pattern)
            settings = [("default", default_buffer, default_cycle)]
            settings += [("buffer", int(b), default_cycle) for b in FLAGS.buffers
                         if int(b) != default_buffer]
            settings += [("cycle", default_buffer, int(c)) for c in FLAGS.cycles
                         if int(c) != default_cycle]
            for label, buffer, cycle in settings:
                start = time.monotonic()
                distinct = statistics.mean(
                    batch_distinct(pattern, FLAGS.videos, seed, FLAGS.batches,
                                   shuffle_buffer=buffer, cycle_length=cycle)
                    for seed in range(FLAGS.seeds))
                row = {"layout": layout_name, "shards": num_shards, "reader": label,
                       "shuffle_buffer": buffer, "cycle_length": cycle,
                       "distinct_per_batch": round(distinct, 2),
                       "of_uniform": round(distinct / ideal, 3),
                       "reader_memory_mb_200px": reader_memory_mb(buffer, cycle),
                       "file_order_distinct_per_32": order["distinct_per_32"],
                       "seconds": round(time.monotonic() - start, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"videos": FLAGS.videos, "clips_per_video": FLAGS.clips,
            "uniform_distinct_per_batch": round(ideal, 2), "default_shuffle_buffer": default_buffer,
            "default_cycle_length": default_cycle, "rows": rows}


_CONVERT = r"""
import json, sys, time, resource
import tensorflow as tf  # imported before timing: both versions import it to write shards
from tfrecord_tools.convert import convert
manifest, out = sys.argv[1:3]
t0, c0 = time.monotonic(), time.process_time()
s = convert(manifest, output_dir=out, workers=1, clips_per_video=6, frame_size=64,
            num_shards=16, progress=False)
print(json.dumps({"wall_s": time.monotonic() - t0, "cpu_s": time.process_time() - c0,
                  "videos": s["videos_converted"], "clips": s["clips"],
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def converter_cost(root: str) -> dict:
    """Seconds per video of `convert()` (1 worker, in one process), this tree against
    `--before_ref`, on the same small synthetic videos; alternating runs."""
    videos = os.path.join(root, "videos")
    lines = []
    for i in range(FLAGS.convert_videos):
        testvideos.write_video(os.path.join(videos, f"s{i}.avi"), width=160, height=120,
                               num_frames=96, seed=i)
        lines.append(f"s{i}.avi,c{i % 4}")
    manifest = os.path.join(videos, "m.csv")
    with open(manifest, "w") as f:
        f.write("\n".join(lines) + "\n")
    before = os.path.join(root, "before")
    os.makedirs(before)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(["git", "-C", here, "archive", FLAGS.before_ref], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", before], input=archive, check=True)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(FLAGS.convert_repeats):
        for name, tree in (("before", before), ("after", here)):
            out = os.path.join(root, f"out-{name}-{r}")
            proc = subprocess.run([sys.executable, "-c", _CONVERT, manifest, out],
                                  capture_output=True, text=True, check=True,
                                  env={**os.environ, "PYTHONPATH": tree})
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(name, runs[name][-1], flush=True)
    result = {}
    for name, rs in runs.items():
        n = rs[0]["videos"]
        def per_video_ms(key, rs=rs, n=n):
            return round(1000 * statistics.median(x[key] for x in rs) / n, 1)
        result[name] = {"cpu_ms_per_video": per_video_ms("cpu_s"),
                        "wall_ms_per_video": per_video_ms("wall_s"),
                        "max_rss_mb": round(max(x["max_rss_mb"] for x in rs)),
                        "videos": n, "clips": rs[0]["clips"]}
    result["cpu_ratio_after_before"] = round(result["after"]["cpu_ms_per_video"]
                                             / result["before"]["cpu_ms_per_video"], 3)
    result["before_ref"] = FLAGS.before_ref
    return result


def main(argv):
    del argv
    out = {}
    if os.path.exists(FLAGS.output):
        with open(FLAGS.output) as f:
            out = json.load(f)
    with tempfile.TemporaryDirectory(prefix="batch_mixing-") as root:
        if "mixing" in FLAGS.parts:
            out["mixing"] = mixing_table(root)
        if "converter" in FLAGS.parts:
            out["converter"] = converter_cost(root)
    common.write_results(FLAGS.output, out, indent=1)


if __name__ == "__main__":
    app.run(main)
