"""sports1m-features: embeddings of real video files (SavedModel) and of clip records (run
folder), checked in fresh processes started together.

The records/files agreement is checked on the same frames: a real video is converted
to records, and the frames of each record (decoded by TensorFlow, as records mode
decodes them) are written back as a lossless video, which files mode then reads.
"""
from __future__ import annotations

import contextlib
import io
import os
import re

import cv2
import fresh_processes
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from export import npz_rows, video_input  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = ("bigbuckbunny", "bikes", "carphone_pristine")
CONVERTED_CLIPS = 3
D = 256   # fc7 at width 0.0625
# Records and files on the same frames (the bound; measured ~1e-6).
AGREE = 1e-4


def _features(*args: str) -> list[str]:
    return fresh_processes.command("sports1m-features", "export.features_main", *args)


def lossless_clip_videos(records_glob: str, folder) -> list[tuple[str, float]]:
    """Each record's 16 frames (decoded by TensorFlow) as a PNG-coded AVI; (path, start s)."""
    from sports1m_tf.data import records
    from tfrecord_tools import schema
    out = []
    files = records.list_files(records_glob)
    for i, record in enumerate(tf.data.TFRecordDataset(files)):
        context, sequence = tf.io.parse_single_sequence_example(
            record, context_features={schema.START_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)},
            sequence_features={schema.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([],
                                                                                   tf.string)})
        frames = [tf.io.decode_jpeg(f, channels=3).numpy()[..., ::-1]
                  for f in sequence[schema.IMAGE_ENCODED]]
        path = str(folder / f"clip{i}.avi")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"png "), 25.0,
                                 frames[0].shape[1::-1])
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))
        writer.release()
        out.append((path, int(context[schema.START_TIMESTAMP]) / 1e6))
    return out


@pytest.fixture(scope="module")
def features(tmp_path_factory, small_run, sample_videos):
    from tfrecord_tools.convert import convert

    tmp = tmp_path_factory.mktemp("features")
    saved = f"--saved_model={small_run['export_dir']}/small"
    manifest = tmp / "bikes.csv"
    manifest.write_text(f"{sample_videos['bikes']},{small_run['classes'][0]}\n")
    convert(str(manifest), output_dir=str(tmp / "records"), split="test", num_shards=2,
            clips_per_video=CONVERTED_CLIPS, workers=1, progress=False)
    records_glob = str(tmp / "records" / "test-*")
    clip_videos = lossless_clip_videos(records_glob, tmp)
    real = [sample_videos[name] for name in SAMPLES]
    listed = tmp / "videos.txt"
    listed.write_text("\n".join([real[0], str(tmp / "missing.mp4"), real[2]]) + "\n")
    out = {name: str(tmp / f"{name}.npz") for name in ("clips", "records", "videos", "fc6")}
    # Three processes load TensorFlow; the two failures stop before it.
    commands = {
        "clips": _features(saved, "--per_clip", "--workers=2", f"--output={out['clips']}",
                           *[p for p, _ in clip_videos], *real),
        "records": _features(f"--model_dir={small_run['model_dir']}", f"--records={records_glob}",
                             "--per_clip", f"--output={out['records']}", "--batch_size=2"),
        "videos": _features(saved, f"--manifest={listed}", f"--output={out['videos']}"),
        "fc6": _features(saved, "--layer=fc6", f"--output={out['fc6']}", real[0]),
        "no_records": _features(f"--model_dir={small_run['model_dir']}",
                                f"--output={out['fc6']}"),
    }
    results = fresh_processes.run_together(commands, cwd=ROOT)
    for key in ("clips", "records", "videos"):
        assert results[key].returncode == 0, (key, results[key].stderr[-3000:])
    loaded = {k: dict(np.load(v, allow_pickle=False)) for k, v in out.items() if k != "fc6"}
    clips = loaded["clips"]
    made = np.isin(clips["video"], [p for p, _ in clip_videos])
    loaded["files"] = {k: v[made] for k, v in clips.items()}
    loaded["real"] = {k: v[~made] for k, v in clips.items()}
    return dict(results=results, npz=loaded, clip_videos=clip_videos, real=real, out=out,
                small_run=small_run, records_glob=records_glob)


def test_records_and_files_agree_on_the_same_frames(features):
    files, records = features["npz"]["files"], features["npz"]["records"]
    assert records["embedding"].shape == (CONVERTED_CLIPS, D)
    assert files["embedding"].shape == (CONVERTED_CLIPS, D)
    assert set(records["video"]) == {"bikes"}
    order = np.argsort(records["start_seconds"])
    starts = [s for _, s in features["clip_videos"]]
    np.testing.assert_allclose(records["start_seconds"][order], sorted(starts), atol=1e-6)
    # 16 frames at 25 fps: the end is just after the last frame.
    np.testing.assert_allclose(records["end_seconds"] - records["start_seconds"], 16 / 25,
                               atol=1e-5)
    by_start = {round(s, 3): i for i, s in enumerate(records["start_seconds"])}
    for row, (path, start) in enumerate(features["clip_videos"]):
        assert files["video"][row] == path
        np.testing.assert_allclose(files["embedding"][row],
                                   records["embedding"][by_start[round(start, 3)]],
                                   atol=AGREE, rtol=0)
    # The clips differ: agreement is not that of constant embeddings.
    assert np.abs(files["embedding"][0] - files["embedding"][1]).max() > 1e-3


