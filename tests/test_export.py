"""export/: a small trained model exported by `sports1m-export`, checked in FRESH processes.

The fixture trains a tiny slow-fusion model for two steps, exports it with the
command, then starts (concurrently, to share the TF start-up cost) the fresh-process
checks: a script that loads the SavedModel and calls every signature and the
warmup requests, `saved_model_cli show` and `run`, and `sports1m-predict` on real
video files. Expected values come from the Keras model in this process, on frames
preprocessed here independently (NumPy crops, OpenCV INTER_AREA as the converter).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from export import predict, saved_model, signatures, video_input, video_prediction  # noqa: E402
from sports1m_tf import cli  # noqa: E402
from sports1m_tf.models import frames_needed  # noqa: E402
from tint_model import tinted_frames, train_tint_model  # noqa: E402

MODEL = "slow_fusion"
SIZE = 32
CLASSES = ["archery", "bowling", "curling", "diving", "fencing", "golf", "hurling"]
FRAMES = frames_needed(MODEL)
STORED = 200
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
# SavedModel vs Keras on identical uint8 input; and where the reference frames were
# resized by OpenCV instead of TF (±1 grey level on some pixels).
EXACT, RESIZED = 1e-5, 2e-3
EMBEDDING_SIZE = 256       # fc7 at width 0.0625

# Runs in a fresh process: load, call every signature, replay the warmup file,
# collect the errors of bad inputs.
CHECK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    version_dir, inputs_path, out_dir = sys.argv[1:]
    loaded = tf.saved_model.load(version_dir)
    inputs = np.load(inputs_path, allow_pickle=True)
    calls = {"default_small": ("serving_default", "clips", "small"),
             "default_stored": ("serving_default", "clips", "stored"),
             "default_large": ("serving_default", "clips", "large"),
             "video": ("predict_video", "clips", "stored"),
             "jpeg": ("predict_jpeg", "jpeg_frames", "jpeg"),
             "video_jpeg": ("predict_video_jpeg", "jpeg_frames", "video_jpeg"),
             "video_jpeg_large": ("predict_video_jpeg", "jpeg_frames", "video_jpeg_large"),
             "embed": ("embed_video", "clips", "stored"),
             "embed_jpeg": ("embed_video_jpeg", "jpeg_frames", "video_jpeg")}
    outputs = {}
    for key, (signature, arg, name) in calls.items():
        result = loaded.signatures[signature](**{arg: tf.constant(inputs[name])})
        for out, value in result.items():
            outputs[f"{key}/{out}"] = value.numpy()
    # predict_video on the same JPEG frames decoded by TensorFlow here.
    for key in ("video_jpeg", "video_jpeg_large"):
        decoded = tf.stack([tf.stack([tf.io.decode_jpeg(f) for f in clip])
                            for clip in inputs[key]])
        result = loaded.signatures["predict_video"](clips=decoded)
        for out, value in result.items():
            outputs[f"{key}_decoded/{out}"] = value.numpy()
    decoded = tf.stack([tf.stack([tf.io.decode_jpeg(f) for f in clip])
                        for clip in inputs["video_jpeg"]])
    outputs["embed_jpeg_decoded/clip_embeddings"] = loaded.signatures["embed_video"](
        clips=decoded)["clip_embeddings"].numpy()
    np.savez(out_dir + "/outputs.npz", **outputs)

    small, jpeg, video_jpeg = inputs["small"], inputs["jpeg"], inputs["video_jpeg"]
    not_jpeg, video_not_jpeg = jpeg.copy(), video_jpeg.copy()
    not_jpeg[0, 3] = video_not_jpeg[1, 5] = inputs["png"].item()
    bad = {"rank": ("serving_default", "clips", small[0]),
           "frames": ("serving_default", "clips", small[:, :8]),
           "empty": ("serving_default", "clips", small[:0]),
           "channels": ("serving_default", "clips", small[..., :1]),
           "video_frames": ("predict_video", "clips", small[:, :15]),
           "jpeg_rank": ("predict_jpeg", "jpeg_frames", jpeg[0]),
           "jpeg_empty": ("predict_jpeg", "jpeg_frames", jpeg[:0]),
           "not_jpeg": ("predict_jpeg", "jpeg_frames", not_jpeg),
           "video_jpeg_rank": ("predict_video_jpeg", "jpeg_frames", video_jpeg[0]),
           "video_jpeg_frames": ("predict_video_jpeg", "jpeg_frames", video_jpeg[:, :15]),
           "video_not_jpeg": ("predict_video_jpeg", "jpeg_frames", video_not_jpeg),
           "embed_frames": ("embed_video", "clips", small[:, :15]),
           "embed_not_jpeg": ("embed_video_jpeg", "jpeg_frames", video_not_jpeg)}
    errors = {}
    for key, (signature, arg, value) in bad.items():
        try:
            loaded.signatures[signature](**{arg: tf.constant(value)})
            errors[key] = None
        except tf.errors.InvalidArgumentError as e:
            errors[key] = e.message

    warmup = []
    path = version_dir + "/assets.extra/tf_serving_warmup_requests"
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        feed = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        result = loaded.signatures[request.model_spec.signature_name](**feed)
        warmup.append({"model": request.model_spec.name,
                       "signature": request.model_spec.signature_name,
                       "shapes": {k: list(v.shape) for k, v in result.items()}})
    with open(out_dir + "/report.json", "w") as f:
        json.dump({"errors": errors, "warmup": warmup}, f)
""")

