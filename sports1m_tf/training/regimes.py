"""The transfer-learning regimes, readable without TensorFlow (sports1m-finetune's flags).

`sports1m_tf.training.transfer` builds the models; docs/design.md ("Transfer learning")
describes the regimes.
"""
from __future__ import annotations

REGIMES = ("top1", "top3", "all", "scratch")
# The paper: "as little as 10% chance of keeping each unit active".
PAPER_DROPOUT = 0.9
HEAD_LAYERS = ("fc6", "fc7", "predictions")
# Layers each regime retrains (None: every layer).
RETRAINED: dict[str, tuple[str, ...] | None] = {
    "top1": ("predictions",),
    "top3": HEAD_LAYERS,
    "all": None,
    "scratch": None,
}
