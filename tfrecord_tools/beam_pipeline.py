"""The conversion as an Apache Beam pipeline, for Sports-1M-sized jobs on a cluster.

Same manifest reading, same per-video function (`video_clips.convert_video`) and
same `dataset.json` as the local path; only the engine differs:

  driver:   read the manifest (malformed lines reported with file:line), write the
            parsed entries as JSON lines to OUTPUT_DIR/.work/SPLIT-beam/entries.jsonl
  pipeline: ReadFromText(entries) → Reshuffle (one small file is one bundle; spread
            the videos over workers) → ParDo(convert_video) ─┬─ (bucket, record)
                                                             └─ outcomes → WriteToText
            (bucket, record) → GroupByKey → records → WriteToTFRecord
            (each clip's bucket and rank are hashes of (seed, video, clip): a
            bucket is a random sample of ≈256 clips of the split, grouped by the
            engine's shuffle and written in rank order, so neighbours in the
            shards come from many videos whatever order the runner keeps; Beam's
            sink writes the shards to a temporary folder and renames them
            when the stage commits, so shards appear whole)
  driver:   read the outcomes, build dataset.json with `summary.split_section`.

A video that fails yields an outcome with its reason and no record; its element
never raises, so one bad file cannot fail the pipeline. Paths go through
`fileio`, i.e. `tf.io.gfile` for gs:// (see docs/data.md for what was tested).

Beam is imported only here: `pip install .[beam]` (apache-beam, google-crc32c).

Example:
  from tfrecord_tools.beam_pipeline import convert_beam
  convert_beam("videos.csv", output_dir="/data/clips", beam_runner="DirectRunner",
               beam_options=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
"""
from __future__ import annotations

import json
import time
from typing import Sequence

from absl import logging

from tfrecord_tools import fileio, layout, output_guard, shards, summary
from tfrecord_tools.convert import prepare_job, recorded_settings, remove_if_empty
from tfrecord_tools.manifest import VideoEntry
from tfrecord_tools.video_clips import ClipSettings, VideoResult, convert_video

OUTCOME_TAG = "outcome"


def _import_beam():
    try:
        import apache_beam as beam
    except ImportError as e:
        raise ImportError("--runner=beam needs Apache Beam: pip install 'sports1m_tf[beam]' "
                          f"(apache-beam, google-crc32c): {e}") from e
    return beam


class _ConvertVideoFn:
    """FlatMap body: one manifest entry (JSON) → its (bucket, (rank, record)) pairs,
    and its outcome tagged."""

    def __init__(self, settings: ClipSettings, num_buckets: int):
        self.settings, self.num_buckets = settings, num_buckets

    def __call__(self, line: str):
        import apache_beam as beam
        entry = VideoEntry.from_json(json.loads(line))
        try:
            # One FFmpeg thread per element: the runner parallelises over elements.
            result = convert_video(entry, self.settings, decoder_threads=1)
        except Exception as e:  # noqa: BLE001 - never fail the bundle for one video
            result = VideoResult(entry, [], failure=f"unexpected error: {type(e).__name__}: {e}")
        yield beam.pvalue.TaggedOutput(OUTCOME_TAG, json.dumps(result.outcome()))
        for i, record in enumerate(result.records):
            bucket, rank = layout.clip_keys(self.settings.seed, entry.video_id, i,
                                            self.num_buckets)
            yield bucket, (rank, record)


def _in_rank_order(bucket):
    """A bucket's records in the order of their ranks (`layout.clip_keys`)."""
    return [record for _, record in sorted(bucket[1], key=lambda ranked: ranked[0])]


def build_pipeline(pipeline, *, entries_path: str, outcomes_prefix: str, output_dir: str,
                   split: str, num_shards: int, compression: str, settings: ClipSettings,
                   num_buckets: int = 1 << 16):
    """Adds the conversion to a `beam.Pipeline`.

    Args:
      pipeline: a `beam.Pipeline`.
      entries_path: JSON lines of `VideoEntry`s.
      outcomes_prefix: Where the per-video outcomes (JSON lines) go.
      output_dir, split, num_shards, compression: the shards (same naming as local).
      settings: ClipSettings.
      num_buckets: Keys of the shuffle that mixes clips before the sink
        (`layout.beam_buckets`).
    """
    beam = _import_beam()
    from apache_beam.io.filesystem import CompressionTypes
    compression = shards.normalise_compression(compression)
    results = (pipeline
               | "ReadEntries" >> beam.io.ReadFromText(entries_path)
               | "Spread" >> beam.Reshuffle()
               | "Convert" >> beam.FlatMap(_ConvertVideoFn(settings, num_buckets)).with_outputs(
                   OUTCOME_TAG, main="records"))
    _ = (results.records
         | "MixClips" >> beam.GroupByKey()
         | "Ungroup" >> beam.FlatMap(_in_rank_order)
         | "WriteShards" >> beam.io.WriteToTFRecord(
             fileio.join(output_dir, split), file_name_suffix=shards.suffix(compression),
             num_shards=num_shards, shard_name_template="-SSSSS-of-NNNNN",
             compression_type=(CompressionTypes.GZIP if compression == "GZIP"
                               else CompressionTypes.UNCOMPRESSED)))
    _ = (results[OUTCOME_TAG]
         | "WriteOutcomes" >> beam.io.WriteToText(outcomes_prefix, file_name_suffix=".jsonl"))


