"""Serving functions (docs/design.md): raw or JPEG frames in, probabilities and the top classes
(or a hidden layer's embeddings) out.

Every function is pure TF graph: frame selection is a gather, crops are slices,
views are a static stack of four, decoding is one `tf.map_fn` over the frames
the model reads. Preprocessing matches training and evaluation:

  any H×W frame → centre square crop → resize to 200×200 (what the converter
  stores) → the model's crop (centre for `serving_default`, the four
  evaluation views of `sports1m_tf.data.eval_views` for `predict_video`).

Inputs carry no static rank in the signature so that the in-graph checks below
(not a generic shape-mismatch in the client) explain a wrong input; the
messages are the `*_MESSAGE` constants, formatted with the signature name.

Work is bounded before anything is decoded (`export.frame_bounds`): clips per
request, and each frame's size (raw frames from the input's shape, JPEG frames
from their headers, after checking that the data ends with the end marker).
"""
from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from export.frame_bounds import DEFAULT_MAX_CLIPS, FrameBounds, default_max_pixels
from sports1m_tf.data import VIEWS, centre_crop, eval_views
from sports1m_tf.metrics import TOP_K
from sports1m_tf.models import describe
from tfrecord_tools import schema

# Signature name → input key.
SIGNATURE_INPUTS = {"serving_default": "clips", "predict_video": "clips",
                    "predict_jpeg": "jpeg_frames", "predict_video_jpeg": "jpeg_frames",
                    "embed_video": "clips", "embed_video_jpeg": "jpeg_frames"}
# Layers whose activations are embeddings; fc7 is the paper's last hidden layer. For a
# multires model both follow the concatenated streams.
EMBEDDING_LAYERS = ("fc7", "fc6")
DEFAULT_EMBEDDING_LAYER = "fc7"
# Every JPEG file starts with an SOI marker followed by the first segment's marker.
JPEG_MAGIC = b"\xff\xd8\xff"
# ... and ends with the EOI marker; data cut short lacks it.
JPEG_END = b"\xff\xd9"

RANK_MESSAGE = "{signature}: expected {layout}; got an input of shape"
FRAMES_MESSAGE = "{signature}: expected {frames} frames per clip (axis 1 of {layout}); got shape"
CHANNELS_MESSAGE = "{signature}: expected 3 colour channels (last axis of {layout}); got shape"
EMPTY_MESSAGE = "{signature}: empty input, every axis of {layout} must be at least 1; got shape"
NOT_JPEG_MESSAGE = ("{signature}: not JPEG data (a JPEG file starts with the bytes FF D8 FF); "
                    "[clip, frame] of the first such frame:")
CLIPS_MESSAGE = ("{signature}: more than {max_clips} clips in one request (the bound set at "
                 "export: sports1m-export --max_clips); got shape")
PIXELS_MESSAGE = ("{signature}: frames over the bound of {max_pixels} pixels (height x width; "
                  "set at export: sports1m-export --max_frame_pixels); got shape")
SMALL_MESSAGE = ("{signature}: frames whose shorter side is below the model input size of "
                 "{min_side} pixels; got shape")
JPEG_END_MESSAGE = ("{signature}: JPEG data without its end marker (a JPEG file ends with the "
                    "bytes FF D9): cut short; [clip, frame] of the first such frame:")
JPEG_PIXELS_MESSAGE = ("{signature}: a frame over the bound of {max_pixels} pixels (height x "
                       "width, read from its JPEG header; set at export: sports1m-export "
                       "--max_frame_pixels); [clip, frame] of the first such frame and its "
                       "[height, width]:")
JPEG_SMALL_MESSAGE = ("{signature}: a frame whose shorter side is below the model input size of "
                      "{min_side} pixels (read from its JPEG header); [clip, frame] of the "
                      "first such frame and its [height, width]:")


def class_name_table(path: str) -> tf.lookup.StaticHashTable:
    """Class index (int64) → name (string) from a text file with one name a line.

    Tracked by the export archive, the file is copied into the SavedModel's
    `assets/` and the table is rebuilt from there when the model is loaded.
    """
    initializer = tf.lookup.TextFileInitializer(
        path, key_dtype=tf.int64, key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        value_dtype=tf.string, value_index=tf.lookup.TextFileIndex.WHOLE_LINE)
    return tf.lookup.StaticHashTable(initializer, default_value="")


