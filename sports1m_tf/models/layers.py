"""Custom Keras layers the paper's CNNs need (all registered for `.keras` loading)."""
from __future__ import annotations

import keras
import tensorflow as tf

_PACKAGE = "sports1m_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FramePreprocessing(keras.layers.Layer):
    """Casts uint8 frames to the compute dtype, subtracts the paper's mean pixel, scales.

    Living in the model (not the input pipeline) keeps batches uint8 end to end:
    converting clips to float in tf.data cost 43% of the pipeline's time here.
    Serving signatures call the model, so they apply the same scale.

    Args:
      mean: Subtracted from every raw pixel value.
      scale: Multiplies the centred value. Defaults to 1 (the paper: raw
        pixel units); 1/64 brings the input to about unit variance, which
        `--optimizer=adam` needs (see docs/studies/motion.md).
      built_as: dict or None. How `build_model` built the model this layer
        opens (`family`, `multires`, `clip_frames`); it travels in the saved
        model's config so that `describe` reads it back. Defaults to None.
    """

    def __init__(self, mean: float = 117.0, scale: float = 1.0,
                 built_as: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.mean = float(mean)
        self.scale = float(scale)
        self.built_as = dict(built_as) if built_as else None

    def call(self, frames):
        x = tf.cast(frames, self.compute_dtype) - tf.cast(self.mean, self.compute_dtype)
        if self.scale != 1.0:
            x = x * tf.cast(self.scale, self.compute_dtype)
        return x

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "scale": self.scale,
                "built_as": self.built_as}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocalResponseNorm(keras.layers.Layer):
    """Cross-channel local response normalisation (AlexNet), computed in float32.

    b = a / (bias + alpha * sum_{window} a^2) ** beta, window = 2 * depth_radius + 1.
    `tf.nn.local_response_normalization` does not divide alpha by the window size,
    and it has no float16 kernel: under `mixed_float16` the input is cast up.

    Args:
      depth_radius: Half-width of the channel window.
      beta: Defaults to 0.5.
    """

    def __init__(self, depth_radius: int = 2, bias: float = 2.0, alpha: float = 1e-4,
                 beta: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, x):
        y = tf.nn.local_response_normalization(
            tf.cast(x, tf.float32), depth_radius=self.depth_radius, bias=self.bias,
            alpha=self.alpha, beta=self.beta)
        return tf.cast(y, x.dtype)

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TimeToBatch(keras.layers.Layer):
    """[B, T, H, W, C] -> [B*T, H, W, C]: every frame goes through 2-D layers at once."""

    def call(self, x):
        shape = tf.shape(x)
        return tf.reshape(x, tf.concat([[-1], shape[2:]], axis=0))

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TemporalWindows(keras.layers.Layer):
    """Stacks `extent` consecutive time steps (every `stride`) along channels.

    A Conv2D over the result is exactly a Conv3D with temporal kernel `extent`,
    temporal stride `stride`, valid in time, with weights shared across time
    positions (kernel [kh, kw, extent * C, D] is the Conv3D kernel
    [extent, kh, kw, C, D] reshaped). 2-D convolutions are several times faster
    than 3-D ones on CPU and have no padding restrictions.

    Input and output are time-folded into the batch: [B*T, H, W, C] ->
    [B*T', H, W, extent*C] with T' = (T - extent) // stride + 1.

    Args:
      steps: T, the number of time steps folded into the input batch.
    """

    def __init__(self, steps: int, extent: int, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        if extent > steps:
            raise ValueError(f"temporal extent {extent} exceeds the {steps} time steps")
        self.steps, self.extent, self.stride = int(steps), int(extent), int(stride)

    @property
    def output_steps(self) -> int:
        return (self.steps - self.extent) // self.stride + 1

    def call(self, x):
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        x = tf.reshape(x, [-1, self.steps, h, w, c])
        index = [[t * self.stride + k for k in range(self.extent)]
                 for t in range(self.output_steps)]
        x = tf.gather(x, index, axis=1)                       # [B, T', extent, H, W, C]
        x = tf.transpose(x, [0, 1, 3, 4, 2, 5])               # [B, T', H, W, extent, C]
        return tf.reshape(x, [-1, h, w, self.extent * c])

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[1:3]) + (self.extent * input_shape[3],)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "extent": self.extent,
                "stride": self.stride}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MergeTime(keras.layers.Layer):
    """[B*T, H, W, C] -> [B, T*H*W*C]: the towers meet at the first FC layer."""

    def __init__(self, steps: int, **kwargs):
        super().__init__(**kwargs)
        self.steps = int(steps)

    def call(self, x):
        size = x.shape[1] * x.shape[2] * x.shape[3]
        return tf.reshape(x, [-1, self.steps * size])

    def compute_output_shape(self, input_shape):
        return (None, self.steps * input_shape[1] * input_shape[2] * input_shape[3])

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}