def convert_beam(manifest: str, *, output_dir: str, beam_runner: str = "DirectRunner",
                 beam_options: Sequence[str] = (), manifest_format: str = "csv",
                 video_root: str | None = None, labels: str | None = None,
                 split: str | None = None, num_shards: int = 16, clips_per_video: int = 100,
                 clip_frames: int = 16, frame_size: int = 200, jpeg_quality: int = 90,
                 seed: int = 0, clip_overlap: bool = False,
                 compression: str | None = "none", overwrite: bool = False) -> dict:
    """Runs the conversion as a Beam pipeline and waits for it. Same arguments and
    result as `convert.convert`, plus:

    Args:
      beam_runner: `DirectRunner`, `DataflowRunner`, `FlinkRunner`, `SparkRunner`...
      beam_options: strs. More pipeline options (`--project=...`, `--direct_num_workers=2`).

    Returns:
      This split's `dataset.json` section plus `classes` and `dataset_json`.
    """
    beam = _import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions
    settings = ClipSettings(clips_per_video, clip_frames, frame_size, jpeg_quality, seed,
                            clip_overlap)
    job = prepare_job(manifest, manifest_format=manifest_format, video_root=video_root,
                      labels=labels, split=split, num_shards=num_shards,
                      compression=compression, settings=settings)
    summary.check_classes(output_dir, job.manifest.classes)
    output_guard.check_replace(output_dir, job.split, job.fingerprint(), overwrite)
    recorded = recorded_settings(job, manifest=manifest, manifest_format=manifest_format,
                                 video_root=video_root, labels=labels)

    work = fileio.join(output_dir, ".work", f"{job.split}-beam")
    fileio.rmtree(work)  # Beam retries inside a run; a rerun starts the pipeline over
    fileio.makedirs(work)
    entries_path = fileio.join(work, "entries.jsonl")
    fileio.write_text_atomic(entries_path, "".join(json.dumps(e.to_json()) + "\n"
                                                   for e in job.manifest.entries))
    outcomes_prefix = fileio.join(work, "outcomes")

    extra = list(beam_options)
    if not any(o.startswith("--default_sdk_harness_log_level") for o in extra):
        extra.append("--default_sdk_harness_log_level=WARNING")  # workers log each bundle
    options = PipelineOptions([f"--runner={beam_runner}", *extra])
    import logging as std_logging
    std_logging.getLogger("apache_beam").setLevel(max(std_logging.WARNING,
                                                      std_logging.getLogger().level))
    start = time.monotonic()
    if job.manifest.entries:
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, entries_path=entries_path, outcomes_prefix=outcomes_prefix,
                           output_dir=output_dir, split=job.split, num_shards=job.num_shards,
                           compression=job.compression, settings=settings,
                           num_buckets=layout.beam_buckets(len(job.manifest.entries),
                                                           clips_per_video))
    else:  # nothing to read: Beam would write no shard at all
        shards.write_shards(output_dir, job.split, job.num_shards, job.compression, [])
    outcomes = [json.loads(line)
                for path in fileio.glob_files(outcomes_prefix + "*")
                for line in fileio.read_text(path).splitlines() if line.strip()]
    elapsed = time.monotonic() - start
    finals = shards.shard_paths(output_dir, job.split, job.num_shards, job.compression)
    _complete_shard_set(finals, job.compression)
    shards.remove_stale(output_dir, job.split, keep=finals)

    section = summary.split_section(
        classes=job.manifest.classes, outcomes=outcomes,
        problems=[p.to_json() for p in job.manifest.problems], split=job.split,
        num_shards=job.num_shards, compression=job.compression, runner=f"beam:{beam_runner}",
        settings=recorded, fingerprint=job.fingerprint())
    section["layout"] = layout.NAME
    path = summary.write_split(output_dir, job.manifest.classes, job.split, section)
    fileio.rmtree(work)
    remove_if_empty(fileio.join(output_dir, ".work"))
    logging.info("%s: %d clips from %d videos in %.1f s with Beam %s; %d failed (see %s)",
                 job.split, section["clips"], section["videos_converted"], elapsed, beam_runner,
                 section["videos_failed"], path)
    return {**section, "classes": job.manifest.classes, "dataset_json": path}


def _complete_shard_set(paths: list[str], compression: str) -> None:
    """Writes the shards Beam left out (it writes none for a shard that got no
    element), so the `-of-NNNNN` set is always complete, as on the local path."""
    missing = [p for p in paths if not fileio.exists(p)]
    if not missing:
        return
    import tensorflow as tf  # only here: a run with fewer clips than shards
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compression == "GZIP" else "")
    for p in missing:
        with tf.io.TFRecordWriter(p, options):
            pass
