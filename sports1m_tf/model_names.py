"""The model registry's table, readable without TensorFlow (flags, run folders, finetune).

`sports1m_tf.models.builder` builds each name from its family module; this table
is the one list of names every command and check uses.
"""
from __future__ import annotations

# name → (family module in sports1m_tf.models, input streams). fovea_only and
# context_only are the single-frame multiresolution ablations of the paper's Table 1.
REGISTRY = {
    "single_frame": ("single_frame", ("full",)),
    "early_fusion": ("early_fusion", ("full",)),
    "late_fusion": ("late_fusion", ("full",)),
    "slow_fusion": ("slow_fusion", ("full",)),
    "fovea_only": ("single_frame", ("fovea",)),
    "context_only": ("single_frame", ("context",)),
}
MODEL_NAMES = tuple(REGISTRY)
