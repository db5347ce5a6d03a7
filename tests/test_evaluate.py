"""sports1m-eval end to end: real video files → clip records → tiny models → report files."""
import csv
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sports1m_tf import metrics, models
from sports1m_tf.evaluation import evaluate, figures
from sports1m_tf.settings import EvalConfig
from sports1m_tf.data import dataset_info
from sports1m_tf.evaluation.video_scores import VideoAccumulator
from tfrecord_tools import clip_encoding, schema

QUIET = EvalConfig(progress=False)
SIZE = 32          # model input
CLIP_STARTS = (0, 12, 24)  # 3 clips of 16 frames from each 40-frame video
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_video(path):
    cap = cv2.VideoCapture(path)
    frames = []
    ok, frame = cap.read()
    while ok:
        frames.append(frame)
        ok, frame = cap.read()
    cap.release()
    assert len(frames) >= 40, path
    return frames


def _clip_record(media_id, labels, classes, frames_bgr, start):
    encoded = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
               for f in frames_bgr[start:start + schema.CLIP_FRAMES]]
    stamps = [int((start + i) * 1e6 / 24) for i in range(schema.CLIP_FRAMES)]
    h, w = frames_bgr[0].shape[:2]
    return clip_encoding.encode_clip(
        media_id=media_id, label_indices=labels, label_strings=[classes[i] for i in labels],
        encoded_frames=encoded, frame_timestamps_us=stamps, frame_rate=24.0, height=h, width=w)


def _write(path, records):
    with tf.io.TFRecordWriter(path) as writer:
        for r in records:
            writer.write(r)


@pytest.fixture(scope="module")
def records(synthetic_dataset, tmp_path_factory):
    """Two shards of clip records from the synthetic val + test videos.

    Every 3rd video has its last clip in the OTHER shard (a video split across
    shards); video 0 is multi-label. Also writes dataset.json like the converter.
    """
    out = tmp_path_factory.mktemp("records")
    classes = synthetic_dataset["classes"]
    videos = synthetic_dataset["videos"]["val"] + synthetic_dataset["videos"]["test"]
    shards = [[], []]
    truth = {}
    for v, (path, name) in enumerate(videos):
        media_id = os.path.splitext(os.path.basename(path))[0]
        labels = [classes.index(name)]
        if v == 0:
            labels.append((labels[0] + 1) % len(classes))
        truth[media_id] = labels
        frames = _read_video(path)
        home = v % 2
        for c, start in enumerate(CLIP_STARTS):
            shard = 1 - home if (v % 3 == 0 and c == len(CLIP_STARTS) - 1) else home
            shards[shard].append(_clip_record(media_id, labels, classes, frames, start))
    names = [f"test-{i:05d}-of-00002.tfrecord" for i in range(2)]
    for name, recs in zip(names, shards):
        _write(str(out / name), recs)
    with open(out / "dataset.json", "w") as f:
        json.dump({"classes": classes, "num_classes": len(classes),
                   "splits": {"test": {"shards": names, "videos_converted": len(videos)}}}, f)
    return dict(dir=str(out), pattern=str(out / "test-*.tfrecord"), classes=classes,
                truth=truth, split_videos=[os.path.splitext(os.path.basename(p))[0]
                                           for v, (p, _) in enumerate(videos) if v % 3 == 0])


@pytest.fixture(scope="module")
def keras_models(records, tmp_path_factory):
    """Two tiny untrained models reading different frames, saved as .keras files."""
    out = tmp_path_factory.mktemp("models")
    paths = {}
    for seed, name in enumerate(("single_frame", "early_fusion")):
        tf.keras.utils.set_random_seed(seed)
        model = models.build_model(name, len(records["classes"]), width=0.0625, input_size=SIZE)
        paths[name] = str(out / f"{name}.keras")
        model.save(paths[name])
    return paths


def _load(path):
    return evaluate.load_members(keras_models=[path])[0]