# Runs in a fresh process: the segments of a 5-minute video, read by the decoder in
# this process and then through a decoding process as sports1m-predict reads them,
# with the peak memory after the first segment and at the end.
MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from export import decode_pool, video_input

    def peak_mb(who=resource.RUSAGE_SELF):
        return resource.getrusage(who).ru_maxrss / 1024

    path = sys.argv[1]
    report = {"segments": 0, "clips": 0, "pool_clips": 0}
    for segment in video_input.iter_segments(path, 10.0, 20):
        report["first_mb"] = report.get("first_mb") or peak_mb()
        report["segments"] += 1
        report["clips"] += len(segment.clips)
        report["end_seconds"] = segment.end_seconds
    options = decode_pool.DecodeOptions(max_clips=20, segment_seconds=10.0)
    for message in decode_pool.decode_stream([path], options, workers=1):
        if message.kind == "segment":
            report["pool_clips"] += len(message.segment.clips)
    report["peak_mb"] = peak_mb()
    report["worker_peak_mb"] = peak_mb(resource.RUSAGE_CHILDREN)
    print(json.dumps(report))
""")


def _script(name: str) -> str:
    """A console script of this Python's environment: CI runs `.venv/bin/python -m pytest`
    without activating the venv, so its bin/ is not on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else name


# ----------------------------------------------------------------------------
# Reference preprocessing, written independently of export.signatures.

def stored_frames(clips: np.ndarray) -> np.ndarray:
    """The converter's frames: centre square + cv2.INTER_AREA to 200 (RGB in, RGB out)."""
    out = np.empty(clips.shape[:2] + (STORED, STORED, 3), np.uint8)
    h, w = clips.shape[2:4]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    for b in range(clips.shape[0]):
        for t in range(clips.shape[1]):
            square = clips[b, t, top:top + side, left:left + side]
            out[b, t] = square if side == STORED else cv2.resize(
                square, (STORED, STORED), interpolation=cv2.INTER_AREA)
    return out


