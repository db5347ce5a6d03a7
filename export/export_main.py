r"""sports1m-export: a trained model → a TF Serving SavedModel `EXPORT_DIR/NAME/VERSION/`
(or a TFLite file there).

From a training run (latest checkpoint, class names from its run config):

  sports1m-export --model_dir=runs/slow_fusion --export_dir=serving --name=slow_fusion

From a saved Keras model, with class names one a line:

  sports1m-export --keras_model=model.keras --class_names=labels.txt \
      --export_dir=serving --name=slow_fusion --version=3

Then serve every model under EXPORT_DIR with

  tensorflow_model_server --model_config_file=serving/models.config --rest_api_port=8501

(`--serving_root=/models` writes paths as the tensorflow/serving container sees
a folder mounted at /models).

For phones and edge devices, a TFLite file for the LiteRT interpreter
(EXPORT_DIR/NAME/VERSION/model.tflite with model_info.json and class_names.txt):

  sports1m-export --model_dir=runs/slow_fusion --export_dir=lite --format=tflite \
      --quantize=int8      # or none (float32), float16

int8 calibrates on clips of the run's validation records, or of
--representative_files.
"""
from __future__ import annotations

import os

from absl import app, flags, logging

from export import frame_bounds
from sports1m_tf import cli, run_folder

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training run folder (its run config and checkpoints).")
flags.DEFINE_integer("step", None, "Checkpoint step to export from --model_dir (default latest).")
flags.DEFINE_string("keras_model", None, "A saved .keras model (instead of --model_dir).")
flags.DEFINE_string("export_dir", None, "Folder of served models (TF Serving base folder).")
flags.DEFINE_string("name", None, "Served model name (default: the model's architecture).")
flags.DEFINE_integer("version", None, "Version number (default: the next free integer).")
flags.DEFINE_string("class_names", None,
                    "File with one class name a line (overrides the run's class names).")
flags.DEFINE_string("serving_root", None,
                    "EXPORT_DIR as the server sees it, for models.config (default: its "
                    "absolute path).")
flags.DEFINE_boolean("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")
flags.DEFINE_integer("frame_size", None,
                     "Side of the stored frames the model was trained on (sports1m-convert "
                     "--frame_size); client frames are resized to it before the model's crop. "
                     "Default: read from the dataset.json of the run's training records, "
                     "else 200.")
flags.DEFINE_enum("embedding_layer", "fc7", ["fc7", "fc6"],
                  "The hidden layer the embed_video signatures (and a TFLite file's second "
                  "output) answer with; fc7 is the paper's last hidden layer.")
flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "tflite"],
                  "savedmodel: for TF Serving and sports1m-predict --saved_model; tflite: one "
                  "model.tflite for LiteRT (sports1m-predict --tflite).")
flags.DEFINE_enum("quantize", "none", ["none", "float16", "int8"],
                  "TFLite weights: none (float32), float16 (half the size), int8 (full-integer, "
                  "about a quarter; uint8 in, float32 out; calibrated on representative clips).")
flags.DEFINE_list("representative_files", None,
                  "Video files whose clips calibrate --quantize=int8 (default: the run's "
                  "validation records).")
flags.DEFINE_integer("representative_clips", 100, "Clips that calibrate --quantize=int8.")
flags.DEFINE_integer("max_frame_pixels", None,
                     "Most pixels (height x width) of one client frame; the served graph reads "
                     "each JPEG's size from its header and refuses larger frames before "
                     "decoding them (raw frames: from the input's shape). Default: "
                     f"({frame_bounds.DEFAULT_SIDE_FACTOR} x the larger of the frame size "
                     "and 200)^2, "
                     f"{frame_bounds.default_max_pixels(200)} for 200-pixel frames "
                     "(1920x1080 fits). Recorded in model_info.json.")
flags.DEFINE_integer("max_clips", frame_bounds.DEFAULT_MAX_CLIPS,
                     "Most clips in one request (the paper scores 20 a video). Recorded in "
                     "model_info.json.")
flags.mark_flag_as_required("export_dir")
flags.mark_flags_as_mutual_exclusive(["model_dir", "keras_model"], required=True)


def read_class_names(path: str) -> list[str]:
    """One class name a line (blank lines at the end ignored)."""
    if not os.path.isfile(path):
        raise app.UsageError(f"--class_names {path}: no such file")
    with open(path, encoding="utf-8") as f:
        names = f.read().rstrip("\n").split("\n")
    return [n.rstrip("\r") for n in names]


def load_model_and_names(model_dir: str | None, keras_model: str | None, step: int | None):
    """The model to export and the class names its run recorded (None if unknown)."""
    if model_dir:
        return run_folder.restore_model(model_dir, step=step), run_folder.run_class_names(model_dir)
    import keras
    import sports1m_tf.models  # noqa: F401 - registers the custom layers for loading
    if not os.path.isfile(keras_model):
        raise app.UsageError(f"--keras_model {keras_model}: no such file")
    model = keras.models.load_model(keras_model, compile=False)
    return model, run_folder.run_class_names(run_folder.run_folder_of(keras_model))


