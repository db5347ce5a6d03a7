"""sports1m-export --format=tflite and sports1m-predict --tflite, on real video clips.

The float32 file against the SavedModel's `serving_default`, the int8 file's top-1
agreement and size, the evaluation views rebuilt for a centre-cropping file, a
converter failure naming its op, and `sports1m-predict --tflite` end to end in a
fresh process against `--saved_model` on the same video.
"""
from __future__ import annotations

import json
import os

import fresh_processes
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed (pip install '.[lite]')")

from export import tflite_export, tflite_model, video_input  # noqa: E402
from sports1m_tf.data import VIEWS, eval_views  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = ("bigbuckbunny", "bikes", "carphone_pristine")
FLOAT_EXACT = 1e-4


@pytest.fixture(scope="module")
def lite(tmp_path_factory, small_run, sample_videos):
    """float32 and float16 files exported here, int8 by the command (calibrated on real
    videos) while `sports1m-predict` runs both models on a real video in fresh processes."""
    tmp = tmp_path_factory.mktemp("lite")
    model, classes = small_run["model"], small_run["classes"]
    export_dir = str(tmp / "lite")
    paths = {q: tflite_export.export_tflite(model, export_dir, f"small_{q}", class_names=classes,
                                            quantize=q)
             for q in ("none", "float16")}
    video = sample_videos["bikes"]
    commands = {
        "int8": fresh_processes.command("sports1m-export", "export.export_main",
                         f"--keras_model={small_run['model_dir']}/model.keras",
                         f"--export_dir={export_dir}", "--name=small_int8", "--format=tflite",
                         "--quantize=int8", "--representative_clips=24",
                         "--representative_files=" + ",".join(sample_videos[n] for n in SAMPLES)),
        "predict_lite": fresh_processes.command("sports1m-predict", "export.predict",
                                 f"--tflite={paths['none']}/model.tflite", "--json", video),
        "predict_saved": fresh_processes.command("sports1m-predict", "export.predict",
                                  f"--saved_model={small_run['version_dir']}", "--json", video),
    }
    results = fresh_processes.run_together(commands, cwd=ROOT)
    for key, result in results.items():
        assert result.returncode == 0, (key, result.stderr[-3000:])
    paths["int8"] = results["int8"].stdout.strip().splitlines()[-1]
    clips = np.concatenate([video_input.read_clips(sample_videos[n], 10) for n in SAMPLES])
    serving = tf.saved_model.load(small_run["version_dir"]).signatures["serving_default"]
    reference = serving(clips=tf.constant(clips))["probabilities"].numpy()
    return dict(paths=paths, results=results, clips=clips, reference=reference, video=video,
                small_run=small_run)


def lite_outputs(path: str, clips: np.ndarray) -> dict[str, np.ndarray]:
    model = tflite_model.TFLiteVideoModel(os.path.join(path, "model.tflite"), threads=1)
    outputs = [model.clip_outputs(clip) for clip in clips]
    return {key: np.stack([o[key] for o in outputs]) for key in outputs[0]}


def test_float32_file_equals_serving_default(lite):
    out = lite_outputs(lite["paths"]["none"], lite["clips"])
    assert out["probabilities"].shape == lite["reference"].shape == (len(lite["clips"]), 7)
    np.testing.assert_allclose(out["probabilities"], lite["reference"], atol=FLOAT_EXACT, rtol=0)
    # The second output: fc7 of the centre view, as the Keras model computes it.
    import keras
    model = lite["small_run"]["model"]
    fc7 = keras.Model(model.input, model.get_layer("fc7").output)
    frames = lite["clips"][:, tflite_model_frames(lite)]
    offset = (200 - 32) // 2
    centre = frames[:, :, offset:offset + 32, offset:offset + 32]
    np.testing.assert_allclose(out["embedding"], fc7.predict_on_batch(centre), atol=FLOAT_EXACT)


def tflite_model_frames(lite) -> list[int]:
    with open(os.path.join(lite["paths"]["none"], "model_info.json")) as f:
        return json.load(f)["frames"]


