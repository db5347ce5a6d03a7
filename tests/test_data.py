"""sports1m_tf.data on real records: crops and flips read back from the pixels.

Most records here are written with the converter's `clip_encoding.encode_clip`
from frames whose content is known (random textures, one per frame, JPEG-encoded with OpenCV), so
that the crop window and flip of every output frame can be found by searching
the fully decoded source frame. One test goes through real video files → the
converter → records → both pipelines.
"""
import logging
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from sports1m_tf import data, models
from tfrecord_tools import clip_encoding, schema

SIZE = 48   # stored frame size of the pattern records
CROP = 32   # model input size in these tests
N_CLIPS = 24


def _texture(rng, size=SIZE):
    # Blurred noise: every 32x32 window is unique, and JPEG keeps it recognisable.
    noise = rng.integers(0, 256, (size, size, 3), np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.2)


def _jpeg(frame):
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _record(media_id, labels, encoded, start_us=0, size=SIZE):
    return clip_encoding.encode_clip(
        media_id=media_id, label_indices=labels, label_strings=[str(i) for i in labels],
        encoded_frames=encoded,
        frame_timestamps_us=[start_us + i * 40000 for i in range(len(encoded))],
        frame_rate=25.0, height=size, width=size)


def _write(path, records, compression=None):
    with tf.io.TFRecordWriter(str(path), options=compression) as writer:
        for r in records:
            writer.write(r)
    return str(path)


def _decode_all(encoded):
    return np.stack([tf.io.decode_jpeg(e, channels=3).numpy() for e in encoded])


@pytest.fixture(scope="module")
def pattern(tmp_path_factory):
    """24 clips of 16 distinct 48x48 textures; clip i has label i, video `vid{i // 4}`.

    Clips 0-11 go to a plain shard, 12-23 to a GZIP shard.
    """
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("pattern")
    encoded = [[_jpeg(_texture(rng)) for _ in range(schema.CLIP_FRAMES)] for _ in range(N_CLIPS)]
    records = [_record(f"vid{i // 4}", [i], e, start_us=(i % 4) * 1_000_000)
               for i, e in enumerate(encoded)]
    files = [_write(out / "clips-00000-of-00002.tfrecord", records[:12]),
             _write(out / "clips-00001-of-00002.tfrecord", records[12:], "GZIP")]
    return {"files": files, "glob": str(out / "clips-*"), "encoded": encoded,
            "decoded": [_decode_all(e) for e in encoded]}


def _find(frame, source):
    """(y, x, flipped) of every window of `source` equal to `frame`."""
    windows = np.lib.stride_tricks.sliding_window_view(source, frame.shape)[:, :, 0]
    hits = []
    for flipped in (False, True):
        target = frame[:, ::-1] if flipped else frame
        ys, xs = np.nonzero((windows == target).all(axis=(2, 3, 4)))
        hits += [(int(y), int(x), flipped) for y, x in zip(ys, xs)]
    return hits


def _clips(ds):
    frames, targets = [], []
    for f, t in ds:
        frames.append(f.numpy())
        targets.append(t.numpy())
    return np.concatenate(frames), np.concatenate(targets)


def test_training_crop_and_flip_are_one_per_clip_and_pixels_are_the_decoded_ones(pattern):
    ds = data.clip_dataset(pattern["glob"], model="early_fusion", training=True, batch_size=8,
                           num_classes=N_CLIPS, input_size=CROP, seed=3, repeat=2)
    frames, targets = _clips(ds)
    assert frames.dtype == np.uint8 and frames.shape == (2 * N_CLIPS, 10, CROP, CROP, 3)
    needed = models.frames_needed("early_fusion")
    params = []
    for clip, target in zip(frames, targets):
        source = pattern["decoded"][int(np.argmax(target))]
        found = [_find(frame, source[i]) for frame, i in zip(clip, needed)]
        # Each output frame is exactly one window of its decoded source frame...
        assert all(len(hits) == 1 for hits in found), found
        # ...and the window and the flip are the same in every frame of the clip.
        assert len({hits[0] for hits in found}) == 1, found
        params.append(found[0][0])
    flips = sum(p[2] for p in params)
    assert 12 <= flips <= 36, f"{flips} of {len(params)} clips flipped"
    assert len({p[:2] for p in params}) > 10, "crop offsets barely vary"
    assert sorted(np.argmax(targets, axis=1).tolist()) == sorted(list(range(N_CLIPS)) * 2)


