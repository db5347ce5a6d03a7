"""The CPU kernel choice every command and benchmark of this project makes."""
from __future__ import annotations

import os
import sys

from absl import logging


def prefer_onednn() -> None:
    """Turns TensorFlow's oneDNN CPU kernels on unless the user chose already.

    They take 1.7–2.3x fewer CPU seconds per training step here
    (`benchmarks/train_step.py`, docs/training.md), and TF 2.21 leaves them off on
    some CPUs (AMD). The variable only counts before TensorFlow is imported, so
    entry points call this first; an explicit `TF_ENABLE_ONEDNN_OPTS=0` still wins.
    """
    if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    if "tensorflow" in sys.modules:
        logging.warning("TensorFlow was imported before prefer_onednn(): its CPU kernels "
                        "stay as they were; set TF_ENABLE_ONEDNN_OPTS=1 before starting.")