def test_accumulator_groups_interleaved_rows_of_split_videos():
    acc = VideoAccumulator(3)
    eye = np.eye(3, dtype=np.float32)
    # shard A then shard B: video "a" appears in both, interleaved with "b" and "c"
    acc.add(["a", "b", "a"], eye[[0, 1, 0]], eye[[0, 1, 0]])
    acc.add(["c", "a"], eye[[2, 1]], eye[[2, 0]])
    result = acc.result()
    assert result.media_ids == ["a", "b", "c"]
    np.testing.assert_allclose(result.probs, [[2 / 3, 1 / 3, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(result.rows, [3, 1, 1])
    assert acc.label_conflicts == 0
    acc.add(["b"], eye[[1]], eye[[2]])  # a clip of b with another label
    assert acc.label_conflicts == 1
    assert acc.result().labels[1].tolist() == [False, True, True]


def test_confusion_figure_for_hundreds_of_classes(tmp_path):
    rng = np.random.default_rng(0)
    counts = np.diag(rng.integers(5, 20, 300)) + (rng.random((300, 300)) < 0.01)
    counts[17, 240] = counts[240, 17] = 30   # a planted, strongly confused pair
    order = metrics.most_confused_classes(counts, 25)
    assert len(order) == 25 and abs(order.index(17) - order.index(240)) == 1
    path = figures.plot_confusion(counts, [f"class {i}" for i in range(300)],
                                  str(tmp_path / "confusion.png"), top_n=25)
    assert open(path, "rb").read(8) == PNG_SIGNATURE
    image = cv2.imread(path)
    assert image is not None and 500 < image.shape[0] < 2000


def test_video_prediction_is_the_mean_of_its_clips_across_shards(records, keras_models):
    """Centre view only, against a direct computation with the model per clip."""
    member = _load(keras_models["single_frame"])
    out = evaluate.score_videos([member], records["pattern"],
                                  num_classes=len(records["classes"]), views=1, batch_size=5,
                                  show_progress=False)
    videos = out["videos"]
    assert sorted(videos.media_ids) == sorted(records["truth"])
    np.testing.assert_array_equal(videos.rows, len(CLIP_STARTS))
    assert out["clips"] == len(CLIP_STARTS) * len(records["truth"])
    # Independent reference for the videos split over both shards: the centre
    # crop of each clip's fully decoded middle frame (the pipeline's windowed
    # decode is exact: sports1m_tf/data/frames.py), through the model, averaged
    # over the video's clips.
    dataset = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(records["pattern"])))
    per_video = {}
    for raw in dataset:
        context, seq = tf.io.parse_single_sequence_example(
            raw, context_features={schema.MEDIA_ID: tf.io.FixedLenFeature([], tf.string)},
            sequence_features={schema.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)})
        media_id = context[schema.MEDIA_ID].numpy().decode()
        if media_id in records["split_videos"]:
            encoded = seq[schema.IMAGE_ENCODED][8]
            height, width = tf.io.extract_jpeg_shape(encoded).numpy()[:2]
            top, left = (height - SIZE) // 2, (width - SIZE) // 2
            crop = tf.io.decode_jpeg(encoded, channels=3).numpy()[
                top:top + SIZE, left:left + SIZE]
            per_video.setdefault(media_id, []).append(
                member.model(crop[None, None], training=False).numpy()[0])
    assert len(per_video) == len(records["split_videos"]) >= 2
    for media_id, probs in per_video.items():
        assert len(probs) == len(CLIP_STARTS)
        row = videos.media_ids.index(media_id)
        np.testing.assert_allclose(videos.probs[row, 0], np.mean(probs, axis=0), atol=2e-6)


@pytest.fixture(scope="module")
def single_report(records, keras_models, tmp_path_factory):
    """The report of the single-frame model alone (4 views, batch 8)."""
    out = str(tmp_path_factory.mktemp("reports") / "single")
    metrics = evaluate.evaluate([_load(keras_models["single_frame"])], records["pattern"],
                                output_dir=out, config=EvalConfig(
                                    batch_size=8, progress=False, montage_videos=6))
    return dict(dir=out, metrics=metrics, probs=np.load(os.path.join(out, "video_probs.npz")))