def test_identical_frames_stay_identical(tmp_path):
    rng = np.random.default_rng(1)
    records = [_record(f"still{i}", [0], [_jpeg(_texture(rng))] * 16) for i in range(6)]
    path = _write(tmp_path / "still.tfrecord", records)
    ds = data.clip_dataset(path, model="slow_fusion", training=True, batch_size=6,
                           num_classes=1, input_size=CROP, seed=0)
    frames, _ = _clips(ds)
    assert frames.shape == (6, 10, CROP, CROP, 3)
    assert np.array_equal(frames, np.repeat(frames[:, :1], 10, axis=1))
    assert frames.std() > 10  # not a blank image


def test_flip_off_and_validation_mode(pattern):
    ds = data.clip_dataset(pattern["glob"], model="late_fusion", training=True, batch_size=8,
                           num_classes=N_CLIPS, input_size=CROP, seed=5, flip=False)
    frames, targets = _clips(ds)
    for clip, target in zip(frames, targets):
        source = pattern["decoded"][int(np.argmax(target))]
        assert not any(h[2] for i, f in zip([0, 15], clip) for h in _find(f, source[i]))
    # Validation: centre crop, no flip, records in order, last partial batch kept.
    val = data.clip_dataset(pattern["files"][0], model="single_frame", training=False,
                            batch_size=5, num_classes=N_CLIPS, input_size=CROP)
    frames, targets = _clips(val)
    c = (SIZE - CROP) // 2
    assert frames.shape == (12, 1, CROP, CROP, 3)
    assert np.argmax(targets, axis=1).tolist() == list(range(12))
    for i in range(12):
        assert np.array_equal(frames[i, 0], pattern["decoded"][i][8, c:c + CROP, c:c + CROP])


