"""sports1m-train on one device, in this process: videos → converter → records → tiny models.

Learning, TensorBoard contents, the NaN stop, the plateau and cosine schedules
across a resume, and the run folder that evaluation and export rely on.
"""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sports1m_tf import run_folder, synthetic
from sports1m_tf.training import summaries, train
from tfrecord_tools.convert import convert

# A task a 1/8-width single-frame net learns in ~150 steps: four appearance
# classes (shape + colour), 32-pixel crops of 40-pixel frames. No dropout: the
# point is a quick, reliable signal, not the paper's regularisation.
SMALL = dict(model="single_frame", width=0.125, input_size=32, batch_size=16, dropout=0.0)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Clip records converted from real synthetic video files: train and val shards."""
    root = tmp_path_factory.mktemp("train_records")
    videos = synthetic.make_dataset(str(root / "videos"), classes="appearance",
                                    splits={"train": 16, "val": 4}, num_frames=32, size=48,
                                    seed=0)
    out = str(root / "records")
    for split in ("train", "val"):
        converted = convert(videos["manifests"][split], output_dir=out, split=split,
                            num_shards=2, clips_per_video=2, frame_size=40, progress=False)
    return {"train": [os.path.join(out, "train-*")], "val": [os.path.join(out, "val-*")],
            "classes": converted["classes"]}


def _motion_study():
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "study_runs.py")
    spec = importlib.util.spec_from_file_location("study_runs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tensor_events(folder):
    events = EventAccumulator(folder, size_guidance={"tensors": 0})
    events.Reload()
    return {tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
            for tag in events.Tags()["tensors"]}


def test_one_device_learns_and_writes_its_run_folder(records, tmp_path):
    model_dir = str(tmp_path / "run")
    config = train.make_config(**SMALL, train_files=records["train"],
                               val_files=records["val"], model_dir=model_dir, train_steps=160,
                               eval_every=40, checkpoint_every=80, log_every=40,
                               learning_rate=0.01, strategy="one_device", seed=0)
    result = train.train(config)
    assert result["step"] == 160

    scalars = _tensor_events(os.path.join(model_dir, "train"))
    validation = _tensor_events(os.path.join(model_dir, "validation"))
    losses = [float(v) for _, v in scalars["loss"]]
    hits = [float(v) for _, v in validation["clip_hit_at_1"]]
    assert [s for s, _ in scalars["loss"]] == [40, 80, 120, 160]
    assert losses[-1] < losses[0] - 0.3, losses
    assert [s for s, _ in validation["clip_hit_at_1"]] == [40, 80, 120, 160]
    assert hits[-1] >= hits[0] + 0.15 and max(hits) >= 0.5, hits   # chance: 0.25
    for tag in ("learning_rate", "clips_per_second", "step_time_seconds"):
        assert len(scalars[tag]) == 4, tag
    assert all(float(v) > 0 for _, v in scalars["clips_per_second"])
    assert len(validation["loss"]) == 4

    # Images: [width, height, png] entries, decodable, the expected sizes.
    _, image = scalars["filters/conv1"][-1]
    grid = tf.io.decode_png(image[2]).numpy()
    kernel = summaries.conv1_kernels(result["model"])["conv1"]
    expected = summaries.filter_grid(kernel)
    assert grid.shape == expected.shape and (int(image[0]), int(image[1])) == (
        expected.shape[1], expected.shape[0])
    _, confusion = validation["confusion_matrix"][-1]
    assert tf.io.decode_png(confusion[2]).shape[:2] == (512, 512)   # 4 classes x 128 px

    # The run folder: config with class names, checkpoints, final model.
    run_config = run_folder.load_run_config(model_dir)
    assert run_config["class_names"] == records["classes"]
    assert run_config["num_classes"] == 4 and run_config["input_size"] == 32
    assert run_folder.checkpoint_steps(model_dir) == [80, 160]
    frames = np.random.default_rng(0).integers(0, 255, (2, 1, 32, 32, 3), dtype=np.uint8)
    want = result["model"](frames, training=False).numpy()
    restored = run_folder.restore_model(model_dir)
    np.testing.assert_allclose(restored(frames, training=False).numpy(), want, atol=1e-6)
    loaded = keras.saving.load_model(result["model_path"], compile=False)
    np.testing.assert_allclose(loaded(frames, training=False).numpy(), want, atol=1e-6)
    early = run_folder.restore_model(model_dir, step=80)
    assert not np.allclose(early(frames, training=False).numpy(), want)


def test_nan_loss_stops_after_saving_the_last_good_state(records, tmp_path):
    model_dir = str(tmp_path / "nan")
    config = train.make_config(**SMALL, train_files=records["train"], model_dir=model_dir,
                               train_steps=50, checkpoint_every=1000, learning_rate=1e6,
                               strategy="one_device")
    with pytest.raises(FloatingPointError, match=r"not finite at step (\d+)") as error:
        train.train(config)
    bad_step = int(error.value.args[0].split("at step ")[1].split()[0])
    assert run_folder.checkpoint_steps(model_dir) == [bad_step - 1]
    model = run_folder.restore_model(model_dir)
    assert all(np.isfinite(w.numpy()).all() for w in model.weights)


def test_plateau_lowers_the_learning_rate_and_its_state_survives_a_resume(records, tmp_path):
    # A learning rate too small to change any prediction: Hit@1 never improves.
    common = dict(**SMALL, train_files=records["train"], val_files=records["val"],
                  model_dir=str(tmp_path / "plateau"), eval_every=1, checkpoint_every=1,
                  val_batches=1, learning_rate=1e-9, plateau_patience=2,
                  min_learning_rate=0.0, strategy="one_device")
    # Validations at steps 1 (best), 2 (wait 1), 3 (wait 2: lr x0.1), 4 (wait 1).
    first = train.train(train.make_config(**common, train_steps=4))
    assert first["learning_rate"] == pytest.approx(1e-10)
    # Step 5 is the second validation without a gain only if the wait survived.
    second = train.train(train.make_config(**common, train_steps=5))
    assert second["step"] == 5
    assert second["learning_rate"] == pytest.approx(1e-11)


def test_cosine_schedule_follows_its_curve_ignores_plateaus_and_resumes_on_it(records, tmp_path):
    import math
    model_dir = str(tmp_path / "cosine")
    # Validation never improves (tiny steps) and the patience is 1: the plateau rule
    # would cut the learning rate at every validation; cosine must not.
    config = train.make_config(**SMALL, train_files=records["train"], val_files=records["val"],
                               model_dir=model_dir, train_steps=8, eval_every=1,
                               checkpoint_every=4, log_every=1, val_batches=1,
                               learning_rate=1e-3, min_learning_rate=1e-5, plateau_patience=1,
                               lr_schedule="cosine", optimizer="adam", strategy="one_device")

    def curve(step):
        return 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * step / 8))

    result = train.train(config)
    assert result["learning_rate"] == pytest.approx(1e-5, rel=1e-4)
    logged = _tensor_events(os.path.join(model_dir, "train"))["learning_rate"]
    assert [s for s, _ in logged] == list(range(1, 9))
    for step, value in logged:
        assert float(value) == pytest.approx(curve(step), rel=1e-4), step
    # Killed after checkpoint 4: the resumed run goes on along the same curve.
    for name in tf.io.gfile.glob(os.path.join(model_dir, "ckpt-8*")):
        tf.io.gfile.remove(name)
    tf.compat.v1.train.update_checkpoint_state(model_dir, os.path.join(model_dir, "ckpt-4"))
    train.train(config)
    again = [(s, float(v)) for s, v in
             _tensor_events(os.path.join(model_dir, "train"))["learning_rate"]]
    resumed = [(s, v) for s, v in again[8:]]
    assert [s for s, _ in resumed] == [5, 6, 7, 8]
    for step, value in resumed:
        assert value == pytest.approx(curve(step), rel=1e-4), step


def test_best_model_holds_the_best_validation_weights_across_a_resume(records, tmp_path):
    import sports1m_tf.models  # noqa: F401  (custom layers for loading)
    model_dir = str(tmp_path / "best")
    common = dict(**SMALL, train_files=records["train"], val_files=records["val"],
                  model_dir=model_dir, eval_every=10, checkpoint_every=10, log_every=10,
                  keep_checkpoints=20, learning_rate=0.01, strategy="one_device", seed=0)

    def check(expected_steps):
        logged = _tensor_events(os.path.join(model_dir, "validation"))["clip_hit_at_1"]
        steps, hits = [s for s, _ in logged], [float(v) for _, v in logged]
        assert steps == expected_steps
        best = int(np.argmax(hits))  # the first of equal bests: only a gain replaces it
        info = run_folder.load_best_info(model_dir)
        assert info["step"] == steps[best]
        assert info["val_clip_hit_at_1"] == pytest.approx(hits[best])
        saved = keras.saving.load_model(os.path.join(model_dir, run_folder.BEST_MODEL_FILE),
                                        compile=False)
        at_step = run_folder.restore_model(model_dir, steps[best])
        for a, b in zip(saved.weights, at_step.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        return info

    result = train.train(train.make_config(**common, train_steps=40))
    first = check([10, 20, 30, 40])
    assert result["best_step"] == first["step"]
    assert result["best_model_path"] == os.path.join(model_dir, run_folder.BEST_MODEL_FILE)
    from sports1m_tf.evaluation import evaluate
    member, = evaluate.load_members(keras_models=[result["best_model_path"]])
    assert member.identity["step"] == first["step"]  # not the run's latest checkpoint
    # The motion study's choice: best_model.keras, or for a run from before it was
    # kept, the best of the kept checkpoints (here with step 10's dropped).
    study = _motion_study()
    chosen = study.select_by_validation(model_dir)
    assert chosen["keras_model"] == result["best_model_path"] and chosen["step"] == first["step"]
    info_path = os.path.join(model_dir, run_folder.BEST_MODEL_INFO)
    os.rename(info_path, info_path + ".away")
    step_10 = tf.io.gfile.glob(os.path.join(model_dir, "ckpt-10.*"))
    for name in step_10:
        os.rename(name, name + ".away")
    hits = {s: float(v) for s, v in
            _tensor_events(os.path.join(model_dir, "validation"))["clip_hit_at_1"]}
    chosen = study.select_by_validation(model_dir)
    assert chosen["step"] == max([20, 30, 40], key=lambda s: hits[s])
    assert chosen["checkpoint"] == os.path.join(model_dir, f"ckpt-{chosen['step']}")
    assert chosen["source"] == "best of the kept checkpoints, steps 20-40"
    for name in [info_path] + step_10:
        os.rename(name + ".away", name)
    # Extended by a resume: only a better validation replaces the kept model.
    result = train.train(train.make_config(**common, train_steps=120))
    second = check([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120])
    assert second["val_clip_hit_at_1"] >= first["val_clip_hit_at_1"]
    assert second["val_clip_hit_at_1"] > 0.5  # it learnt; the kept model is not step 10's
    # A fresh run in the folder (no checkpoint) does not inherit the old best.
    for name in tf.io.gfile.glob(os.path.join(model_dir, "ckpt-*")) + \
            [os.path.join(model_dir, "checkpoint")]:
        tf.io.gfile.remove(name)
    train.train(train.make_config(**{**common, "eval_every": 1000}, train_steps=2))
    assert run_folder.load_best_info(model_dir)["step"] == 2


def test_resume_refuses_a_different_model(records, tmp_path):
    common = dict(train_files=records["train"], model_dir=str(tmp_path / "run"),
                  train_steps=1, input_size=32, batch_size=4, strategy="one_device")
    train.train(train.make_config(model="single_frame", width=0.0625, **common))
    with pytest.raises(ValueError, match="another model"):
        train.train(train.make_config(model="single_frame", width=0.125,
                                      **{**common, "train_steps": 2}))


def test_filter_grid_shows_each_time_slice():
    extent, filters = 4, 6
    kernel = np.random.default_rng(0).normal(size=(11, 11, extent * 3, filters))
    grid = summaries.filter_grid(kernel, columns=3)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * 12 + 1, 3 * extent * 12 + 1, 3)
    # Filter 0, time slice 1 sits at column offset 1 + 12; scaled per filter to [0, 255].
    tile = kernel[:, :, 3:6, 0]
    low, high = kernel[..., 0].min(), kernel[..., 0].max()
    np.testing.assert_array_equal(grid[1:12, 13:24],
                                  np.round((tile - low) / (high - low) * 255).astype(np.uint8))


def test_make_config_rejects_unknown_settings():
    with pytest.raises(TypeError, match="learnign_rate"):
        train.make_config(learnign_rate=0.1)
    config = train.make_config(model_dir="x", train_files="a*")
    assert config.train_files == ["a*"] and config.learning_rate == 1e-3
    assert config.batch_size == 32 and config.momentum == 0.9 and config.weight_decay == 5e-4
    assert json.loads(json.dumps(train.dataclasses.asdict(config)))["flip"] is True


def test_adam_with_scaled_input_learns_and_its_run_restores(records, tmp_path):
    model_dir = str(tmp_path / "adam")
    config = train.make_config(**SMALL, train_files=records["train"], val_files=records["val"],
                               model_dir=model_dir, train_steps=120, eval_every=40,
                               checkpoint_every=60, log_every=40, optimizer="adam",
                               learning_rate=1e-3, input_scale=1 / 64, shuffle_buffer=64,
                               kernel_init="he_normal", strategy="one_device", seed=0)
    result = train.train(config)
    assert isinstance(result["model"], keras.Model) and result["step"] == 120
    hits = [float(v) for _, v in _tensor_events(
        os.path.join(model_dir, "validation"))["clip_hit_at_1"]]
    assert max(hits) >= 0.6, hits   # chance: 0.25
    run_config = run_folder.load_run_config(model_dir)
    assert run_config["optimizer"] == "adam" and run_config["input_scale"] == 1 / 64
    assert run_config["shuffle_buffer"] == 64 and run_config["kernel_init"] == "he_normal"
    frames = np.random.default_rng(0).integers(0, 255, (2, 1, 32, 32, 3), dtype=np.uint8)
    restored = run_folder.restore_model(model_dir)
    np.testing.assert_allclose(restored(frames, training=False).numpy(),
                               result["model"](frames, training=False).numpy(), atol=1e-6)
    # Resumed with another --kernel_init: the checkpoint's weights win, and the run
    # folder still says how the run was initialised.
    train.train(dataclasses_replace(config, kernel_init="glorot_uniform", train_steps=122))
    assert run_folder.load_run_config(model_dir)["kernel_init"] == "he_normal"
    # The checkpoint holds Adam's slots: resuming it as an SGD run is refused by name.
    with pytest.raises(ValueError, match="optimizer"):
        train.train(dataclasses_replace(config, optimizer="sgd", train_steps=130))


def dataclasses_replace(config, **changes):
    return train.dataclasses.replace(config, **changes)
