"""The paper's CNNs: shapes, parameter counts, weight sharing, temporal connectivity, LRN,
serialisation, mixed precision and trainability."""
import numpy as np
import pytest
import keras
import tensorflow as tf

from sports1m_tf.models import (MODEL_NAMES, LocalResponseNorm, build_model, describe,
                                frames_needed)

VARIANTS = [(n, False) for n in MODEL_NAMES] + [
    (n, True) for n in ("single_frame", "early_fusion", "late_fusion", "slow_fusion")]


def _expected_params(name: str, multires: bool, num_classes: int = 487) -> int:
    """Independent count from the paper's layer shapes, not from Keras."""
    extents = {"early_fusion": (10, 1, 1, 1, 1), "slow_fusion": (4, 2, 2, 1, 1)}.get(
        name, (1, 1, 1, 1, 1))
    channels = [3, 96, 256, 384, 384, 256]
    kernels = [11, 5, 3, 3, 3]
    conv = sum(k * k * cin * t * cout + cout
               for k, cin, cout, t in zip(kernels, channels[:-1], channels[1:], extents))
    streams = 2 if multires else 1
    # Time steps left at fc6: late fusion keeps its 2 towers; the others end at 1.
    towers = 2 if name == "late_fusion" else 1
    fc_in = streams * towers * 7 * 7 * 256
    fc = (fc_in * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * num_classes + num_classes)
    return streams * conv + fc


@pytest.mark.parametrize("name,multires", VARIANTS)
def test_full_size_shapes_and_parameter_count(name, multires):
    model = build_model(name, multires=multires)
    size = 178 if multires or name in ("fovea_only", "context_only") else 170
    assert model.input_shape == (None, len(frames_needed(name)), size, size, 3)
    assert model.input.dtype == "uint8"
    assert model.output_shape == (None, 487)
    # The last conv block, as fc6 sees it, is 7×7×256 per stream.
    merges = [l for l in model.layers if l.name.endswith("merge_time")]
    assert len(merges) == (2 if multires else 1)
    for merge in merges:
        assert tuple(merge.input.shape[1:]) == (7, 7, 256)
    print(f"{model.name}: {model.count_params():,} parameters")
    assert model.count_params() == _expected_params(name, multires)


def test_frames_needed():
    assert frames_needed("single_frame") == [8]
    assert frames_needed("early_fusion") == list(range(3, 13))
    assert frames_needed("slow_fusion") == list(range(3, 13))
    assert frames_needed("late_fusion") == [0, 15]
    with pytest.raises(ValueError, match="unknown model"):
        frames_needed("c3d")


def _tiny(name, multires=False, **kwargs):
    kwargs.setdefault("width", 0.125)
    kwargs.setdefault("input_size", 64)
    return build_model(name, 5, multires=multires, **kwargs)


