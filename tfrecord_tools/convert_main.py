"""sports1m-convert: videos listed in a manifest → clip TFRecord shards + dataset.json.

Examples:
  # A CSV of `path,label[;label...]` (classes inferred), 2 processes:
  sports1m-convert --manifest=videos.csv --output_dir=/data/clips --workers=2

  # Sports-1M partition file, videos named <youtube id>.* under --video_root:
  sports1m-convert --manifest_format=sports1m --manifest=train_partition.txt \
      --labels=labels.txt --video_root=/data/sports1m/videos --output_dir=/data/s1m \
      --split=train --num_shards=1024 --compression=GZIP --workers=0

  # UCF-101 split 1 (classInd.txt beside the list), 50 clips per video: a ~7 s video
  # has ~11 disjoint 16-frame windows, so the 50 overlap (--clip_overlap):
  sports1m-convert --manifest_format=ucf101 --manifest=ucfTrainTestlist/trainlist01.txt \
      --video_root=UCF-101 --output_dir=/data/ucf1 --clips_per_video=50 --clip_overlap

  # The same conversion as an Apache Beam pipeline (pip install .[beam]):
  sports1m-convert ... --runner=beam --beam_runner=DirectRunner \
      --beam_options="--direct_num_workers=2 --direct_running_mode=multi_processing"

Killed runs resume: rerun the same command. Exits 1 if no clip was converted, or if
any video failed and --strict is set; every failure is listed in dataset.json.
"""
from __future__ import annotations

import shlex
import sys

from absl import flags, logging

from sports1m_tf import cli

from tfrecord_tools import manifest as manifest_lib, output_guard, schema, shards, summary

_MANIFEST = flags.DEFINE_string("manifest", None, "Manifest file (csv, sports1m or ucf101).")
_FORMAT = flags.DEFINE_enum("manifest_format", "csv", list(manifest_lib.FORMATS),
                            "Manifest format.")
_VIDEO_ROOT = flags.DEFINE_string("video_root", None,
                                  "Folder of the videos (default: the manifest's folder).")
_LABELS = flags.DEFINE_string("labels", None, "Class-name file: Sports-1M labels.txt, UCF-101 "
                              "classInd.txt, or one name a line. Inferred from a csv if unset.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where shards and dataset.json go.")
_SPLIT = flags.DEFINE_string("split", None, "Split name, the shards' prefix (train, val, test, "
                             "...). Required, except for UCF-101 trainlistNN/testlistNN.txt and "
                             "Sports-1M train/test_partition.txt manifests, whose names give it.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace a split that already holds records from another manifest "
                               "or other settings (without it, that is an error).")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 16, "Shards for this split.")
_WORKERS = flags.DEFINE_integer("workers", 1, "Processes converting videos (0 = one per core); "
                                "with --runner=beam and the DirectRunner, its worker processes.")
_CLIPS = flags.DEFINE_integer("clips_per_video", 100, "Most clips per video.")
_CLIP_FRAMES = flags.DEFINE_integer("clip_frames", schema.CLIP_FRAMES, "Frames per clip.")
_FRAME_SIZE = flags.DEFINE_integer("frame_size", schema.FRAME_SIZE,
                                   "Stored frames are FRAME_SIZE x FRAME_SIZE (centre crop).")
_QUALITY = flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of stored frames.")
_SEED = flags.DEFINE_integer("seed", 0, "Clip sampling seed (combined with each video id).")
_OVERLAP = flags.DEFINE_bool("clip_overlap", False,
                             "When a video has fewer disjoint windows than --clips_per_video, "
                             "take up to that many distinct, overlapping ones (UCF-101 protocol: "
                             "50 clips a video). Off: disjoint windows only (Sports-1M).")
_COMPRESSION = flags.DEFINE_enum("compression", "none", list(shards.COMPRESSIONS),
                                 "Shard compression.")
_STRICT = flags.DEFINE_bool("strict", False, "Exit non-zero if any video or line failed.")
_KEEP_WORK = flags.DEFINE_bool("keep_work", False, "Keep OUTPUT_DIR/.work after success.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_RUNNER = flags.DEFINE_enum("runner", "local", ["local", "beam"],
                            "local: processes on this machine; beam: an Apache Beam pipeline.")
_BEAM_RUNNER = flags.DEFINE_string("beam_runner", "DirectRunner",
                                   "Beam runner: DirectRunner, DataflowRunner, FlinkRunner, ...")
_BEAM_OPTIONS = flags.DEFINE_string("beam_options", "",
                                    "More Beam pipeline options, one shell-quoted string, e.g. "
                                    "'--project=P --region=R --temp_location=gs://B/tmp'.")


def main(argv: list[str]) -> int:
    del argv
    if not _MANIFEST.value or not _OUTPUT_DIR.value:
        raise cli.UserError("--manifest and --output_dir are required")
    split = _SPLIT.value or manifest_lib.split_from_name(_MANIFEST.value, _FORMAT.value)
    if not split:
        raise cli.UserError(f"--split is required for {_MANIFEST.value}: name the split these "
                            "videos form (e.g. --split=train, --split=val, --split=test)")
    kwargs = dict(
        manifest_format=_FORMAT.value, video_root=_VIDEO_ROOT.value, labels=_LABELS.value,
        split=split, num_shards=_NUM_SHARDS.value, clips_per_video=_CLIPS.value,
        clip_frames=_CLIP_FRAMES.value, frame_size=_FRAME_SIZE.value,
        jpeg_quality=_QUALITY.value, seed=_SEED.value, clip_overlap=_OVERLAP.value,
        compression=_COMPRESSION.value)
    try:
        if _RUNNER.value == "beam":
            from tfrecord_tools import beam_pipeline
            options = shlex.split(_BEAM_OPTIONS.value)
            if (_BEAM_RUNNER.value == "DirectRunner" and _WORKERS.value != 1
                    and not any(o.startswith("--direct_num_workers") for o in options)):
                # --workers means the same on the DirectRunner: that many processes.
                options += [f"--direct_num_workers={_WORKERS.value}",
                            "--direct_running_mode=multi_processing"]
            output_guard.check_output_dir(_OUTPUT_DIR.value)
            with output_guard.split_lock(_OUTPUT_DIR.value, split):
                result = beam_pipeline.convert_beam(
                    _MANIFEST.value, output_dir=_OUTPUT_DIR.value,
                    beam_runner=_BEAM_RUNNER.value, beam_options=options,
                    overwrite=_OVERWRITE.value, **kwargs)
        else:
            from tfrecord_tools.convert import convert
            result = convert(_MANIFEST.value, output_dir=_OUTPUT_DIR.value,
                             workers=_WORKERS.value, keep_work=_KEEP_WORK.value,
                             progress=_PROGRESS.value, overwrite=_OVERWRITE.value, **kwargs)
    except (FileNotFoundError, ValueError, ImportError, PermissionError) as e:
        raise cli.UserError(str(e)) from None
    head, *details = summary.console_lines(result)
    print(head)
    for line in details:
        print(line, file=sys.stderr)
    if result["clips"] == 0:
        logging.error("no clip was converted")
        return 1
    if _STRICT.value and result["failed"]:
        logging.error("--strict: %d videos or lines failed", len(result["failed"]))
        return 1
    return 0


run = cli.entry(main)


if __name__ == "__main__":
    run()
