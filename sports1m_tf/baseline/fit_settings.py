"""Every setting of the baseline's fit once: its default and its flag (`sports1m-baseline`).

Built like `sports1m_tf.settings.TrainConfig`: the command declares its flags from
these fields and Python callers build a `FitSettings(...)` with the same defaults.
Free of TensorFlow, so the command parses its flags before TensorFlow starts.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from absl import app, flags

from sports1m_tf.baseline.descriptors import FEATURE_TYPES, DescriptorSettings
from sports1m_tf.settings import NON_NEGATIVE, POSITIVE, EvalConfig, define_fields, setting

GROUP = "baseline"


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """How the vocabularies and the MLP are fitted, and how videos are read for it."""
    # Reading.
    clips_per_video: int = setting(EvalConfig.clips_per_video, "Clips of a video used (at most).",
                                   GROUP, bound=POSITIVE)
    workers: int = setting(0, "Feature-extraction processes (0 = one per core).", GROUP,
                           bound=NON_NEGATIVE)
    # Descriptors and vocabularies.
    frame_size: int = setting(DescriptorSettings.frame_size,
                              "Frames are resized to this square size.", GROUP, bound=POSITIVE)
    patch_size: int = setting(DescriptorSettings.patch_size,
                              "Dense patch side (stride half of it).", GROUP, bound=POSITIVE)
    frames_per_clip: int = setting(DescriptorSettings.frames_per_clip,
                                   "Frames of each clip described.", GROUP, bound=POSITIVE)
    flow_gap: int = setting(DescriptorSettings.flow_gap,
                            "Optical flow from frame t to t + flow_gap.", GROUP, bound=POSITIVE)
    vocabulary_sizes: Sequence[str] = setting(
        ["hog=512", "colour=256", "motion=256"],
        "Words per descriptor type; dimension = 5 x their sum.", GROUP)
    vocabulary_clips: int = setting(500, "Training clips sampled to fit the vocabularies.",
                                    GROUP, bound=POSITIVE)
    vocabulary_samples: int = setting(50000, "Descriptors per type for k-means.", GROUP,
                                      bound=POSITIVE)
    soft_neighbours: int = setting(5, "Words each descriptor votes for (1 = hard).", GROUP,
                                   bound=POSITIVE)
    # MLP search.
    hidden: Sequence[str] = setting(
        ["512", "1024+512"],
        "Hidden-layer widths to try, '+' between layers (e.g. 512,1024+512).", GROUP)
    dropout: Sequence[str] = setting(["0.25", "0.5"], "Dropout rates to try.", GROUP)
    learning_rate: Sequence[str] = setting(["0.001"], "Adam learning rates to try.", GROUP)
    epochs: int = setting(200, "Maximum epochs (early stopping on val loss).", GROUP,
                          bound=POSITIVE)
    patience: int = setting(20, "Early-stopping patience, epochs.", GROUP, bound=POSITIVE)
    batch_size: int = setting(64, "MLP mini-batch size.", GROUP, bound=POSITIVE)
    seed: int = setting(0, "Seed for sampling, k-means and the MLP.", GROUP)

    def descriptors(self) -> DescriptorSettings:
        return DescriptorSettings(frame_size=self.frame_size, patch_size=self.patch_size,
                                  frames_per_clip=self.frames_per_clip, flow_gap=self.flow_gap)

    def sizes(self) -> dict[str, int]:
        """{'hog': 512, ...}: words per descriptor type, every type given, each >= 2."""
        sizes = {}
        for item in self.vocabulary_sizes:
            name, _, value = item.partition("=")
            sizes[name.strip()] = int(value) if value.strip().isdigit() else 0
        if set(sizes) != set(FEATURE_TYPES) or min(sizes.values()) < 2:
            raise app.UsageError(f"--vocabulary_sizes needs {FEATURE_TYPES}, each >= 2; "
                                 f"got {list(self.vocabulary_sizes)}")
        return sizes

    def search_space(self) -> tuple[list[list[int]], list[float], list[float]]:
        """(hidden widths, dropout rates, learning rates) to try, every combination."""
        try:
            return ([[int(w) for w in str(h).split("+")] for h in self.hidden],
                    [float(d) for d in self.dropout], [float(lr) for lr in self.learning_rate])
        except ValueError as e:
            raise app.UsageError(f"--hidden, --dropout or --learning_rate: {e}") from None


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Declares a flag per `FitSettings` field (already declared ones are left alone)."""
    define_fields(dataclasses.fields(FitSettings), flag_values)