def test_late_fusion_towers_share_weights():
    model = _tiny("late_fusion")
    conv1 = [v for v in model.weights if "conv1" in v.path and "kernel" in v.path]
    assert len(conv1) == 1
    # Swapping the two frames changes only the order of the two towers' features at fc6.
    merge = model.get_layer("full_merge_time")
    features = keras.Model(model.input, merge.output)
    clip = np.random.default_rng(0).integers(0, 256, (1, 2, 64, 64, 3), dtype=np.uint8)
    a = features(clip).numpy().reshape(2, -1)
    b = features(clip[:, ::-1]).numpy().reshape(2, -1)
    np.testing.assert_allclose(a, b[::-1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[0], a[1])


def test_multires_streams_do_not_share_weights():
    model = _tiny("slow_fusion", multires=True)
    fovea = model.get_layer("fovea_conv1").kernel
    context = model.get_layer("context_conv1").kernel
    assert fovea is not context
    assert not np.allclose(fovea.numpy(), context.numpy())
    assert {l.name for l in model.layers} >= {"fovea_crop", "context_downsample"}


@pytest.mark.parametrize("name,extent,stride,steps_out", [
    ("slow_fusion", 4, 2, 4), ("early_fusion", 10, 1, 1)])
def test_temporal_conv1_equals_conv3d_valid_in_time(name, extent, stride, steps_out):
    model = _tiny(name)
    conv1 = model.get_layer("conv1")
    inputs = keras.Model(model.input, model.get_layer("time_to_batch").output)
    clip = np.random.default_rng(1).integers(0, 256, (2, 10, 64, 64, 3), dtype=np.uint8)
    ours = keras.Model(model.input, conv1.output)(clip).numpy()
    kernel, bias = conv1.get_weights()
    kernel3d = kernel.reshape(11, 11, extent, 3, -1).transpose(2, 0, 1, 3, 4)
    frames = inputs(clip).numpy().reshape(2, 10, 64, 64, 3)
    # Conv3D: valid in time, `same` in space by explicit padding (TF's rule: the extra
    # pixel goes after; for 170 pixels that is 4 before and 5 after).
    total = (-(-64 // 3) - 1) * 3 + 11 - 64
    pad = (total // 2, total - total // 2)
    padded = np.pad(frames, ((0, 0), (0, 0), pad, pad, (0, 0)))
    ref = tf.nn.relu(tf.nn.conv3d(padded, kernel3d, [1, stride, 3, 3, 1], "VALID") + bias).numpy()
    assert ref.shape[1] == steps_out
    np.testing.assert_allclose(ours.reshape(ref.shape), ref, rtol=1e-4, atol=1e-3)


def test_slow_fusion_temporal_sizes():
    model = _tiny("slow_fusion")
    steps = [model.get_layer(f"time{i}").output_steps for i in (1, 2, 3)]
    assert steps == [4, 2, 1]
    assert model.get_layer("conv2").kernel.shape[2] == 2 * model.get_layer("conv1").filters
    assert model.get_layer("conv3").kernel.shape[2] == 2 * model.get_layer("conv2").filters


def test_lrn_matches_numpy_reference():
    x = np.random.default_rng(2).normal(0, 20, (2, 5, 5, 13)).astype(np.float32)
    got = LocalResponseNorm()(x).numpy()
    sq = np.pad(x ** 2, ((0, 0), (0, 0), (0, 0), (2, 2)))
    window = sum(sq[..., i:i + 13] for i in range(5))
    want = x / (2.0 + 1e-4 * window) ** 0.5
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("name,multires", [("late_fusion", False), ("slow_fusion", True)])
def test_keras_round_trip_identical(tmp_path, name, multires):
    model = _tiny(name, multires)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    clip = np.random.default_rng(3).integers(
        0, 256, (2,) + model.input_shape[1:], dtype=np.uint8)
    np.testing.assert_array_equal(model(clip).numpy(), loaded(clip).numpy())
    assert describe(loaded) == describe(model)


def test_mixed_float16_training_step():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _tiny("slow_fusion", multires=True)
        assert model.get_layer("fovea_conv1").compute_dtype == "float16"
        assert model.output.dtype == "float32"
        model.compile(keras.optimizers.SGD(0.01), "categorical_crossentropy")
        clip = np.random.default_rng(4).integers(0, 256, (4, 10, 64, 64, 3), dtype=np.uint8)
        loss = model.train_on_batch(clip, np.eye(5)[[0, 1, 2, 3]])
        assert np.isfinite(loss)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name,multires", VARIANTS)
def test_tiny_model_learns_fixed_batch(name, multires):
    keras.utils.set_random_seed(0)
    model = _tiny(name, multires, dropout=0.0)
    rng = np.random.default_rng(5)
    clip = rng.integers(0, 256, (8,) + model.input_shape[1:], dtype=np.uint8)
    target = np.eye(5)[rng.integers(0, 5, 8)]
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    first = model.train_on_batch(clip, target)
    for _ in range(10):
        last = model.train_on_batch(clip, target)
    assert last < 0.7 * first, (first, last)


def test_input_scale_lives_in_the_model_and_survives_saving(tmp_path):
    clip = np.random.default_rng(4).integers(0, 256, (2, 10, 32, 32, 3), dtype=np.uint8)
    raw = build_model("slow_fusion", 3, width=0.0625, input_size=32)
    scaled = build_model("slow_fusion", 3, width=0.0625, input_size=32, input_scale=1 / 64)
    scaled.set_weights(raw.get_weights())
    centred = clip.astype(np.float32) - 117.0
    pre = keras.Model(scaled.input, scaled.get_layer("preprocess").output)
    np.testing.assert_allclose(pre(clip).numpy(), centred / 64, rtol=1e-6)
    # Same weights, another input scale: another function.
    assert not np.allclose(raw(clip).numpy(), scaled(clip).numpy())
    assert describe(raw)["input_scale"] == 1.0 and describe(scaled)["input_scale"] == 1 / 64
    path = str(tmp_path / "scaled.keras")
    scaled.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(clip).numpy(), scaled(clip).numpy())
    assert describe(loaded) == describe(scaled)
    with pytest.raises(ValueError, match="input_scale"):
        build_model("single_frame", 3, input_scale=0.0)


def test_kernel_init_sets_the_relu_layers_and_leaves_the_classifier():
    def kernel_std(model, layer):
        return float(np.std(model.get_layer(layer).kernel.numpy()))

    keras.utils.set_random_seed(0)
    glorot = build_model("slow_fusion", 5, width=0.25, input_size=56)  # the default
    keras.utils.set_random_seed(0)
    he = build_model("slow_fusion", 5, width=0.25, input_size=56, kernel_init="he_normal")
    # He: variance 2 / fan_in (truncated normal: Keras rescales it to that std).
    for layer in ("conv1", "conv2", "conv5", "fc6", "fc7"):
        kernel = he.get_layer(layer).kernel
        fan_in = int(np.prod(kernel.shape[:-1]))
        assert kernel_std(he, layer) == pytest.approx(np.sqrt(2 / fan_in), rel=0.1), layer
        assert kernel_std(he, layer) > 1.2 * kernel_std(glorot, layer), layer
    # The softmax layer is not a rectifier: Glorot in both.
    assert kernel_std(he, "predictions") == pytest.approx(kernel_std(glorot, "predictions"),
                                                          rel=0.1)
    with pytest.raises(ValueError, match="kernel_init"):
        build_model("single_frame", 3, kernel_init="zeros")


def test_describe_reads_the_build_config_not_the_name(tmp_path):
    from sports1m_tf import models
    model = models.build_model("slow_fusion", 5, multires=True, width=0.0625, input_size=32)
    # Renamed (a wrapper with the same graph): the name no longer tells the family.
    renamed = keras.Model(model.inputs, model.outputs, name="my_classifier")
    info = models.describe(renamed)
    assert (info["name"], info["multires"], info["num_classes"]) == ("slow_fusion", True, 5)
    assert info["frames"] == models.frames_needed("slow_fusion")
    path = str(tmp_path / "renamed.keras")
    renamed.save(path)
    assert models.describe(keras.models.load_model(path, compile=False)) == info