def test_same_seed_same_batches(pattern):
    def batches(seed):
        ds = data.clip_dataset(pattern["glob"], model="single_frame", training=True,
                               batch_size=6, num_classes=N_CLIPS, input_size=CROP, seed=seed)
        return _clips(ds)

    a, b, c = batches(7), batches(7), batches(8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_eval_views_are_the_four_defined_crops(pattern):
    ds = data.eval_dataset(pattern["glob"], model="late_fusion", batch_size=8,
                           num_classes=N_CLIPS, input_size=CROP, clips_per_video=3)
    for _ in range(2):  # a second pass sees the same clips (the per-video count restarts)
        out = {k: [] for k in ("frames", "media_id", "labels", "clip_index", "view_index")}
        for batch in ds:
            for k in out:
                out[k].append(batch[k].numpy())
        out = {k: np.concatenate(v) for k, v in out.items()}
        # 6 videos x 3 clips x 4 views, views of a clip consecutive.
        assert out["frames"].shape == (6 * 3 * 4, 2, CROP, CROP, 3)
        assert out["view_index"].tolist() == [0, 1, 2, 3] * 18
        per_clip = {k: v.reshape(-1, 4, *v.shape[1:]) for k, v in out.items()}
        assert (per_clip["media_id"] == per_clip["media_id"][:, :1]).all()
        media = [m.decode() for m in per_clip["media_id"][:, 0]]
        assert sorted(media) == sorted(f"vid{v}" for v in range(6) for _ in range(3))
        for m in set(media):
            clips = [int(c) for c, mm in zip(per_clip["clip_index"][:, 0], media) if mm == m]
            assert clips == [0, 1, 2]
        c, e = (SIZE - CROP) // 2, SIZE - CROP
        for views, labels in zip(per_clip["frames"], per_clip["labels"][:, 0]):
            (clip,) = np.nonzero(labels)[0]
            assert labels.sum() == 1
            source = pattern["decoded"][clip][[0, 15]]
            expected = [source[:, c:c + CROP, c:c + CROP],
                        source[:, c:c + CROP, c:c + CROP][:, :, ::-1],
                        source[:, :CROP, :CROP],
                        source[:, e:e + CROP, e:e + CROP][:, :, ::-1]]
            for got, want in zip(views, expected):
                assert np.array_equal(got, want)
    centre = data.eval_dataset(pattern["files"][0], model="single_frame", batch_size=4,
                               num_classes=N_CLIPS, input_size=CROP, views=1)
    batch = next(iter(centre))
    assert batch["view_index"].numpy().tolist() == [0, 0, 0, 0]
    assert np.array_equal(batch["frames"].numpy()[0, 0],
                          pattern["decoded"][0][8, c:c + CROP, c:c + CROP])


def test_bad_records_are_skipped_and_counted_by_file(pattern, tmp_path, caplog):
    good = [_record(f"good{i}", [i], pattern["encoded"][i]) for i in range(3)]
    broken_needed = list(pattern["encoded"][3])
    broken_needed[8] = broken_needed[8][:200]  # truncated JPEG: the frame single_frame reads
    broken_other = list(pattern["encoded"][4])
    broken_other[2] = b"not a jpeg"  # a frame single_frame never decodes: the record lies
    bad = _write(tmp_path / "bad.tfrecord", [
        good[0], b"\x00garbage, not a SequenceExample",
        _record("truncated", [3], broken_needed), good[1],
        _record("short", [5], pattern["encoded"][5][:4]),  # 4 frames: frame 8 missing
        _record("unneeded", [4], broken_other), good[2]])
    counter = data.ErrorCounter()
    ds = data.clip_dataset([bad, pattern["files"][0]], model="single_frame", training=False,
                           batch_size=4, num_classes=N_CLIPS, input_size=CROP,
                           error_counter=counter)
    assert ds.error_counter is counter
    _, targets = _clips(ds)
    # Every frame of a record must be JPEG, read or not (record_check): training and
    # evaluation skip the same records.
    assert sorted(np.argmax(targets, axis=1).tolist()) == sorted([0, 1, 2] + list(range(12)))
    assert counter.by_file() == {bad: 4} and counter.total() == 4
    assert counter.by_problem() == {"frames are not JPEG": 1, "fewer frames than a clip": 1}
    with caplog.at_level(logging.WARNING):
        counter.log_summary()
    assert bad in caplog.text and "4" in caplog.text
    all_frames = data.clip_dataset(bad, model="single_frame", training=False, batch_size=4,
                                   num_classes=N_CLIPS, input_size=CROP,
                                   frame_indices=range(16))
    assert len(_clips(all_frames)[1]) == 3
    assert all_frames.error_counter.by_file() == {bad: 4}
    # Evaluation skips and counts the same records.
    ev = data.eval_dataset(bad, model="single_frame", batch_size=4, num_classes=N_CLIPS,
                           input_size=CROP)
    assert sum(len(b["media_id"]) for b in ev) == 3 * 4
    assert ev.error_counter.total() == 4


def test_only_the_needed_frames_are_decoded(pattern, tmp_path):
    encoded = list(pattern["encoded"][0])
    # Headers intact (the record is sound: record_check reads them), scan data cut.
    corrupt = [frame[:frame.index(b"\xff\xda") + 16] for frame in encoded]
    only_ends = [encoded[0]] + corrupt[1:15] + [encoded[15]]
    only_middle = corrupt[:8] + [encoded[8]] + corrupt[9:]
    path = _write(tmp_path / "sparse.tfrecord",
                  [_record("a", [0], only_ends), _record("b", [0], only_middle)])
    late = data.clip_dataset(path, model="late_fusion", training=False, batch_size=2,
                             num_classes=1, input_size=CROP)
    single = data.clip_dataset(path, model="single_frame", training=False, batch_size=2,
                               num_classes=1, input_size=CROP)
    assert len(_clips(late)[0]) == 1 and late.error_counter.total() == 1
    assert len(_clips(single)[0]) == 1 and single.error_counter.total() == 1


def test_frames_that_would_fail_the_batch_decode_are_refused_one_record_each(pattern,
                                                                          tmp_path):
    rng = np.random.default_rng(5)
    good = [_record(f"good{i}", [i], pattern["encoded"][i]) for i in range(5)]
    cut = list(pattern["encoded"][5])
    cut[8] = cut[8][:cut[8].index(b"\xff\xda") + 40]  # header whole, scan data cut short
    other = list(pattern["encoded"][6])
    other[8] = _jpeg(_texture(rng, SIZE + 16))  # a frame of another size than frame 0
    small = [_jpeg(_texture(rng, CROP - 8))] * 16  # stated and stored 24 px: below the crop
    path = _write(tmp_path / "lies.tfrecord", [
        good[0], _record("cut", [5], cut), good[1], _record("other", [6], other), good[2],
        _record("small", [7], small, size=CROP - 8), good[3], good[4]])
    kinds = {"a frame read is cut short or of another size": 2,
             "frames are smaller than the crop": 1}
    for training in (False, True):
        # Batches of 4 over 8 records: a refused record must not take its batch with it.
        ds = data.clip_dataset(path, model="single_frame", training=training, batch_size=4,
                               num_classes=N_CLIPS, input_size=CROP, seed=1, repeat=1,
                               drop_remainder=False)
        _, targets = _clips(ds)
        assert sorted(np.argmax(targets, axis=1).tolist()) == [0, 1, 2, 3, 4]
        assert ds.error_counter.by_problem() == kinds
        assert ds.error_counter.by_file() == {path: 3}
    ev = data.eval_dataset(path, model="single_frame", batch_size=4, num_classes=N_CLIPS,
                           input_size=CROP)
    assert sum(len(b["media_id"]) for b in ev) == 5 * 4
    assert ev.error_counter.by_problem() == kinds


def test_multi_label_targets_and_wrong_num_classes(tmp_path):
    rng = np.random.default_rng(2)
    enc = [_jpeg(_texture(rng))] * 16
    path = _write(tmp_path / "labels.tfrecord", [
        _record("a", [1, 3], enc), _record("b", [2], enc), _record("c", [0, 4, 2], enc),
        _record("d", [3, 3], enc)])
    _, targets = _clips(data.clip_dataset(path, model="single_frame", training=False,
                                          batch_size=4, num_classes=5, input_size=CROP))
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets, [[0, .5, 0, .5, 0], [0, 0, 1, 0, 0],
                                         [1 / 3, 0, 1 / 3, 0, 1 / 3], [0, 0, 0, 1, 0]],
                               rtol=1e-6)
    ev = next(iter(data.eval_dataset(path, model="single_frame", batch_size=4, views=1,
                                     num_classes=5, input_size=CROP)))
    assert ev["labels"].numpy().tolist()[0] == [0, 1, 0, 1, 0]
    # A label past the class list is a lying record: skipped and counted, not a crash.
    few = data.clip_dataset(path, model="single_frame", training=False, batch_size=4,
                            num_classes=4, input_size=CROP)
    assert len(_clips(few)[1]) == 3
    assert few.error_counter.by_problem() == {"label index outside the class list": 1}


