"""Local conversion: a manifest of videos → clip TFRecord shards + dataset.json.

Resumable by construction. Worker processes convert one video at a time with
`video_clips.convert_video` and store each result (records, or the failure) as one
work file `OUTPUT_DIR/.work/SPLIT/videos/<id>.video`, written under a temporary
name and renamed, so it exists whole or not at all. A rerun after a kill skips the
videos whose work file exists. When every video has one, the shards are assembled
from the work files in an order fixed by (seed, video ids) alone (one that
mixes videos, see `layout.py`), written
atomically, `dataset.json` is updated, and `.work/SPLIT` is removed. The result is
therefore the same whatever the number of workers, the completion order or the
number of interruptions.

Example:
  from tfrecord_tools.convert import convert
  summary = convert("videos.csv", output_dir="/data/clips", workers=2, num_shards=8)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import struct
import time
from typing import Iterator

from absl import logging

from tfrecord_tools import fileio, layout, manifest as manifest_lib, output_guard, shards, summary
from tfrecord_tools.video_clips import ClipSettings, convert_video

WORK_DIR = ".work"
_LEN = struct.Struct("<Q")


# --- work files: one per video, [len][outcome JSON] then [len][record] ... -------------

def work_key(video_id: str) -> str:
    """A file-name-safe, collision-free name for a video's work file."""
    safe = re.sub(r"[^\w.-]", "_", video_id)[:80]
    return f"{safe}-{hashlib.sha1(video_id.encode()).hexdigest()[:10]}"


def _work_path(videos_dir: str, video_id: str) -> str:
    return fileio.join(videos_dir, work_key(video_id) + ".video")


def _pack(outcome: dict, records: list[bytes]) -> bytes:
    head = json.dumps(outcome).encode()
    parts = [_LEN.pack(len(head)), head]
    for r in records:
        parts += [_LEN.pack(len(r)), r]
    return b"".join(parts)


def _read_exact(f, n: int, path: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"{path}: work file cut short")
    return data


def read_outcome(path: str) -> dict:
    """The outcome stored at the head of a work file, without reading its records."""
    with fileio.open_binary(path) as f:
        (n,) = _LEN.unpack(_read_exact(f, _LEN.size, path))
        return json.loads(_read_exact(f, n, path))


def iter_records(path: str) -> Iterator[bytes]:
    """The records of a work file, one at a time (memory: one record)."""
    with fileio.open_binary(path) as f:
        (n,) = _LEN.unpack(_read_exact(f, _LEN.size, path))
        f.seek(_LEN.size + n)
        while True:
            head = f.read(_LEN.size)
            if not head:
                return
            if len(head) < _LEN.size:
                head += _read_exact(f, _LEN.size - len(head), path)
            (n,) = _LEN.unpack(head)
            yield _read_exact(f, n, path)


def _convert_and_store(task: tuple) -> dict:
    """Pool task: convert one video, store its work file, return its outcome."""
    entry, settings, videos_dir, threads = task
    result = convert_video(entry, settings, decoder_threads=threads)
    outcome = result.outcome()
    fileio.write_bytes_atomic(_work_path(videos_dir, entry.video_id), _pack(outcome, result.records))
    return outcome