def run_files(model_dir: str | None, keras_model: str | None, key: str) -> list[str]:
    """The record globs a run recorded under `key` (`train_files`, `val_files`); [] when
    there is no run folder."""
    folder = model_dir or run_folder.run_folder_of(keras_model)
    patterns = run_folder.run_record(folder).get(key) or []
    return [patterns] if isinstance(patterns, str) else list(patterns)


def trained_frame_size(model_dir: str | None, keras_model: str | None) -> int | None:
    """The converter's frame_size of the records a run was trained on, when they are
    still where its run config says (local paths; relative ones from here)."""
    import glob

    from tfrecord_tools import summary
    for pattern in run_files(model_dir, keras_model, "train_files"):
        for shard in sorted(glob.glob(pattern))[:1]:
            info = summary.read(os.path.dirname(shard)) or {}
            for split in info.get("splits", {}).values():
                if split.get("settings", {}).get("frame_size"):
                    return int(split["settings"]["frame_size"])
    return None


def representative_clips(model, frame_size: int) -> list:
    """Calibration clips for int8: --representative_files, else the run's validation records."""
    import glob

    from export import representative
    from export.video_input import VideoError
    from sports1m_tf.models import describe
    frames = describe(model)["frames"]
    count = FLAGS.representative_clips
    if FLAGS.representative_files:
        try:
            return representative.clips_from_videos(FLAGS.representative_files, frames,
                                                    frame_size, count)
        except VideoError as e:
            raise cli.UserError(f"--representative_files: {e}") from e
    files = sorted(f for pattern in run_files(FLAGS.model_dir, FLAGS.keras_model, "val_files")
                   for f in glob.glob(pattern))
    if not files:
        raise cli.UserError("--quantize=int8 calibrates on representative clips: the run's "
                            "validation records were not found; give --representative_files="
                            "VIDEO[,VIDEO...]")
    try:
        return representative.clips_from_records(files, frames, frame_size, count)
    except ValueError as e:
        raise cli.UserError(f"the run's validation records ({files[0]}, ...): {e}; give "
                            "--representative_files or --frame_size") from e


def export_tflite(model, name: str, names, frame_size: int) -> str:
    """The --format=tflite export; returns the version folder."""
    from export import tflite_export
    clips = representative_clips(model, frame_size) if FLAGS.quantize == "int8" else None
    try:
        return tflite_export.export_tflite(
            model, FLAGS.export_dir, name, FLAGS.version, class_names=names,
            quantize=FLAGS.quantize, representative=clips, frame_size=frame_size,
            embedding_layer=FLAGS.embedding_layer)
    except tflite_export.ConversionError as e:
        raise cli.UserError(str(e)) from e


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for flag in ("max_frame_pixels", "max_clips"):
        if FLAGS[flag].value is not None and FLAGS[flag].value < 1:
            raise cli.UserError(f"--{flag} must be at least 1, got {FLAGS[flag].value}")
    from export.saved_model import export_model, exporting
    from sports1m_tf.models import describe
    from tfrecord_tools import fileio

    model, names = load_model_and_names(FLAGS.model_dir, FLAGS.keras_model, FLAGS.step)
    if FLAGS.class_names:
        from sports1m_tf.data import input_checks
        given = read_class_names(FLAGS.class_names)
        input_checks.check_class_names(names, given, model_source=f"{FLAGS.model_dir}",
                                       data_source=f"--class_names {FLAGS.class_names}")
        names = given
    describe(model)  # fails early, naming the problem, for a model not built by sports1m_tf
    name = FLAGS.name or model.name  # e.g. slow_fusion, slow_fusion_multires
    frame_size = FLAGS.frame_size or trained_frame_size(FLAGS.model_dir, FLAGS.keras_model)
    if frame_size is None:
        from tfrecord_tools import schema
        frame_size = schema.FRAME_SIZE
        logging.warning("the run's training records were not found: assuming they hold "
                        "%d-pixel frames (set --frame_size otherwise)", frame_size)
    logging.info("client frames are brought to %d x %d before the model's crop", frame_size,
                 frame_size)
    try:
        with exporting(FLAGS.export_dir, name):
            if FLAGS.format == "tflite":
                print(export_tflite(model, name, names, frame_size))
                return
            path = export_model(model, FLAGS.export_dir, name, FLAGS.version,
                                class_names=names, warmup=FLAGS.warmup,
                                serving_root=FLAGS.serving_root, frame_size=frame_size,
                                embedding_layer=FLAGS.embedding_layer,
                                max_frame_pixels=FLAGS.max_frame_pixels,
                                max_clips=FLAGS.max_clips)
    except (fileio.LockHeld, ValueError) as e:
        raise cli.UserError(str(e)) from None
    logging.info("models.config: %s", os.path.join(FLAGS.export_dir, "models.config"))
    print(path)


run = cli.entry(main)


if __name__ == "__main__":
    run()