def test_a_videos_row_is_the_mean_of_its_clips(features):
    real, videos = features["npz"]["real"], features["npz"]["videos"]
    assert set(real) == {"embedding", "video", "start_seconds", "end_seconds"}
    assert set(videos) == {"embedding", "video"}
    # The manifest's missing file is reported; the others are rows, in the order given.
    assert list(videos["video"]) == [features["real"][0], features["real"][2]]
    assert "missing.mp4: ERROR: no such file" in features["results"]["videos"].stderr
    for row, path in enumerate(videos["video"]):
        clips = real["embedding"][real["video"] == path]
        np.testing.assert_allclose(videos["embedding"][row], clips.mean(axis=0), atol=1e-5)
    # Records: the video's row is the mean of its clips' (in this process).
    from export.record_embeddings import record_embeddings
    from sports1m_tf.run_folder import restore_model
    records = features["npz"]["records"]
    rows = list(record_embeddings(restore_model(features["small_run"]["model_dir"]),
                                  features["records_glob"]))
    assert [(video, row.shape, seconds) for video, row, seconds in rows] == [
        ("bikes", (1, D), None)]
    np.testing.assert_allclose(rows[0][1][0], records["embedding"].mean(axis=0), atol=1e-5)


def test_per_clip_rows_carry_the_clips_times(features):
    real = features["npz"]["real"]
    bikes = real["video"] == features["real"][1]
    starts = video_input.clip_starts(250, 20)              # 250 frames at 25 fps
    np.testing.assert_allclose(real["start_seconds"][bikes], np.array(starts) / 25)
    np.testing.assert_allclose(real["end_seconds"][bikes], (np.array(starts) + 16) / 25)
    assert real["embedding"].dtype == np.float32 and real["embedding"].shape[1] == D


def docs_example() -> str:
    with open(os.path.join(ROOT, "docs", "serving.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    return next(b for b in blocks if "clips.npz" in b)


def test_nearest_neighbours_of_a_clip_are_clips_of_its_video(features):
    """The docs' example on real videos: a clip's five nearest clips come from its own video
    far more often than chance."""
    real = features["npz"]["real"]
    unit = real["embedding"] / np.linalg.norm(real["embedding"], axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    same, chance = [], []
    for query in range(len(unit)):
        nearest = np.argsort(-similarity[query])[:5]
        same.append(np.mean(real["video"][nearest] == real["video"][query]))
        chance.append((np.sum(real["video"] == real["video"][query]) - 1) / (len(unit) - 1))
    assert len(unit) == 8 + 15 + 7
    # Measured: 0.78 of the neighbours against 0.35 by chance (a 16-step, 1/16-width model).
    assert np.mean(same) >= 0.7 and np.mean(same) > 2 * np.mean(chance), (
        np.mean(same), np.mean(chance))
    # The example as the docs show it prints the five nearest clips with their times.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(docs_example().replace("clips.npz", features["out"]["clips"]), {})
    lines = printed.getvalue().splitlines()
    assert len(lines) == 5 and all(re.search(r" s$", line) for line in lines), lines
    everything = features["npz"]["clips"]
    unit = everything["embedding"] / np.linalg.norm(everything["embedding"], axis=1,
                                                    keepdims=True)
    similarity = unit @ unit.T
    for line, i in zip(lines, np.argsort(-similarity[0])[1:6]):
        assert line.split()[0] == f"{similarity[0, i]:.3f}", line
        assert everything["video"][i] in line, line
        assert f"{everything['start_seconds'][i]:.2f}-{everything['end_seconds'][i]:.2f} s" \
            in line, line


def test_layer_must_be_the_exported_one(features):
    result = features["results"]["fc6"]
    assert result.returncode == 1
    assert "answers with fc7, not --layer=fc6" in result.stderr
    assert "--embedding_layer=fc6" in result.stderr
    assert not os.path.exists(features["out"]["fc6"])
    result = features["results"]["no_records"]
    assert result.returncode == 1 and "give --records=GLOB" in result.stderr


def test_rows_are_written_in_chunks(tmp_path):
    path = str(tmp_path / "rows.npz")
    rng = np.random.default_rng(0)
    parts = [(f"video {i} é", rng.normal(size=(i + 1, 3)).astype(np.float32),
              rng.uniform(size=(i + 1, 2))) for i in range(6)]
    with npz_rows.NpzRows(path, per_clip=True, chunk_rows=4) as rows:
        parts.append(("last", np.ones((1, 3), np.float32), np.ones((1, 2))))
        for video, embeddings, seconds in parts:
            rows.add(video, embeddings, seconds)
        assert rows.written == 21 and rows.rows == 22    # the last row waits for its chunk
    data = np.load(path, allow_pickle=False)
    np.testing.assert_array_equal(data["embedding"], np.concatenate([p[1] for p in parts]))
    assert list(data["video"]) == [p[0] for p in parts for _ in range(len(p[1]))]
    np.testing.assert_array_equal(data["start_seconds"], np.concatenate([p[2][:, 0] for p in parts]))
    assert os.listdir(tmp_path) == ["rows.npz"]           # no scratch files left
    with pytest.raises(ValueError, match="rows of width 3"):
        with npz_rows.NpzRows(str(tmp_path / "bad.npz"), per_clip=False) as rows:
            rows.add("a", np.zeros((1, 3)))
            rows.add("a", np.zeros((1, 4)))
    assert os.listdir(tmp_path) == ["rows.npz"]           # a failed run leaves nothing