# --- the run ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Job:
    """Everything that determines a conversion's output (its fingerprint)."""

    manifest: manifest_lib.Manifest
    settings: ClipSettings
    split: str
    num_shards: int
    compression: str

    def fingerprint(self) -> str:
        settings = dataclasses.asdict(self.settings)
        if not settings["clip_overlap"]:
            # Left out when off, so work folders and dataset.json written before the
            # option existed keep their fingerprint (a killed run still resumes).
            del settings["clip_overlap"]
        blob = json.dumps({
            "classes": self.manifest.classes,
            "entries": [e.to_json() for e in self.manifest.entries],
            "problems": [p.to_json() for p in self.manifest.problems],
            "settings": settings,
            "split": self.split, "num_shards": self.num_shards, "compression": self.compression,
        }, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def prepare_job(manifest: str, *, manifest_format: str = "csv", video_root: str | None = None,
                labels: str | None = None, split: str | None = None, num_shards: int = 16,
                compression: str | None = "none", settings: ClipSettings = ClipSettings()
                ) -> Job:
    """Reads the manifest and fixes every choice that determines the output."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    m = manifest_lib.read_manifest(manifest, manifest_format, video_root=video_root, labels=labels)
    for p in m.problems:
        logging.warning("%s: %s", p.source, p.reason)
    return Job(m, settings, split or manifest_lib.guess_split(manifest), num_shards,
               shards.normalise_compression(compression))


def recorded_settings(job: Job, *, manifest: str, manifest_format: str, video_root, labels) -> dict:
    return {**dataclasses.asdict(job.settings), "manifest": manifest,
            "manifest_format": manifest_format, "video_root": video_root, "labels": labels}


def convert(manifest: str, *, output_dir: str, manifest_format: str = "csv",
            video_root: str | None = None, labels: str | None = None, split: str | None = None,
            num_shards: int = 16, workers: int = 1, clips_per_video: int = 100,
            clip_frames: int = 16, frame_size: int = 200, jpeg_quality: int = 90, seed: int = 0,
            clip_overlap: bool = False, compression: str | None = "none",
            keep_work: bool = False, progress: bool = True, overwrite: bool = False) -> dict:
    """Converts the videos of a manifest into clip shards and `dataset.json`.

    Args:
      manifest: Manifest file (see `manifest.py` for the formats).
      output_dir: Where shards and dataset.json go (local or gs://).
      manifest_format: `csv`, `sports1m` or `ucf101`.
      video_root: Folder the manifest's paths are relative to.
      split: Shard name prefix; default `train`, or `test` when the
        manifest's name says so.
      num_shards: Shards for this split.
      workers: Processes converting videos (0 = one per core).
      clips_per_video, clip_frames, frame_size, jpeg_quality, seed: see `ClipSettings`.
      clip_overlap: Overlapping windows when a video has fewer disjoint ones than
        `clips_per_video` (UCF-101 protocol: 50 clips a video). See `ClipSettings`.
      compression: `none` or `GZIP`.
      keep_work: Keep `.work/SPLIT` (per-video results) after success.
      progress: Show a progress bar.
      overwrite: Replace the split's records when they come from another
        manifest or other settings (otherwise that is an error).

    Returns:
      This split's `dataset.json` section plus `classes` and `dataset_json` (its path).
    """
    settings = ClipSettings(clips_per_video, clip_frames, frame_size, jpeg_quality, seed,
                            clip_overlap)
    job = prepare_job(manifest, manifest_format=manifest_format, video_root=video_root,
                      labels=labels, split=split, num_shards=num_shards,
                      compression=compression, settings=settings)
    recorded = recorded_settings(job, manifest=manifest, manifest_format=manifest_format,
                                 video_root=video_root, labels=labels)
    return run_local(job, output_dir, recorded, workers=workers, keep_work=keep_work,
                     progress=progress, overwrite=overwrite)


def _already_done(job: Job, output_dir: str, fingerprint: str) -> dict | None:
    existing = summary.read(output_dir)
    section = existing and existing["splits"].get(job.split)
    if not section or section.get("fingerprint") != fingerprint:
        return None
    names = [fileio.join(output_dir, n) for n in section["shards"]]
    return section if all(fileio.exists(p) for p in names) else None


def run_local(job: Job, output_dir: str, recorded: dict, *, workers: int = 1,
              keep_work: bool = False, progress: bool = True, overwrite: bool = False) -> dict:
    """Runs a prepared job with local processes. See `convert`."""
    output_guard.check_output_dir(output_dir)
    fingerprint = job.fingerprint()
    summary.check_classes(output_dir, job.manifest.classes)
    done = _already_done(job, output_dir, fingerprint)
    if done is not None:
        logging.info("%s: split %r already converted with these inputs and settings",
                     output_dir, job.split)
        return {**done, "classes": job.manifest.classes,
                "dataset_json": fileio.join(output_dir, summary.FILE_NAME)}
    output_guard.check_replace(output_dir, job.split, fingerprint, overwrite)
    with output_guard.split_lock(output_dir, job.split):
        return _convert_locked(job, output_dir, recorded, fingerprint, workers=workers,
                               keep_work=keep_work, progress=progress)


def _convert_locked(job: Job, output_dir: str, recorded: dict, fingerprint: str, *,
                    workers: int, keep_work: bool, progress: bool) -> dict:
    """The conversion proper, while this process holds the split's lock."""

    work = fileio.join(output_dir, WORK_DIR, job.split)
    videos_dir = fileio.join(work, "videos")
    stamp = fileio.join(work, "fingerprint")
    if fileio.exists(work) and (not fileio.exists(stamp) or fileio.read_text(stamp) != fingerprint):
        logging.info("%s: work from other inputs or settings; starting over", work)
        fileio.rmtree(work)
    fileio.makedirs(videos_dir)
    fileio.write_text_atomic(stamp, fingerprint)

    entries = job.manifest.entries
    have = set(fileio.listdir(videos_dir))
    pending = [e for e in entries if work_key(e.video_id) + ".video" not in have]
    if len(pending) < len(entries):
        logging.info("resuming: %d of %d videos already converted", len(entries) - len(pending),
                     len(entries))
    _run_pending(pending, job.settings, videos_dir, workers, progress)

    # Assembly: the outcomes from the work files' heads, then their records streamed
    # in the mixed order of `layout` (never all in memory).
    outcomes = {e.video_id: read_outcome(_work_path(videos_dir, e.video_id)) for e in entries}
    records = layout.mixed_stream(
        [(vid, o["num_clips"]) for vid, o in outcomes.items()],
        lambda vid: iter_records(_work_path(videos_dir, vid)), job.settings.seed)
    counts = shards.write_shards(output_dir, job.split, job.num_shards, job.compression,
                                 records)
    section = summary.split_section(
        classes=job.manifest.classes, outcomes=outcomes.values(),
        problems=[p.to_json() for p in job.manifest.problems], split=job.split,
        num_shards=job.num_shards, compression=job.compression, runner="local",
        settings=recorded, fingerprint=fingerprint)
    section["clips_per_shard"] = counts
    section["layout"] = layout.NAME
    path = summary.write_split(output_dir, job.manifest.classes, job.split, section)
    if not keep_work:
        fileio.rmtree(work)
        remove_if_empty(fileio.join(output_dir, WORK_DIR))
    # Debug level: the command prints its own summary (once) on the console.
    logging.debug("%s: %d clips from %d videos in %d shards; %d videos failed (see %s)",
                 job.split, section["clips"], section["videos_converted"], job.num_shards,
                 section["videos_failed"], path)
    return {**section, "classes": job.manifest.classes, "dataset_json": path}


def remove_if_empty(folder: str) -> None:
    if fileio.isdir(folder) and not fileio.listdir(folder):
        fileio.rmtree(folder)


class _Progress:
    """A tqdm bar with clips/s, plus an absl log line every `every` seconds (for logs
    that are not terminals)."""

    def __init__(self, total: int, enabled: bool, every: float = 30.0):
        self.total, self.every = total, every
        self.videos = self.clips = self.failed = 0
        self.start = self.last_log = time.monotonic()
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="video", dynamic_ncols=True, smoothing=0.1)

    def update(self, outcome: dict) -> None:
        self.videos += 1
        self.clips += outcome["num_clips"]
        self.failed += bool(outcome["failure"])
        now = time.monotonic()
        rate = self.clips / max(now - self.start, 1e-9)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(clips=self.clips, clips_per_s=f"{rate:.1f}", failed=self.failed,
                                 refresh=False)
        if now - self.last_log >= self.every or self.videos == self.total:
            self.last_log = now
            logging.info("%d/%d videos (%.2f videos/s), %d clips (%.1f clips/s), %d failed",
                         self.videos, self.total, self.videos / max(now - self.start, 1e-9),
                         self.clips, rate, self.failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_pending(pending, settings: ClipSettings, videos_dir: str, workers: int,
                 progress: bool) -> None:
    if not pending:
        return
    workers = workers or os.cpu_count() or 1
    workers = min(workers, len(pending))
    bar = _Progress(len(pending), progress)
    try:
        if workers == 1:
            for e in pending:
                bar.update(_convert_and_store((e, settings, videos_dir, 0)))
            return
        # spawn: the parent may have imported TensorFlow, after which fork is unsafe;
        # the workers import only OpenCV and numpy.
        ctx = multiprocessing.get_context("spawn")
        tasks = [(e, settings, videos_dir, 1) for e in pending]
        with ctx.Pool(workers, maxtasksperchild=200) as pool:
            for outcome in pool.imap_unordered(_convert_and_store, tasks, chunksize=1):
                bar.update(outcome)
    except BaseException:
        # Workers stopped mid-write (the pool ends them) leave their temporary files.
        for name in fileio.listdir(videos_dir):
            if name.startswith(".tmp-"):
                fileio.remove_quietly(fileio.join(videos_dir, name))
        raise
    finally:
        bar.close()