def check_input(values: tf.Tensor, *, signature: str, layout: str, rank: int,
                frames: int, bounds: FrameBounds) -> tf.Tensor:
    """Fails with a message naming the expected layout unless `values` fits it and `bounds`.

    Args:
      values: the signature's input, of unknown static rank.
      signature: Name used in the messages.
      layout: The expected layout, e.g. "uint8 [batch, 16, height, width, 3]".
      rank: 5 for frames, 2 for JPEG strings.
      frames: Required size of axis 1.
      bounds: clips per request (axis 0); for raw frames also their size.

    Returns:
      `values` with its static shape set (`[None, frames, None, None, 3]` or
      `[None, frames]`), once the checks have passed.
    """
    fmt = dict(signature=signature, layout=layout, frames=frames, max_clips=bounds.max_clips,
               max_pixels=bounds.max_pixels, min_side=bounds.min_side)

    def check(condition, message):
        return tf.debugging.Assert(condition, [message.format(**fmt), shape], summarize=8)

    shape = tf.shape(values)
    rank_ok = check(tf.equal(tf.size(shape), rank), RANK_MESSAGE)
    # The other checks index the shape: they must run after the rank check.
    with tf.control_dependencies([rank_ok]):
        shape = tf.identity(shape)
    checks = [check(tf.equal(shape[1], frames), FRAMES_MESSAGE),
              check(tf.reduce_all(shape > 0), EMPTY_MESSAGE),
              check(shape[0] <= bounds.max_clips, CLIPS_MESSAGE)]
    if rank == 5:
        # int64: a claimed 65536 x 65536 overflows int32.
        pixels = tf.cast(shape[2], tf.int64) * tf.cast(shape[3], tf.int64)
        checks += [check(tf.equal(shape[4], 3), CHANNELS_MESSAGE),
                   check(pixels <= bounds.max_pixels, PIXELS_MESSAGE),
                   check(tf.minimum(shape[2], shape[3]) >= bounds.min_side, SMALL_MESSAGE)]
    with tf.control_dependencies(checks):
        values = tf.identity(values)
    static = [None, frames, None, None, 3] if rank == 5 else [None, frames]
    return tf.ensure_shape(values, static)


def _first_bad(bad: tf.Tensor, message: str, *extra) -> tf.Operation:
    """An assertion that no element of `bad` [clips, frames] is set, naming the first
    [clip, frame] that is (and its entry in each of `extra`, [clips, frames, ...])."""
    first = tf.where(bad)[:1]
    return tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)),
                               [message, first, *(tf.gather_nd(e, first) for e in extra)],
                               summarize=4)


def _after(checks: list, value: tf.Tensor) -> tf.Tensor:
    with tf.control_dependencies(checks):
        return tf.identity(value)


def check_jpeg(jpeg_frames: tf.Tensor, *, signature: str, bounds: FrameBounds) -> tf.Tensor:
    """Fails, naming the first offending [clip, frame], unless every frame is a JPEG that
    is whole and within `bounds`, all read before any frame is decoded.

    In order: the first bytes (`tf.io.decode_jpeg` alone would answer other
    formats with a generic decoder error that names neither the signature nor the
    frame), the end marker (data cut short), then the size in the header
    (`tf.image.extract_jpeg_shape` parses the header only): at most
    `bounds.max_pixels`, the shorter side at least `bounds.min_side`.

    Args:
      jpeg_frames: string [batch, frames], already through `check_input`.
      signature: Name used in the messages.
      bounds: the frame size bounds.

    Returns:
      `jpeg_frames`, once the checks have passed.
    """
    fmt = dict(signature=signature, max_pixels=bounds.max_pixels, min_side=bounds.min_side)
    is_jpeg = tf.equal(tf.strings.substr(jpeg_frames, 0, len(JPEG_MAGIC)), JPEG_MAGIC)
    jpeg_frames = _after([_first_bad(tf.logical_not(is_jpeg),
                                     NOT_JPEG_MESSAGE.format(**fmt))], jpeg_frames)
    # The header parser reads past the header on data cut short: the end first.
    ended = tf.equal(tf.strings.substr(jpeg_frames, -len(JPEG_END), len(JPEG_END)), JPEG_END)
    jpeg_frames = _after([_first_bad(tf.logical_not(ended), JPEG_END_MESSAGE.format(**fmt))],
                         jpeg_frames)
    shapes = tf.map_fn(tf.image.extract_jpeg_shape, tf.reshape(jpeg_frames, [-1]),
                       fn_output_signature=tf.TensorSpec([3], tf.int32))
    sizes = tf.reshape(shapes[:, :2], tf.concat([tf.shape(jpeg_frames), [2]], axis=0))
    pixels = tf.cast(sizes[..., 0], tf.int64) * tf.cast(sizes[..., 1], tf.int64)
    return _after([
        _first_bad(pixels > bounds.max_pixels, JPEG_PIXELS_MESSAGE.format(**fmt), sizes),
        _first_bad(tf.reduce_min(sizes, axis=-1) < bounds.min_side,
                   JPEG_SMALL_MESSAGE.format(**fmt), sizes)], jpeg_frames)