def test_ensemble_report_files_and_comparison(records, keras_models, single_report, tmp_path):
    early = evaluate.evaluate([_load(keras_models["early_fusion"])], records["pattern"],
                              output_dir=str(tmp_path / "early"), config=EvalConfig(
                                  batch_size=8, progress=False, montage_videos=0))
    both = evaluate.evaluate(
        [_load(keras_models["single_frame"]), _load(keras_models["early_fusion"])],
        records["pattern"], output_dir=str(tmp_path / "avg"), compare_with=single_report["dir"],
        config=EvalConfig(batch_size=8, progress=False, montage_videos=6))
    first = single_report["metrics"]

    # CNN Average: the ensemble's video predictions are the mean of the members' own runs.
    alone = [single_report["probs"], np.load(tmp_path / "early" / "video_probs.npz")]
    ens = np.load(tmp_path / "avg" / "video_probs.npz")
    assert alone[0]["media_ids"].tolist() == alone[1]["media_ids"].tolist() == \
        ens["media_ids"].tolist()
    mean = (alone[0]["member_probs"][:, 0] + alone[1]["member_probs"][:, 0]) / 2
    np.testing.assert_allclose(ens["member_probs"].mean(axis=1), mean, atol=1e-6)
    # the models disagree, so a grouping mistake would show
    assert np.abs(alone[0]["member_probs"] - alone[1]["member_probs"]).max() > 1e-3
    np.testing.assert_array_equal(ens["view_rows"], len(CLIP_STARTS) * 4)

    n_videos = len(records["truth"])
    with open(tmp_path / "avg" / "metrics.json") as f:
        saved = json.load(f)
    assert saved["videos"] == n_videos and saved["clips"] == n_videos * len(CLIP_STARTS)
    assert saved["view_rows"] == saved["clips"] * 4
    assert saved["ensemble"] and len(saved["members"]) == 2
    assert [m["describe"]["name"] for m in saved["models"]] == ["single_frame", "early_fusion"]
    assert saved["members"][0]["video_hit_at_1"] == pytest.approx(first["video_hit_at_1"])
    assert saved["members"][1]["clip_hit_at_1"] == pytest.approx(early["clip_hit_at_1"])
    assert 0 <= saved["video_hit_at_1"] <= saved["video_hit_at_5"] <= 1
    assert set(saved["per_class_ap"]) == set(records["classes"])
    assert saved["classes_with_positives"] == len(records["classes"])

    with open(tmp_path / "avg" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_videos
    multi = [r for r in rows if ";" in r["labels"]]
    assert len(multi) == 1
    assert all(int(r["view_rows"]) == len(CLIP_STARTS) * 4 for r in rows)
    assert np.mean([int(r["hit_at_1"]) for r in rows]) == pytest.approx(both["video_hit_at_1"])

    # Table 2: per-class ΔAP against the single-frame report, largest gain first.
    with open(tmp_path / "avg" / "delta_ap.csv") as f:
        delta = list(csv.DictReader(f))
    assert len(delta) == len(records["classes"])
    for r in delta:
        expected = both["per_class_ap"][r["class"]] - first["per_class_ap"][r["class"]]
        assert float(r["delta_ap"]) == pytest.approx(expected)
    assert [float(r["delta_ap"]) for r in delta] == sorted(
        (float(r["delta_ap"]) for r in delta), reverse=True)
    assert both["comparison"]["delta_mAP"] == pytest.approx(both["mAP"] - first["mAP"])

    with open(tmp_path / "avg" / "confused_pairs.csv") as f:
        pairs = list(csv.DictReader(f))
    assert all(int(p["count"]) == int(p["a_predicted_as_b"]) + int(p["b_predicted_as_a"])
               for p in pairs)
    for name in ("confusion_matrix.png", "predictions_montage.png"):
        path = tmp_path / "avg" / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 200 and image.shape[1] > 200
        assert image.std() > 10  # drawn, not blank
    assert not (tmp_path / "early" / "predictions_montage.png").exists()


def test_on_records_written_by_the_converter(synthetic_dataset, keras_models, tmp_path):
    from tfrecord_tools.convert import convert

    out = str(tmp_path / "converted")
    convert(synthetic_dataset["manifests"]["test"], output_dir=out, split="test",
            labels=synthetic_dataset["classes_file"], num_shards=2, clips_per_video=2,
            frame_size=48, workers=1, progress=False)
    files = sorted(tf.io.gfile.glob(os.path.join(out, "test-*")))
    info, _ = dataset_info.dataset_info(files)
    n_videos = len(synthetic_dataset["videos"]["test"])
    assert dataset_info.expected_videos(files, info) == n_videos
    result = evaluate.evaluate([_load(keras_models["single_frame"])], files,
                               output_dir=str(tmp_path / "report"), config=EvalConfig(
                                   views=1, batch_size=8, progress=False, montage_videos=2))
    assert result["videos"] == n_videos and result["clips"] == 2 * n_videos
    assert list(result["per_class_ap"]) == synthetic_dataset["classes"]


def test_clear_errors(records, keras_models, tmp_path):
    member = _load(keras_models["single_frame"])
    with pytest.raises(ValueError, match="no clip record files match"):
        evaluate.evaluate([member], str(tmp_path / "nothing-*.tfrecord"),
                          output_dir=str(tmp_path / "o"), config=QUIET)
    wrong = models.build_model("single_frame", len(records["classes"]) + 2, width=0.0625,
                               input_size=SIZE)
    with pytest.raises(ValueError, match=r"scores 13 classes but .*dataset.json lists 11"):
        evaluate.evaluate([wrong], records["pattern"], output_dir=str(tmp_path / "o"),
                          config=QUIET)
    frames = [np.full((40, 40, 3), 128, np.uint8)] * schema.CLIP_FRAMES
    unlabelled = tmp_path / "unlabelled-00000-of-00001.tfrecord"
    _write(str(unlabelled), [_clip_record("v", [], [], frames, 0)])
    # The record check skips it (as training does) and the error names file and kind.
    with pytest.raises(ValueError, match=r"could be evaluated: .*unlabelled-00000-of-00001"
                                         r"\.tfrecord \(1\) \(no label: 1\)"):
        evaluate.evaluate([member], str(unlabelled), output_dir=str(tmp_path / "o"),
                          class_names=records["classes"], config=QUIET)


def test_command_under_mirrored_strategy_counts_every_clip_once(records, keras_models,
                                                                single_report, tmp_path):
    """sports1m-eval with MirroredStrategy over 2 logical CPUs, on a training run's model.keras."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(keras_models["single_frame"], run_dir / "model.keras")
    (run_dir / "run_config.json").write_text(json.dumps(
        {"model": "single_frame", "num_classes": len(records["classes"]),
         "class_names": records["classes"], "width": 0.0625, "input_size": SIZE}))
    out = tmp_path / "report"
    # batch 7: a clip's views straddle batches and replicas; the last batch is ragged
    proc = subprocess.run(
        [sys.executable, "-m", "sports1m_tf.evaluation.evaluate", f"--keras_model={run_dir / 'model.keras'}",
         f"--eval_files={records['pattern']}", f"--output_dir={out}", "--batch_size=7",
         "--strategy=mirrored", "--cpu_devices=2", "--montage_videos=0", "--noprogress"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "metrics.json") as f:
        saved = json.load(f)
    assert saved["settings"]["replicas"] == 2
    assert saved["clips"] == single_report["metrics"]["clips"]
    assert saved["view_rows"] == single_report["metrics"]["view_rows"]
    assert saved["clip_hit_at_1"] == pytest.approx(single_report["metrics"]["clip_hit_at_1"])
    dist, one = np.load(out / "video_probs.npz"), single_report["probs"]
    assert sorted(dist["media_ids"].tolist()) == sorted(one["media_ids"].tolist())
    order = [dist["media_ids"].tolist().index(m) for m in one["media_ids"]]
    np.testing.assert_array_equal(dist["view_rows"][order], one["view_rows"])
    np.testing.assert_allclose(dist["member_probs"][order], one["member_probs"], atol=1e-5)

    # The run's own scalars went to RUN_DIR/eval/ (TensorBoard).
    events = EventAccumulator(str(run_dir / "eval"), size_guidance={"tensors": 0})
    events.Reload()
    assert {"clip_hit_at_1", "video_hit_at_1", "video_hit_at_5", "mAP"} <= set(
        events.Tags()["tensors"])
    logged = tf.make_ndarray(events.Tensors("video_hit_at_1")[0].tensor_proto)
    assert float(logged) == pytest.approx(saved["video_hit_at_1"])
