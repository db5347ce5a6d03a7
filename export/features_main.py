r"""sports1m-features: embeddings (fc7 or fc6 activations) of videos, for retrieval and clustering.

Video files through an exported SavedModel (its `embed_video` signature), read
exactly as sports1m-predict reads them (same clips, same decoding processes):

  sports1m-features --saved_model=serving/slow_fusion --output=videos.npz a.mp4 b.mp4
  sports1m-features --saved_model=serving/slow_fusion --manifest=videos.txt --per_clip \
      --output=clips.npz

Clip records of a converted dataset through a training run:

  sports1m-features --model_dir=runs/slow --records='records/test-*' --output=test.npz

The output is a NumPy .npz (np.load(FILE, allow_pickle=False)): `embedding`
float32 [rows, d] and `video` (the video of each row); with --per_clip one row
per clip and its `start_seconds` and `end_seconds`, without it one row per video
(the mean over its clips, each clip the mean over its 4 views, as a video's
prediction averages them). Rows are written in chunks, so the output is never
held in memory. A file that cannot be read is reported and the others carry on.
"""
from __future__ import annotations

import os
import sys

from absl import flags

from export import video_command
from sports1m_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None,
                    "Video files mode: a SavedModel version folder, or a model folder.")
flags.DEFINE_string("model_dir", None,
                    "Records mode: a training run folder (its run config and checkpoints).")
flags.DEFINE_integer("step", None, "Checkpoint step of --model_dir (default: the latest).")
flags.DEFINE_string("records", None, "Records mode: glob of clip-record shards.")
flags.DEFINE_enum("layer", "fc7", ["fc7", "fc6"],
                  "The hidden layer whose activations are the embedding (fc7: the paper's "
                  "last hidden layer; for multires models, after the streams are joined).")
flags.DEFINE_boolean("per_clip", False,
                     "One row per clip with its start_seconds and end_seconds (default: one "
                     "row per video, the mean over its clips).")
flags.DEFINE_string("output", None, "The .npz file to write.")
flags.DEFINE_integer("batch_size", 32, "Records mode: clips per batch (4 views each).")
video_command.define_flags("Choose up to --max_clips clips in every consecutive segment of this "
                           "many seconds, as sports1m-predict does (0: in the whole video).")
flags.mark_flags_as_required(["output"])
flags.mark_flags_as_mutual_exclusive(["saved_model", "model_dir"], required=True)


def _check_flags(argv) -> None:
    video_command.check_flags()
    if not FLAGS.output.endswith(".npz"):
        raise cli.UserError(f"--output {FLAGS.output}: name a .npz file")
    folder = os.path.dirname(os.path.abspath(FLAGS.output))
    if not os.path.isdir(folder):
        raise cli.UserError(f"--output {FLAGS.output}: no such folder {folder}")
    if FLAGS.model_dir:
        if not FLAGS.records:
            raise cli.UserError("--model_dir reads clip records: give --records=GLOB "
                                "(video files go with --saved_model)")
        if len(argv) > 1 or FLAGS.manifest:
            raise cli.UserError("video files go with --saved_model; --model_dir reads "
                                "--records")
    elif FLAGS.records:
        raise cli.UserError("--records goes with --model_dir (a training run)")


def _from_files(argv, rows) -> int:
    """Video files mode; returns the exit status."""
    from export.embeddings import EmbeddingHandler
    from export.video_prediction import VideoModel, resolve_saved_model

    model = VideoModel(resolve_saved_model(FLAGS.saved_model))
    layer = model.info.get("embedding_layer")
    if layer != FLAGS.layer:
        raise cli.UserError(
            f"--saved_model {model.version_dir}: its embed_video signature answers with "
            f"{layer or 'no layer (exported before embeddings existed)'}, not --layer="
            f"{FLAGS.layer}; export it again with sports1m-export --embedding_layer="
            f"{FLAGS.layer}")
    paths, _, errors = video_command.video_inputs(argv)

    def emit(result: dict) -> None:
        if "error" in result:
            print(f"{result['video']}: ERROR: {result['error']}", file=sys.stderr, flush=True)
        else:
            rows.add(result["video"], result["embedding"], result["seconds"])

    failed, total = video_command.run_files(EmbeddingHandler(model, FLAGS.per_clip), paths,
                                            errors, emit)
    return 1 if failed == total else 0


def _from_records(rows) -> int:
    """Records mode; returns the exit status."""
    from tqdm import tqdm

    from export.record_embeddings import record_embeddings
    from sports1m_tf.run_folder import restore_model
    try:
        model = restore_model(FLAGS.model_dir, step=FLAGS.step)
    except FileNotFoundError as e:
        raise cli.UserError(f"--model_dir {e}") from e
    try:
        found = record_embeddings(model, FLAGS.records, layer=FLAGS.layer,
                                  max_clips=FLAGS.max_clips, batch_size=FLAGS.batch_size,
                                  per_clip=FLAGS.per_clip)
        with tqdm(unit="row", file=sys.stderr, dynamic_ncols=True) as bar:
            for video, embeddings, seconds in found:
                rows.add(video, embeddings, seconds)
                bar.update(len(embeddings))
    except ValueError as e:  # no records match, or none fit the model
        raise cli.UserError(f"--records {FLAGS.records}: {e}") from e
    return 0 if rows.rows else 1


def main(argv):
    from export.npz_rows import NpzRows

    _check_flags(argv)
    with NpzRows(FLAGS.output, per_clip=FLAGS.per_clip) as rows:
        status = _from_records(rows) if FLAGS.model_dir else _from_files(argv, rows)
    print(f"{rows.rows} rows of {rows.width or 0} values ({FLAGS.layer}) in {FLAGS.output}",
          file=sys.stderr)
    return status


run = cli.entry(main)


if __name__ == "__main__":
    run()
