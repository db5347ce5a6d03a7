"""A `sports1m-export --format=tflite` file run by the LiteRT interpreter, for `sports1m-predict`.

The file takes one stored-size clip and answers for its centre view
(`export.tflite_export`). `predict_video` averages 4 views of every clip (the
evaluation's: centre, centre flipped, top-left, bottom-right flipped), so each
view is given to the file as a clip whose centre crop IS that view: the frames
are shifted (and mirrored) so that the view's window lands on the centre. The
softmax outputs of the 4 views of every clip are then averaged here, as the
SavedModel's signature averages them.

LiteRT (`ai-edge-litert`, the `[lite]` extra) is imported at the first clip.
"""
from __future__ import annotations

import os
import time

import numpy as np

from export.video_prediction import ClassifyingModel, read_class_names, read_model_info
from sports1m_tf import cli

LITE_HINT = "pip install 'sports1m_tf[lite]' (the ai-edge-litert package)"


def view_window(view: tuple[str, bool], stored: int, crop: int) -> tuple[int, int]:
    """(top, left) of an evaluation view's window in a `stored`-pixel frame (the corner's)."""
    corner = view[0]
    if corner == "centre":
        return (stored - crop) // 2, (stored - crop) // 2
    if corner == "top_left":
        return 0, 0
    if corner == "bottom_right":
        return stored - crop, stored - crop
    raise ValueError(f"unknown view corner {corner!r}")


def as_centre_view(clip: np.ndarray, view: tuple[str, bool], crop: int) -> np.ndarray:
    """A clip [T, S, S, 3] whose centre `crop` window is `view` of `clip` (shifted, and
    mirrored for a flipped view); the pixels outside that window are of no use."""
    stored = clip.shape[1]
    top, left = view_window(view, stored, crop)
    if view[1]:
        # Mirrored, the window [left, left + crop) becomes [S - left - crop, S - left), reversed.
        clip = clip[:, :, ::-1]
        left = stored - left - crop
    centre = (stored - crop) // 2
    return np.roll(clip, (centre - top, centre - left), axis=(1, 2))


class TFLiteVideoModel(ClassifyingModel):
    """`VideoModel`'s interface over a .tflite file: clip by clip, views averaged here."""

    def __init__(self, path: str, threads: int | None = None):
        """Args:
          path: A model.tflite with model_info.json and class_names.txt beside it.
          threads: Interpreter threads (default: LiteRT's choice).
        """
        from export.tflite_export import MODEL_INFO_NAME
        from export.saved_model import CLASS_NAMES_FILE
        if not os.path.isfile(path):
            raise cli.UserError(f"--tflite {path}: no such file")
        folder = os.path.dirname(os.path.abspath(path))
        self.info = read_model_info(folder, MODEL_INFO_NAME)
        names = os.path.join(folder, CLASS_NAMES_FILE)
        if not self.info or not os.path.isfile(names):
            raise cli.UserError(f"--tflite {path}: no {MODEL_INFO_NAME} and {CLASS_NAMES_FILE} "
                                "beside it; export with sports1m-export --format=tflite")
        self.path = path
        self.class_names = read_class_names(names)
        self.frames = tuple(self.info["frames"])
        self.frame_size = int(self.info["frame_size"])
        self.threads = threads
        self._run = None
        self.seconds = 0.0
        self.load_seconds = 0.0

    def _runner(self):
        if self._run is None:
            start = time.perf_counter()
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError as e:
                raise cli.UserError(f"--tflite needs the LiteRT interpreter: {LITE_HINT}") from e
            from sports1m_tf.data.augment import VIEWS
            self._views = VIEWS
            interpreter = Interpreter(model_path=self.path, num_threads=self.threads)
            self._run = interpreter.get_signature_runner("serving_default")
            self.load_seconds = time.perf_counter() - start
        return self._run

    def clip_outputs(self, clip: np.ndarray) -> dict[str, np.ndarray]:
        """The file's outputs for one stored-size clip [16, S, S, 3] (centre view):
        `probabilities` [C] and `embedding` [d]."""
        out = self._runner()(clip=np.ascontiguousarray(clip[np.newaxis], np.uint8))
        return {key: value[0] for key, value in out.items()}

    def view_probabilities(self, clips: np.ndarray) -> np.ndarray:
        """float32 [n, 4, C]: the softmax of each evaluation view of each clip."""
        self._runner()
        crop = int(self.info["input_size"])
        return np.stack([[self.clip_outputs(as_centre_view(clip, view, crop))["probabilities"]
                          for view in self._views] for clip in clips])

    def __call__(self, clips: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """(probabilities [C], top-k dicts) of one video's clips: the mean over their views."""
        self._runner()
        start = time.perf_counter()
        probs = self.view_probabilities(clips).mean(axis=(0, 1))
        self.seconds += time.perf_counter() - start
        return probs, self.top_k(probs)