def test_int8_file_agrees_on_top1_and_is_small(lite):
    sizes = {q: os.path.getsize(os.path.join(p, "model.tflite")) for q, p in lite["paths"].items()}
    assert sizes["int8"] <= 0.35 * sizes["none"], sizes
    assert sizes["float16"] < 0.6 * sizes["none"], sizes
    reference_top1 = lite["reference"].argmax(axis=1)
    for quantize, minimum in (("int8", 0.9), ("float16", 0.97)):
        out = lite_outputs(lite["paths"][quantize], lite["clips"])
        agreement = np.mean(out["probabilities"].argmax(axis=1) == reference_top1)
        assert agreement >= minimum, (quantize, agreement)
    with open(os.path.join(lite["paths"]["int8"], "model_info.json")) as f:
        info = json.load(f)
    assert (info["format"], info["quantize"], info["frame_size"]) == ("tflite", "int8", 200)
    assert (info["embedding_layer"], info["embedding_size"]) == ("fc7", 256)
    with open(os.path.join(lite["paths"]["int8"], "class_names.txt")) as f:
        assert f.read().split() == lite["small_run"]["classes"]


def test_predict_tflite_matches_saved_model(lite):
    lite_result = json.loads(lite["results"]["predict_lite"].stdout.splitlines()[0])
    saved_result = json.loads(lite["results"]["predict_saved"].stdout.splitlines()[0])
    assert lite_result["video"] == lite["video"] and lite_result["clips"] == 15
    assert [p["id"] for p in lite_result["top_k"]] == [p["id"] for p in saved_result["top_k"]]
    np.testing.assert_allclose([p["probability"] for p in lite_result["top_k"]],
                               [p["probability"] for p in saved_result["top_k"]],
                               atol=FLOAT_EXACT)
    assert "1 of 1 videos" in lite["results"]["predict_lite"].stderr


@pytest.mark.parametrize("stored", [48, 47])
def test_views_rebuilt_for_a_centre_cropping_file(stored):
    """Each evaluation view lands on the centre crop (even and odd margins)."""
    crop = 32
    clip = np.random.default_rng(stored).integers(0, 256, (2, stored, stored, 3), np.uint8)
    expected = eval_views(tf.constant(clip), crop).numpy()
    offset = (stored - crop) // 2
    for i, view in enumerate(VIEWS):
        moved = tflite_model.as_centre_view(clip, view, crop)
        np.testing.assert_array_equal(moved[:, offset:offset + crop, offset:offset + crop],
                                      expected[i])


def test_conversion_failure_names_the_op():
    @tf.function(input_signature=[tf.TensorSpec([2], tf.string)])
    def hashed(words):
        return tf.strings.to_hash_bucket_fast(words, 10)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([hashed.get_concrete_function()])
    with pytest.raises(Exception) as raised:
        converter.convert()
    error = tflite_export.conversion_error(raised.value, "none")
    assert "ops that do not convert: tf.StringToHashBucketFast" in str(error)
    with pytest.raises(ValueError, match="needs representative clips"):
        tflite_export.convert(None, "int8")


def test_representative_clips_from_validation_records(tmp_path, sample_videos):
    """int8 calibrates on the run's validation records by default: stored-size clips, the
    model's frames decoded there and the others black."""
    from export import representative
    from tfrecord_tools.convert import convert

    manifest = tmp_path / "val.csv"
    manifest.write_text(f"{sample_videos['bikes']},a\n{sample_videos['carphone_pristine']},b\n")
    convert(str(manifest), output_dir=str(tmp_path / "records"), split="val", num_shards=1,
            clips_per_video=3, frame_size=64, workers=1, progress=False)
    files = [str(p) for p in (tmp_path / "records").glob("val-*")]
    frames = [3, 7, 12]
    clips = representative.clips_from_records(files, frames, 64, count=4)
    assert len(clips) == 4 and all(c.shape == (1, 16, 64, 64, 3) for c in clips)
    others = [i for i in range(16) if i not in frames]
    assert all(c[:, frames].std() > 5 and not c[:, others].any() for c in clips)
    with pytest.raises(ValueError, match="hold 64x64 frames, the model 200x200"):
        representative.clips_from_records(files, frames, 200, count=1)