def test_default_shapes_follow_the_model(tmp_path):
    rng = np.random.default_rng(3)
    enc = [_jpeg(_texture(rng, 200))] * 16
    path = _write(tmp_path / "full.tfrecord", [_record("a", [0], enc, size=200)] * 2)
    for name, multires, shape in [("single_frame", False, (1, 170)), ("late_fusion", False, (2, 170)),
                                  ("slow_fusion", True, (10, 178)), ("fovea_only", False, (1, 178))]:
        ds = data.clip_dataset(path, model=name, multires=multires, training=True, batch_size=2,
                               num_classes=3, seed=0)
        frames, target = next(iter(ds))
        assert frames.shape == (2, shape[0], shape[1], shape[1], 3) and frames.dtype == tf.uint8
        assert target.shape == (2, 3) and target.dtype == tf.float32


def test_clear_errors_for_bad_patterns(tmp_path):
    with pytest.raises(ValueError, match="no clip record files match .*nothing-"):
        data.clip_dataset(str(tmp_path / "nothing-*.tfrecord"), model="single_frame",
                          training=True, batch_size=2, num_classes=3)
    stray = tmp_path / "notes.txt"
    stray.write_text("these are not records\n")
    with pytest.raises(ValueError, match="notes.txt is not a TFRecord file"):
        data.eval_dataset(str(tmp_path / "*"), model="single_frame", batch_size=2,
                          num_classes=3)
    with pytest.raises(ValueError, match="views"):
        data.eval_dataset(str(stray), model="single_frame", batch_size=2, num_classes=3, views=5)


def test_records_from_real_videos_through_the_converter(synthetic_dataset, tmp_path):
    from tfrecord_tools.convert import convert

    out = str(tmp_path / "converted")
    convert(synthetic_dataset["manifests"]["val"], output_dir=out, split="val",
            labels=synthetic_dataset["classes_file"], num_shards=2, clips_per_video=2,
            frame_size=SIZE, workers=1, progress=False, compression="GZIP")
    files = sorted(tf.io.gfile.glob(os.path.join(out, "val-*")))
    assert files and all(data.compression_of(f) == "GZIP" for f in files)
    classes = synthetic_dataset["classes"]
    videos = synthetic_dataset["videos"]["val"]
    # The source pixels: every stored frame decoded in full, by label.
    media_ids, by_label = set(), {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        clip = data.parse_clip(record)
        media_ids.add(clip["media_id"].numpy().decode())
        by_label.setdefault(int(clip["labels"].numpy()[0]), []).append(
            _decode_all(clip["encoded"].numpy()))
    assert len(media_ids) == len(videos)

    ds = data.clip_dataset(out + "/val-*", model="late_fusion", training=True, batch_size=4,
                           num_classes=len(classes), input_size=CROP, seed=1)
    frames, targets = _clips(ds)
    assert len(frames) == 2 * len(videos) // 4 * 4
    for clip, target in zip(frames, targets):
        # Some clip of this label shows the same window in its first and last frame.
        assert any(set(_find(clip[0], s[0])) & set(_find(clip[1], s[15]))
                   for s in by_label[int(np.argmax(target))])

    ev = data.eval_dataset(out + "/val-*", model="single_frame", batch_size=8,
                           num_classes=len(classes), input_size=CROP, clips_per_video=1)
    media = [m.decode() for b in ev for m in b["media_id"].numpy()]
    assert sorted(media) == sorted(m for m in media_ids for _ in range(4))
    assert ev.error_counter.total() == 0
