"""benchmarks/dead_units.py: which ReLU channels of a model never fire."""
import importlib.util
import os

import keras
import numpy as np

from sports1m_tf.models import build_model

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "dead_units.py")
_spec = importlib.util.spec_from_file_location("dead_units", _PATH)
dead_units = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dead_units)


def test_channels_pushed_below_zero_count_as_dead_and_the_rest_fire():
    keras.utils.set_random_seed(0)
    model = build_model("slow_fusion", 4, width=0.125, input_size=32, input_scale=1 / 64)
    assert [layer.name for layer in dead_units.relu_layers(model)] == [
        "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    conv2 = model.get_layer("conv2")
    bias = conv2.bias.numpy()
    killed = [0, 3, 5]
    bias[killed] = -1e6      # below any input: these channels can never be positive
    bias[[1, 2]] = 1e6       # above any input: always positive
    conv2.bias.assign(bias)
    rng = np.random.default_rng(0)
    clips = [(rng.integers(0, 256, (4, 10, 32, 32, 3), dtype=np.uint8), None) for _ in range(2)]

    rates = dead_units.firing_rates(model, clips)
    assert len(rates["conv2"]) == 32 and len(rates["fc6"]) == 512
    assert [i for i, r in enumerate(rates["conv2"]) if r == 0.0] == killed
    assert rates["conv2"][1] == rates["conv2"][2] == 1.0
    counts = dead_units.summarise_rates(rates)
    assert counts["conv2"] == {"channels": 32, "dead": 3, "rare": 3}
    # A freshly initialised conv1 fires somewhere in every channel.
    assert counts["conv1"]["dead"] == 0