def view(clips: np.ndarray, corner: str, flipped: bool) -> np.ndarray:
    """One evaluation view of stored clips [B, T, 200, 200, 3] → [B, T, SIZE, SIZE, 3]."""
    y = x = {"centre": (STORED - SIZE) // 2, "top_left": 0, "bottom_right": STORED - SIZE}[corner]
    out = clips[:, :, y:y + SIZE, x:x + SIZE]
    return out[:, :, :, ::-1] if flipped else out


VIEWS = [("centre", False), ("centre", True), ("top_left", False), ("bottom_right", True)]


def keras_clip_probs(model, clips: np.ndarray) -> np.ndarray:
    """What serving_default should give: the centre view of the model's frames."""
    stored = stored_frames(clips[:, FRAMES])
    return model.predict_on_batch(view(stored, "centre", False))


def keras_video_probs(model, clips: np.ndarray) -> np.ndarray:
    """What predict_video should give: the mean over the 4 views of every clip."""
    stored = stored_frames(clips[:, FRAMES])
    per_view = [model.predict_on_batch(np.ascontiguousarray(view(stored, c, f)))
                for c, f in VIEWS]
    return np.mean(np.concatenate(per_view), axis=0)


# ----------------------------------------------------------------------------
# Fixtures.

def smooth_clips(rng, batch: int, height: int, width: int) -> np.ndarray:
    """Random clips with spatial structure (noise is upsampled), uint8 [B, 16, H, W, 3]."""
    coarse = rng.integers(0, 256, (batch * 16, height // 4 + 1, width // 4 + 1, 3), np.uint8)
    frames = [cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in coarse]
    return np.stack(frames).reshape(batch, 16, height, width, 3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, write_video, sample_videos):
    """Trains and exports the model, writes inputs and videos, runs the fresh processes."""
    tmp = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    # Trained to tell the two tints apart: the segment test needs a model whose labels
    # follow what the video shows.
    model = train_tint_model(MODEL, len(CLASSES), SIZE, rng)

    export_dir = tmp / "serving"
    version_dir = pathlib.Path(saved_model.export_model(model, str(export_dir), "tiny",
                                                        class_names=CLASSES))
    # A run's final model beside its run_config.json: the command takes the names from it.
    run_dir = tmp / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    (run_dir / "run_config.json").write_text(json.dumps({"model": MODEL, "class_names": CLASSES}))

    # A training run as sports1m-train leaves it (contract): run_config.json + ckpt-STEP.
    ckpt_dir = tmp / "ckpt_run"
    ckpt_dir.mkdir()
    (ckpt_dir / "run_config.json").write_text(json.dumps(
        {"model": MODEL, "multires": False, "width": 0.0625, "input_size": SIZE,
         "num_classes": len(CLASSES), "class_names": CLASSES, "dropout": 0.5,
         "clip_frames": 16}))
    step = tf.Variable(2, dtype=tf.int64)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                                   step=step),
                               str(ckpt_dir), max_to_keep=1).save(checkpoint_number=2)

    small = smooth_clips(rng, 2, 48, 64)        # enlarged in the graph
    stored = smooth_clips(rng, 3, STORED, STORED)  # already the stored size
    large = smooth_clips(rng, 2, 240, 320)      # shrunk in the graph
    # JPEG clips of different frame sizes in one batch.
    jpeg_clips = [stored[0], large[1]]
    jpeg = np.array([[tf.io.encode_jpeg(f, quality=95).numpy() for f in clip]
                     for clip in jpeg_clips], dtype=object)
    video_jpeg, video_jpeg_large = (
        np.array([[tf.io.encode_jpeg(f, quality=90).numpy() for f in clip] for clip in clips],
                 dtype=object) for clips in (stored, large))
    png = np.array(tf.io.encode_png(stored[0, 0]).numpy(), dtype=object)
    inputs = tmp / "inputs.npz"
    np.savez(inputs, small=small, stored=stored, large=large, jpeg=jpeg, video_jpeg=video_jpeg,
             video_jpeg_large=video_jpeg_large, png=png)
    np.save(tmp / "cli_input.npy", stored[:2])

    videos = {"moving": write_video(str(tmp / "moving.mp4"), moving_frames(50, 96, 128)),
              "square": write_video(str(tmp / "square.avi"), moving_frames(24, 64, 64),
                                    fourcc="MJPG"),
              "carphone": sample_videos["carphone_pristine"]}
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + rng.bytes(4000))
    video_args = [videos["moving"], str(corrupt), videos["square"], videos["carphone"]]
    # 5 s of the first tint then 5 s of the second, 16 fps: 2-second segments.
    two_tints = write_video(str(tmp / "two_tints.mp4"), np.concatenate(
        [tinted_frames(rng, 80, 48, 64, c)[..., ::-1] for c in (0, 1)]), fps=16.0)
    manifest = tmp / "videos.csv"
    manifest.write_text("path,label\n"
                        f"two_tints.mp4,{CLASSES[0]};{CLASSES[1]}\n"
                        f"missing.mp4,{CLASSES[2]}\n"
                        f"corrupt.mp4,{CLASSES[3]}\n"
                        f"{videos['moving']},{CLASSES[4]}\n")
    wrong = tmp / "wrong.csv"
    wrong.write_text(f"two_tints.mp4,{CLASSES[0]}\nmoving.mp4,snooker\n")
    long_video = write_video(str(tmp / "long.mp4"), np.concatenate(
        [rng.integers(0, 256, (50, 32, 32, 3), np.uint8)] * 150), fps=25.0)   # 5 minutes

    # The fresh processes, concurrently.
    (tmp / "check").mkdir()
    (tmp / "cli_out").mkdir()
    commands = {
        "check": [sys.executable, "-c", CHECK_SCRIPT, str(version_dir), str(inputs),
                  str(tmp / "check")],
        "show": [_script("saved_model_cli"), "show", "--dir", str(version_dir), "--all"],
        "cli_run": [_script("saved_model_cli"), "run", "--dir", str(version_dir), "--tag_set", "serve",
                    "--signature_def", "serving_default",
                    "--inputs", f"clips={tmp / 'cli_input.npy'}",
                    "--outdir", str(tmp / "cli_out"), "--overwrite"],
        "export": [_script("sports1m-export"), f"--keras_model={run_dir / 'model.keras'}",
                   f"--export_dir={tmp / 'cli_serving'}"],
        "export_run": [_script("sports1m-export"), f"--model_dir={ckpt_dir}",
                       f"--export_dir={tmp / 'cli_serving'}", "--name=from_run", "--version=7"],
        "predict": [_script("sports1m-predict"), f"--saved_model={export_dir / 'tiny'}", "--json",
                    "--workers=2", *video_args],
        "manifest": [_script("sports1m-predict"), f"--saved_model={export_dir / 'tiny'}",
                     "--json", f"--manifest={manifest}", "--segment_seconds=2"],
        "all_failed": [_script("sports1m-predict"), f"--saved_model={export_dir / 'tiny'}",
                       str(tmp / "missing.mp4"), str(corrupt)],
        "wrong_classes": [_script("sports1m-predict"), f"--saved_model={export_dir / 'tiny'}",
                          f"--manifest={wrong}"],
        "memory": [sys.executable, "-c", MEMORY_SCRIPT, long_video],
    }
    procs = {k: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=ENV) for k, c in commands.items()}
    results = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        results[key] = subprocess.CompletedProcess(commands[key], proc.returncode, out, err)
    assert results["check"].returncode == 0, results["check"].stderr[-3000:]
    return dict(model=model, tmp=tmp, export_dir=export_dir, version_dir=version_dir,
                inputs=dict(np.load(inputs, allow_pickle=True)), results=results,
                outputs=dict(np.load(tmp / "check" / "outputs.npz", allow_pickle=True)),
                report=json.loads((tmp / "check" / "report.json").read_text()),
                videos=videos, video_args=video_args, corrupt=str(corrupt), manifest=manifest,
                two_tints=two_tints)


