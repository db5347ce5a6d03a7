"""The paper's CNNs (docs/design.md, "Models"): `build_model(name, ...)` and the frames each reads."""
from sports1m_tf.model_names import MODEL_NAMES
from sports1m_tf.models.builder import (MODELS, build_model, default_input_size, describe,
                                        frames_needed, model_name, uses_multires_input)
from sports1m_tf.models.layers import (FramePreprocessing, LocalResponseNorm, MergeTime,
                                       TemporalWindows, TimeToBatch)

__all__ = ["MODEL_NAMES", "build_model", "default_input_size", "describe", "frames_needed",
           "model_name", "uses_multires_input", "FramePreprocessing", "LocalResponseNorm",
           "MergeTime", "TemporalWindows", "TimeToBatch"]