def to_stored_frames(frames: tf.Tensor, size: int = schema.FRAME_SIZE) -> tf.Tensor:
    """What the converter stores: the centre square of each frame resized to `size`.

    TF's area resize matches the converter's `cv2.INTER_AREA` within 1 grey
    level, shrinking and enlarging (measured; bilinear differs by up to 37 when
    enlarging); frames already `size`×`size` pass through untouched.

    Args:
      frames: uint8 [N, H, W, 3].

    Returns:
      uint8 [N, size, size, 3].
    """
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = frames[:, top:top + side, left:left + side]

    def resize():
        resized = tf.image.resize(square, [size, size], method="area")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    out = tf.cond(tf.equal(side, size), lambda: square, resize)
    return tf.ensure_shape(out, [None, size, size, 3])


def fold_time(clips: tf.Tensor) -> tf.Tensor:
    """[B, T, H, W, C] → [B*T, H, W, C], for per-frame image ops."""
    shape = tf.shape(clips)
    return tf.reshape(clips, tf.concat([[-1], shape[2:]], axis=0))


def select_frames(clips: tf.Tensor, indices: list[int]) -> tf.Tensor:
    """The model's frames of each clip: [B, 16, ...] → [B, len(indices), ...] (one gather)."""
    return tf.gather(clips, indices, axis=1)


def stored_clips(clips: tf.Tensor, indices: list[int],
                 size: int = schema.FRAME_SIZE) -> tf.Tensor:
    """Selects the model's frames and brings them to the stored `size`×`size` squares.

    Args:
      clips: uint8 [B, 16, H, W, 3].
      indices: the frames the model reads.
      size: Stored frame size the model was trained on.

    Returns:
      uint8 [B, T, size, size, 3], T = len(indices).
    """
    out = to_stored_frames(fold_time(select_frames(clips, indices)), size)
    return tf.reshape(out, [-1, len(indices), size, size, 3])