def moving_frames(count: int, height: int, width: int) -> np.ndarray:
    """A bright square sliding over a gradient: BGR [count, H, W, 3]."""
    yy, xx = np.mgrid[:height, :width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t] = np.stack([(xx * 255 // width), (yy * 255 // height),
                              np.full_like(xx, 40 + 4 * t)], -1)
        x0 = (t * 3) % (width - 16)
        frames[t, height // 3:height // 3 + 16, x0:x0 + 16] = (250, 250, 250)
    return frames


# ----------------------------------------------------------------------------
# Tests.

def check_outputs(outputs: dict, key: str, expected: np.ndarray, atol: float):
    probs = outputs[f"{key}/probabilities"]
    np.testing.assert_allclose(probs, expected, atol=atol)
    order = np.argsort(-expected, axis=-1)[..., :5]
    scores = outputs[f"{key}/top_k_scores"]
    np.testing.assert_allclose(scores, np.take_along_axis(probs, outputs[f"{key}/top_k_ids"],
                                                          -1), rtol=0, atol=0)
    assert (np.diff(scores, axis=-1) <= 0).all()
    # Ties aside, the ranking is the reference's.
    assert (outputs[f"{key}/top_k_ids"] == order).mean() > 0.8
    names = np.vectorize(lambda b: b.decode())(outputs[f"{key}/top_k_names"])
    np.testing.assert_array_equal(names, np.array(CLASSES)[outputs[f"{key}/top_k_ids"]])


def test_serving_default_matches_keras(exported):
    model, inputs, outputs = exported["model"], exported["inputs"], exported["outputs"]
    stored = keras_clip_probs(model, inputs["stored"])
    check_outputs(outputs, "default_stored", stored, EXACT)
    check_outputs(outputs, "default_small", keras_clip_probs(model, inputs["small"]), RESIZED)
    check_outputs(outputs, "default_large", keras_clip_probs(model, inputs["large"]), RESIZED)
    assert outputs["default_stored/top_k_ids"].shape == (3, 5)
    # A trained model that ignored its input would pass the above: outputs must differ.
    assert np.abs(stored[0] - stored[1]).max() > 1e-3


def test_predict_video_is_mean_of_views(exported):
    model, inputs, outputs = exported["model"], exported["inputs"], exported["outputs"]
    expected = keras_video_probs(model, inputs["stored"])
    assert outputs["video/probabilities"].shape == (1, len(CLASSES))
    check_outputs(outputs, "video", expected[None], EXACT)
    # Not just the centre view of the first clip.
    assert np.abs(expected - keras_clip_probs(model, inputs["stored"][:1])[0]).max() > 1e-4


def test_predict_jpeg_matches_keras(exported):
    model, inputs, outputs = exported["model"], exported["inputs"], exported["outputs"]
    decoded = np.stack([np.stack([tf.io.decode_jpeg(f).numpy() for f in clip])
                        for clip in inputs["jpeg"][:1]])
    expected = [keras_clip_probs(model, decoded)[0]]
    decoded = np.stack([np.stack([tf.io.decode_jpeg(f).numpy() for f in clip])
                        for clip in inputs["jpeg"][1:]])
    expected.append(keras_clip_probs(model, decoded)[0])
    check_outputs(outputs, "jpeg", np.stack(expected), RESIZED)


def test_predict_video_jpeg_equals_predict_video(exported):
    """The JPEG signature on a video's frames = predict_video on the same frames decoded by TF."""
    outputs, model = exported["outputs"], exported["model"]
    for key in ("video_jpeg", "video_jpeg_large"):
        assert outputs[f"{key}/probabilities"].shape == (1, len(CLASSES))
        for out in ("probabilities", "top_k_scores"):
            np.testing.assert_allclose(outputs[f"{key}/{out}"],
                                       outputs[f"{key}_decoded/{out}"], atol=EXACT, rtol=0)
        for out in ("top_k_ids", "top_k_names"):
            np.testing.assert_array_equal(outputs[f"{key}/{out}"], outputs[f"{key}_decoded/{out}"])
    # And both are the video prediction of the Keras model on those decoded frames.
    decoded = np.stack([np.stack([tf.io.decode_jpeg(f).numpy() for f in clip])
                        for clip in exported["inputs"]["video_jpeg"]])
    check_outputs(outputs, "video_jpeg", keras_video_probs(model, decoded)[None], EXACT)


def test_embed_video_is_the_mean_of_its_clips_views(exported):
    """clip_embeddings: each clip's fc7 averaged over its 4 views; video_embedding: their mean."""
    model, inputs, outputs = exported["model"], exported["inputs"], exported["outputs"]
    fc7 = keras.Model(model.input, model.get_layer("fc7").output)
    stored = stored_frames(inputs["stored"][:, FRAMES])
    per_view = np.stack([fc7.predict_on_batch(np.ascontiguousarray(view(stored, c, f)))
                         for c, f in VIEWS])                          # [4, n, d]
    clips = outputs["embed/clip_embeddings"]
    assert clips.shape == (3, EMBEDDING_SIZE)
    np.testing.assert_allclose(clips, per_view.mean(axis=0), atol=EXACT, rtol=0)
    np.testing.assert_allclose(outputs["embed/video_embedding"], clips.mean(axis=0),
                               atol=EXACT, rtol=0)
    # The views differ: the average is not the centre view alone.
    assert np.abs(per_view[0] - clips).max() > 1e-4
    # The JPEG twin equals embed_video on the same frames decoded by TensorFlow.
    np.testing.assert_allclose(outputs["embed_jpeg/clip_embeddings"],
                               outputs["embed_jpeg_decoded/clip_embeddings"], atol=EXACT, rtol=0)


def test_bad_inputs_fail_with_expected_layout(exported):
    errors = exported["report"]["errors"]
    frames = "uint8 [batch, 16, height, width, 3]"
    video = "uint8 [clips of one video, 16, height, width, 3]"
    jpeg = "string [batch, 16] of JPEG-encoded frames"
    video_jpeg = "string [clips of one video, 16] of JPEG-encoded frames"
    expected = {
        "rank": (signatures.RANK_MESSAGE, "serving_default", frames, "[16 48 64 3]"),
        "frames": (signatures.FRAMES_MESSAGE, "serving_default", frames, "[2 8 48 64 3]"),
        "empty": (signatures.EMPTY_MESSAGE, "serving_default", frames, "[0 16 48 64 3]"),
        "channels": (signatures.CHANNELS_MESSAGE, "serving_default", frames, "[2 16 48 64 1]"),
        "video_frames": (signatures.FRAMES_MESSAGE, "predict_video", video, "[2 15 48 64 3]"),
        "jpeg_rank": (signatures.RANK_MESSAGE, "predict_jpeg", jpeg, "[16]"),
        "jpeg_empty": (signatures.EMPTY_MESSAGE, "predict_jpeg", jpeg, "[0 16]"),
        "not_jpeg": (signatures.NOT_JPEG_MESSAGE, "predict_jpeg", jpeg, "[[0 3]]"),
        "video_jpeg_rank": (signatures.RANK_MESSAGE, "predict_video_jpeg", video_jpeg, "[16]"),
        "video_jpeg_frames": (signatures.FRAMES_MESSAGE, "predict_video_jpeg", video_jpeg,
                              "[3 15]"),
        "video_not_jpeg": (signatures.NOT_JPEG_MESSAGE, "predict_video_jpeg", video_jpeg,
                           "[[1 5]]"),
        "embed_frames": (signatures.FRAMES_MESSAGE, "embed_video", video, "[2 15 48 64 3]"),
        "embed_not_jpeg": (signatures.NOT_JPEG_MESSAGE, "embed_video_jpeg", video_jpeg,
                           "[[1 5]]"),
    }
    for key, (message, signature, layout, shape) in expected.items():
        assert errors[key] is not None, f"{key}: no error raised"
        text = message.format(signature=signature, layout=layout, frames=16)
        assert text in errors[key], (key, errors[key])
        assert shape in errors[key], (key, errors[key])


def test_warmup_requests_replay(exported):
    warmup = exported["report"]["warmup"]
    assert [w["signature"] for w in warmup] == ["serving_default", "predict_video",
                                                 "predict_jpeg", "predict_video_jpeg",
                                                 "embed_video", "embed_video_jpeg"]
    assert {w["model"] for w in warmup} == {"tiny"}
    for w in warmup[:4]:
        assert w["shapes"]["probabilities"] == [1, len(CLASSES)]
        assert w["shapes"]["top_k_names"] == [1, 5]
    for w in warmup[4:]:
        assert w["shapes"] == {"video_embedding": [EMBEDDING_SIZE],
                               "clip_embeddings": [1, EMBEDDING_SIZE]}


def test_class_names_asset(exported):
    vocab = exported["version_dir"] / "assets" / saved_model.CLASS_NAMES_FILE
    assert vocab.read_text().split("\n")[:-1] == CLASSES


def test_saved_model_cli(exported):
    show = exported["results"]["show"]
    assert show.returncode == 0, show.stderr[-2000:]
    for name in signatures.SIGNATURE_INPUTS:
        assert f"signature_def['{name}']" in show.stdout
    for key in ("inputs['clips']", "inputs['jpeg_frames']", "outputs['top_k_names']",
                "outputs['probabilities']"):
        assert key in show.stdout
    cli = exported["results"]["cli_run"]
    assert cli.returncode == 0, cli.stderr[-2000:]
    probs = np.load(exported["tmp"] / "cli_out" / "probabilities.npy")
    np.testing.assert_allclose(probs, exported["outputs"]["default_stored/probabilities"][:2],
                               atol=EXACT)


def test_predict_command(exported):
    result = exported["results"]["predict"]
    assert result.returncode == 0, result.stderr[-2000:]  # one video of four failed
    report = {r["video"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert list(report) == exported["video_args"]                  # JSON Lines, in order
    assert "no moov atom" in report[exported["corrupt"]]["error"]
    assert "3 of 4 videos" in result.stderr and "videos/s" in result.stderr
    model = exported["model"]
    for name, path in exported["videos"].items():
        entry = report[path]
        clips = predict.read_clips(path)            # what the command sent (RGB, 200×200)
        assert entry["clips"] == len(clips) and entry["segments"] == []
        expected = keras_video_probs(model, clips)
        assert [p["name"] for p in entry["top_k"]] == [CLASSES[i] for i in
                                                        [p["id"] for p in entry["top_k"]]]
        np.testing.assert_allclose([p["probability"] for p in entry["top_k"]],
                                   expected[[p["id"] for p in entry["top_k"]]], atol=EXACT)
    assert report[exported["videos"]["moving"]]["clips"] == 3      # 50 frames
    assert report[exported["videos"]["square"]]["clips"] == 1      # 24 frames
    text = predict.format_text(report[exported["videos"]["square"]])
    assert text.splitlines()[1].split()[2] == report[exported["videos"]["square"]][
        "top_k"][0]["name"]


def test_model_info_names_the_frames_the_model_reads(exported, tmp_path):
    info = json.loads((exported["version_dir"] / video_prediction.MODEL_INFO_FILE).read_text())
    assert info["frames"] == FRAMES and info["name"] == MODEL and info["input_size"] == SIZE
    assert (info["clip_frames"], info["frame_size"], info["num_classes"]) == (16, STORED, 7)
    assert (info["embedding_layer"], info["embedding_size"]) == ("fc7", EMBEDDING_SIZE)
    assert video_prediction.model_frames(str(exported["version_dir"])) == tuple(FRAMES)
    # A SavedModel exported without the file: every frame is converted.
    assert video_prediction.model_frames(str(tmp_path)) is None


def test_only_the_models_frames_are_converted(exported):
    """The frames a model reads come out as with every frame read; the rest stay black,
    and predict_video's answer does not change."""
    path = exported["videos"]["moving"]
    every = predict.read_clips(path)
    model_only = predict.read_clips(path, frames=FRAMES)
    others = [i for i in range(16) if i not in FRAMES]
    np.testing.assert_array_equal(model_only[:, FRAMES], every[:, FRAMES])
    assert not model_only[:, others].any() and every[:, others].any()
    segments = [(s.clips, t.clips) for s, t in zip(
        video_input.iter_segments(path, 1.0), video_input.iter_segments(path, 1.0, frames=FRAMES))]
    assert len(segments) == 3 and sum(len(a) for a, _ in segments) == 2
    for a, b in segments:
        np.testing.assert_array_equal(b[:, FRAMES], a[:, FRAMES])
    predict_video = tf.saved_model.load(str(exported["version_dir"])).signatures["predict_video"]
    np.testing.assert_array_equal(predict_video(clips=tf.constant(every))["probabilities"],
                                  predict_video(clips=tf.constant(model_only))["probabilities"])
    with pytest.raises(ValueError, match="offsets in 0..15"):
        predict.read_clips(path, frames=[3, 16])


def test_read_clips_errors(tmp_path, write_video):
    short = write_video(str(tmp_path / "short.mp4"), moving_frames(10, 32, 32))
    with pytest.raises(predict.VideoError, match="too short: 10 frames"):
        predict.read_clips(short)
    with pytest.raises(predict.VideoError, match="no such file"):
        predict.read_clips(str(tmp_path / "missing.mp4"))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(predict.VideoError, match="empty file"):
        predict.read_clips(str(tmp_path / "empty.mp4"))
    assert predict.clip_starts(50, 20) == [0, 17, 34]
    assert predict.clip_starts(1000, 20)[-1] == 1000 - 16


def test_export_command(exported):
    result, root = exported["results"]["export"], exported["tmp"] / "cli_serving"
    assert result.returncode == 0, result.stderr[-3000:]
    version_dir = root / MODEL / "1"                  # named after the model by default
    assert result.stdout.strip().splitlines()[-1] == str(version_dir)
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / saved_model.WARMUP_FILE).is_file()
    # Class names from the run's run_config.json beside model.keras.
    assert (version_dir / "assets" / "class_names.txt").read_text().split("\n")[:-1] == CLASSES
    kernel = exported["model"].get_layer("predictions").kernel.numpy()
    np.testing.assert_array_equal(exported_kernel(version_dir, kernel.shape), kernel)
    # Absolute base paths by default.
    assert f'base_path: "{root / MODEL}"' in (root / "models.config").read_text()


def exported_kernel(version_dir, shape) -> np.ndarray:
    """The variable of `shape` saved in a SavedModel (here: the classifier kernel).

    The export archive lists each variable under two paths; both must hold it.
    """
    reader = tf.train.load_checkpoint(str(version_dir / "variables" / "variables"))
    found = [reader.get_tensor(k) for k, s in reader.get_variable_to_shape_map().items()
             if tuple(s) == tuple(shape)]
    assert found and all(np.array_equal(f, found[0]) for f in found), shape
    return found[0]


def test_export_command_from_training_run(exported):
    result, root = exported["results"]["export_run"], exported["tmp"] / "cli_serving"
    assert result.returncode == 0, result.stderr[-3000:]
    version_dir = root / "from_run" / "7"
    assert (version_dir / "assets" / "class_names.txt").read_text().split("\n")[:-1] == CLASSES
    # The checkpoint's trained weights, not a fresh initialisation.
    kernel = exported["model"].get_layer("predictions").kernel.numpy()
    np.testing.assert_array_equal(exported_kernel(version_dir, kernel.shape), kernel)


def test_versions_and_models_config(exported):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    export_dir, model = exported["export_dir"], exported["model"]
    names = [n.upper() for n in CLASSES]
    second = saved_model.export_model(model, str(export_dir), "tiny", class_names=names,
                                      warmup=False)
    assert second == str(export_dir / "tiny" / "2")              # the next free integer
    assert (export_dir / "tiny" / "2" / "assets" / "class_names.txt").read_text().split() == names
    with pytest.raises(FileExistsError, match="already exists"):
        saved_model.export_model(model, str(export_dir), "tiny", 1, class_names=CLASSES)
    with pytest.raises(ValueError, match="3 class names for a model with 7 classes"):
        saved_model.export_model(model, str(export_dir), "other", class_names=CLASSES[:3])
    saved_model.export_model(model, str(export_dir), "other", 5, class_names=CLASSES,
                             warmup=False, serving_root="/models")
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((export_dir / "models.config").read_text(), config)
    entries = {c.name: (c.base_path, c.model_platform)
               for c in config.model_config_list.config}
    assert entries == {"other": ("/models/other", "tensorflow"),
                       "tiny": ("/models/tiny", "tensorflow")}
    assert not any(p.name.startswith(".tmp") for p in (export_dir / "tiny").iterdir())


# ----------------------------------------------------------------------------
# sports1m-predict: segments along a video, many files, manifests, memory.

def manifest_report(exported) -> dict:
    result = exported["results"]["manifest"]
    assert result.returncode == 0, result.stderr[-3000:]   # 2 of 4 failed: not all
    return {os.path.basename(r["video"]): r for r in map(json.loads, result.stdout.splitlines())}


def test_segment_labels_follow_the_video(exported):
    """5 s of one tint then 5 s of the other: 2-second segments switch class at the boundary."""
    entry = manifest_report(exported)["two_tints.mp4"]
    segments = entry["segments"]
    assert [(s["start_seconds"], s["end_seconds"]) for s in segments] == [
        (0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert [s["clips"] for s in segments] == [2] * 5 and entry["clips"] == 10
    top = [s["top_k"][0]["name"] for s in segments]
    first, second = CLASSES[0], CLASSES[1]
    # The boundary (5 s) lies inside the third segment: either label is right there.
    assert top[:2] == [first, first] and top[3:] == [second, second], top
    assert top[2] in (first, second)
    # The video's top 2 are both tints, and its probabilities the mean of the segments'.
    assert {p["name"] for p in entry["top_k"][:2]} == {first, second}
    assert entry["labels"] == [first, second]
    assert sum(p["probability"] for p in entry["top_k"]) <= 1 + 1e-5
    text = predict.format_text(entry)
    assert "00:04-00:06" in text and "00:08-00:10" in text


def test_manifest_with_missing_and_corrupt_files(exported):
    report = manifest_report(exported)
    assert list(report) == ["two_tints.mp4", "missing.mp4", "corrupt.mp4", "moving.mp4"]
    assert report["missing.mp4"]["error"] == "no such file"
    assert "no moov atom" in report["corrupt.mp4"]["error"]
    moving = report["moving.mp4"]      # 50 frames at 24 fps: one 2 s segment, then 2 frames
    assert [s["clips"] for s in moving["segments"]] == [3, 0]
    assert moving["segments"][1]["top_k"] == [] and moving["clips"] == 3
    stderr = exported["results"]["manifest"].stderr
    assert "2 of 4 videos" in stderr and "the model waited for decoding" in stderr
    assert "s of it loading the model" in stderr
    # Progress inside a video: the bar names the file and how far the model has got.
    assert "two_tints.mp4 00:10" in stderr and "moving.mp4 00:02" in stderr


def test_every_file_failed_exits_1(exported):
    result = exported["results"]["all_failed"]
    assert result.returncode == 1, result.stderr[-2000:]
    assert "missing.mp4: ERROR: no such file" in result.stderr
    assert "2 of 2 videos failed" in result.stderr


def test_manifest_classes_must_be_the_models(exported):
    result = exported["results"]["wrong_classes"]
    assert result.returncode == 1
    assert "class names differ from the model's" in result.stderr
    assert "only the manifest has 'snooker'" in result.stderr
    with pytest.raises(cli.UserError, match="only the model has 'golf', 'hurling'"):
        predict.check_manifest_classes(CLASSES[:5], CLASSES, exact=True, source="x")
    with pytest.raises(cli.UserError, match=r"the same classes in another order: '"):
        predict.check_manifest_classes(CLASSES[::-1], CLASSES, exact=True, source="x")
    predict.check_manifest_classes(CLASSES[2:4], CLASSES, exact=False, source="x")


def test_plain_manifest(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("# videos\na.mp4\n/abs/b.avi\n\n")
    paths, truths, classes, problems = predict.read_manifest(str(listed))
    assert paths == [str(tmp_path / "a.mp4"), "/abs/b.avi"]
    assert (truths, classes, problems) == ({}, None, [])


def test_memory_bounded_on_a_long_video(exported):
    result = exported["results"]["memory"]
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["segments"] == 30 and report["end_seconds"] == 300
    assert report["clips"] == report["pool_clips"] == 30 * 15
    # All 450 clips at once would be 830 MB; one segment's clips are 29 MB.
    assert report["peak_mb"] - report["first_mb"] < 100, report
    assert report["worker_peak_mb"] < 400, report


def test_mmss():
    assert [predict.mmss(t) for t in (0, 59.9, 61, 3725)] == ["00:00", "00:59", "01:01",
                                                              "62:05"]
