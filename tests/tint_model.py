"""A tiny model that tells two tints apart, trained in seconds, and videos of those tints.

For tests that need labels which follow what a video shows (segments, live
streams): class 0 is a reddish frame, class 1 a bluish one, both under noise.
Test-only: not part of the installed package.
"""
from __future__ import annotations

import numpy as np

from sports1m_tf.models import build_model, frames_needed
from testvideos import tinted_frames  # noqa: F401  (the tints' frames, with the model)


def train_tint_model(model_name: str, num_classes: int, input_size: int, rng,
                     width: float = 0.0625):
    """A `build_model` network trained (16 steps) to give class 0 to the first tint
    and class 1 to the second; seeded, so the same arguments give the same weights."""
    import keras
    keras.utils.set_random_seed(0)
    frames = len(frames_needed(model_name))
    model = build_model(model_name, num_classes, width=width, input_size=input_size)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="categorical_crossentropy")
    x = np.concatenate([tinted_frames(rng, 8 * frames, input_size, input_size, c)
                        for c in (0, 1)])
    y = keras.utils.to_categorical([0] * 8 + [1] * 8, num_classes)
    model.fit(x.reshape(16, frames, input_size, input_size, 3), y, batch_size=8, epochs=4,
              verbose=0, shuffle=True)
    return model