def decode_stored_clips(jpeg_frames: tf.Tensor, indices: list[int],
                        size: int = schema.FRAME_SIZE) -> tf.Tensor:
    """Decodes only the model's frames of each clip, each brought to `size`×`size`.

    Frames may have different sizes (each is cropped and resized on its own
    before they are stacked).

    Args:
      jpeg_frames: string [B, 16], JPEG-encoded RGB frames.
      indices: the frames the model reads.
      size: Stored frame size the model was trained on.

    Returns:
      uint8 [B, T, size, size, 3].
    """
    picked = tf.reshape(select_frames(jpeg_frames, indices), [-1])

    def decode(data):
        image = tf.io.decode_jpeg(data, channels=3)
        return to_stored_frames(image[tf.newaxis], size)[0]

    frames = tf.map_fn(decode, picked,
                       fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
    return tf.reshape(frames, [-1, len(indices), size, size, 3])


def centre_view(clips: tf.Tensor, size: int) -> tf.Tensor:
    """The centre `size` crop of every clip: uint8 [B, T, 200, 200, 3] → [B, T, size, size, 3]."""
    steps = clips.shape[1]
    return tf.reshape(centre_crop(fold_time(clips), size), [-1, steps, size, size, 3])


def all_views(clips: tf.Tensor, size: int) -> tf.Tensor:
    """The 4 evaluation views of every clip (`sports1m_tf.data.eval_views`).

    Args:
      clips: uint8 [n, T, 200, 200, 3].
      size: The model's crop size.

    Returns:
      uint8 [4 * n, T, size, size, 3], view-major (all clips' centre views
      first); the order does not matter to the average taken over them.
    """
    steps = clips.shape[1]
    views = eval_views(fold_time(clips), size, len(VIEWS))      # [4, n*T, S, S, 3]
    return tf.reshape(views, [-1, steps, size, size, 3])


def embedding_model(model: keras.Model, layer: str = DEFAULT_EMBEDDING_LAYER) -> keras.Model:
    """The same weights as `model`, answering with `layer`'s activations (after its ReLU,
    before dropout): uint8 frames as `model` takes them → float32 [batch, d]."""
    if layer not in EMBEDDING_LAYERS:
        raise ValueError(f"embedding layer must be one of {EMBEDDING_LAYERS}, got {layer!r}")
    return keras.Model(model.input, model.get_layer(layer).output, name=f"{model.name}_{layer}")


def clip_embeddings(embed: Callable[[tf.Tensor], tf.Tensor], stored: tf.Tensor,
                    size: int) -> tf.Tensor:
    """Each clip's embedding: the mean over its 4 evaluation views.

    Args:
      embed: frames [B, T, size, size, 3] → float32 [B, d] (an `embedding_model`).
      stored: uint8 [n, T, S, S, 3], the model's frames at the stored size.
      size: The model's crop size.

    Returns:
      float32 [n, d].
    """
    views = embed(all_views(stored, size))                    # view-major [4 * n, d]
    return tf.reduce_mean(tf.reshape(views, [len(VIEWS), -1, views.shape[-1]]), axis=0)


def embedding_outputs(clips: tf.Tensor) -> dict[str, tf.Tensor]:
    """The embedding signatures' outputs for clip embeddings [n, d]: the video's is their mean
    (as `predict_video` averages every view of every clip)."""
    return {"video_embedding": tf.reduce_mean(clips, axis=0), "clip_embeddings": clips}


def prediction_outputs(probabilities: tf.Tensor,
                       names: tf.lookup.StaticHashTable) -> dict[str, tf.Tensor]:
    """The signature outputs for class probabilities [B, C]."""
    k = min(TOP_K, probabilities.shape[-1])
    scores, ids = tf.math.top_k(probabilities, k=k)
    ids = tf.cast(ids, tf.int64)
    return {"probabilities": probabilities, "top_k_ids": ids, "top_k_scores": scores,
            "top_k_names": names.lookup(ids)}


def default_bounds(model: keras.Model, frame_size: int = schema.FRAME_SIZE,
                   clip_frames: int = schema.CLIP_FRAMES) -> FrameBounds:
    """The bounds a model is exported with unless told otherwise (`export.frame_bounds`)."""
    return FrameBounds(default_max_pixels(frame_size), describe(model, clip_frames)["input_size"],
                       DEFAULT_MAX_CLIPS)


def serving_functions(model: keras.Model, names: tf.lookup.StaticHashTable,
                      clip_frames: int = schema.CLIP_FRAMES,
                      frame_size: int = schema.FRAME_SIZE,
                      embedding_layer: str = DEFAULT_EMBEDDING_LAYER,
                      bounds: FrameBounds | None = None
                      ) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """The six serving functions of a `sports1m_tf.models` model.

    Args:
      model: a model built by `sports1m_tf.models.build_model` (or loaded).
      names: class index → name table (`class_name_table`).
      clip_frames: Frames per client clip.
      frame_size: Side of the stored frames the model was trained on (the
        converter's frame_size): client frames are brought to it before the
        model's crop. Defaults to 200.
      embedding_layer: the layer whose activations the embed signatures return.
      bounds: clips per request and frame sizes refused before any work
        (default: `default_bounds`).

    Returns:
      {signature name: (fn, input_signature)}:
      - `serving_default`: `clips` uint8 [batch, 16, H, W, 3] → `probabilities`
        float32 [batch, C], `top_k_ids` int64 [batch, 5], `top_k_scores`
        float32 [batch, 5], `top_k_names` string [batch, 5] (centre view).
      - `predict_video`: `clips` uint8 [n, 16, H, W, 3], the clips of ONE video
        → the same outputs with batch 1: the mean of the softmax over the 4
        views of the n clips (as evaluation does).
      - `predict_jpeg`: `jpeg_frames` string [batch, 16] → as `serving_default`.
      - `predict_video_jpeg`: `jpeg_frames` string [n, 16], the JPEG frames of the
        clips of ONE video → as `predict_video`.
      - `embed_video`: `clips` as `predict_video` → `clip_embeddings` float32
        [n, d] (each clip's `embedding_layer` activations, the mean over its 4
        views) and `video_embedding` float32 [d] (their mean).
      - `embed_video_jpeg`: `jpeg_frames` as `predict_video_jpeg` → as `embed_video`.
      (k = min(5, C).)
    """
    info = describe(model, clip_frames)
    indices, size = info["frames"], info["input_size"]
    bounds = bounds or default_bounds(model, frame_size, clip_frames)
    frame_layout = f"uint8 [batch, {clip_frames}, height, width, 3]"
    video_layout = f"uint8 [clips of one video, {clip_frames}, height, width, 3]"
    jpeg_layout = f"string [batch, {clip_frames}] of JPEG-encoded frames"
    video_jpeg_layout = f"string [clips of one video, {clip_frames}] of JPEG-encoded frames"

    features = embedding_model(model, embedding_layer)

    def forward(frames):
        return model(frames, training=False)

    def embed(frames):
        return features(frames, training=False)

    def serving_default(clips):
        clips = check_input(clips, signature="serving_default", layout=frame_layout, rank=5,
                            frames=clip_frames, bounds=bounds)
        frames = centre_view(stored_clips(clips, indices, frame_size), size)
        return prediction_outputs(forward(frames), names)

    def video_outputs(stored):
        # The mean softmax over the 4 views of every clip: one row for the video.
        views = all_views(stored, size)
        return prediction_outputs(tf.reduce_mean(forward(views), axis=0, keepdims=True), names)

    def checked_jpeg(jpeg_frames, signature, layout):
        jpeg_frames = check_input(jpeg_frames, signature=signature, layout=layout, rank=2,
                                  frames=clip_frames, bounds=bounds)
        return check_jpeg(jpeg_frames, signature=signature, bounds=bounds)

    def predict_video(clips):
        clips = check_input(clips, signature="predict_video", layout=video_layout, rank=5,
                            frames=clip_frames, bounds=bounds)
        return video_outputs(stored_clips(clips, indices, frame_size))

    def predict_jpeg(jpeg_frames):
        jpeg_frames = checked_jpeg(jpeg_frames, "predict_jpeg", jpeg_layout)
        frames = centre_view(decode_stored_clips(jpeg_frames, indices, frame_size), size)
        return prediction_outputs(forward(frames), names)

    def predict_video_jpeg(jpeg_frames):
        jpeg_frames = checked_jpeg(jpeg_frames, "predict_video_jpeg", video_jpeg_layout)
        return video_outputs(decode_stored_clips(jpeg_frames, indices, frame_size))

    def embed_video(clips):
        clips = check_input(clips, signature="embed_video", layout=video_layout, rank=5,
                            frames=clip_frames, bounds=bounds)
        return embedding_outputs(clip_embeddings(embed, stored_clips(clips, indices, frame_size),
                                                 size))

    def embed_video_jpeg(jpeg_frames):
        jpeg_frames = checked_jpeg(jpeg_frames, "embed_video_jpeg", video_jpeg_layout)
        return embedding_outputs(clip_embeddings(
            embed, decode_stored_clips(jpeg_frames, indices, frame_size), size))

    clips_spec = [tf.TensorSpec(None, tf.uint8, name="clips")]
    jpeg_spec = [tf.TensorSpec(None, tf.string, name="jpeg_frames")]
    return {
        "serving_default": (serving_default, clips_spec),
        "predict_video": (predict_video, clips_spec),
        "predict_jpeg": (predict_jpeg, jpeg_spec),
        "predict_video_jpeg": (predict_video_jpeg, jpeg_spec),
        "embed_video": (embed_video, clips_spec),
        "embed_video_jpeg": (embed_video_jpeg, jpeg_spec),
    }
