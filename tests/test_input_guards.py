"""Which clips evaluation and validation read, and a training stream that only skips.

Video-level evaluation scores clips spread over each whole video, the same ones
whatever the shard layout; validation during training reads a subset spread over
as many videos as its budget allows; an endless stream whose records all fail
ends within a bounded number of records, naming the file.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from sports1m_tf.data import clip_selection
import testvideos as tv


def _fake_clips(videos: int, clips: int) -> dict[bytes, np.ndarray]:
    return {f"video{v:03d}".encode(): np.arange(clips, dtype=np.int64) * 640_000
            for v in range(videos)}


def test_validation_budget_spreads_over_videos():
    clips = _fake_clips(120, 100)
    selection = clip_selection.spread_over_videos(clips, 1600, seed=0)
    assert clip_selection.selected_count(selection) == 1600
    assert len(selection) >= 0.9 * 120  # here: every video
    for media, starts in selection.items():
        assert starts == sorted(set(starts))  # distinct, in time order
        # A video's share is spread over its whole length, not its first clips.
        assert starts[0] < clips[media][20] and starts[-1] > clips[media][79]
    assert selection == clip_selection.spread_over_videos(clips, 1600, seed=0)
    # Short videos give all they have; the rest of the budget goes to the others.
    uneven = {**clips, b"short": np.array([0, 640_000])}
    spread = clip_selection.spread_over_videos(uneven, 1600)
    assert spread[b"short"] == [0, 640_000] and clip_selection.selected_count(spread) == 1600
    # A budget below the number of videos: one clip each of that many videos.
    few = clip_selection.spread_over_videos(clips, 50, seed=3)
    assert len(few) == 50 and all(len(s) == 1 for s in few.values())


def test_per_video_selection_is_evenly_spaced_and_keeps_short_videos_whole():
    starts = np.arange(49, dtype=np.int64) * 640_000  # a 31-second video: 49 clips
    picked = clip_selection.evenly_spaced(starts, 20)
    assert len(picked) == 20 and picked[0] <= starts[2] and picked[-1] >= starts[-3]
    gaps = np.diff(picked)
    assert gaps.min() >= 640_000 and gaps.max() <= 3 * 640_000
    assert clip_selection.evenly_spaced(starts[:7], 20) == starts[:7].tolist()


@pytest.fixture(scope="module")
def long_video_records(tmp_path_factory):
    """One 800-frame (33 s at 24 fps) video converted into 1 and into 7 shards."""
    from tfrecord_tools.convert import convert
    root = tmp_path_factory.mktemp("long_video")
    video = tv.write_video(str(root / "long.avi"), num_frames=800, width=40, height=32, seed=3)
    manifest = root / "long.csv"
    manifest.write_text(f"{video},long\n")
    out = {}
    for shards in (1, 7):
        folder = str(root / f"shards{shards}")
        convert(str(manifest), output_dir=folder, split="test", num_shards=shards,
                clips_per_video=100, frame_size=24, progress=False)
        out[shards] = [os.path.join(folder, "test-*")]
    return out


def test_video_level_clips_are_the_same_in_any_shard_layout(long_video_records):
    from sports1m_tf.data import eval_dataset, list_files
    listed = {n: clip_selection.list_clips(list_files(p)) for n, p in long_video_records.items()}
    (starts,) = listed[1].values()
    assert len(starts) == 50 and np.array_equal(starts, list(listed[7].values())[0])
    chosen = clip_selection.spread_per_video(listed[1], 20)[b"long"]
    # Spread over the whole video, not its first 20 clips in reading order.
    assert chosen[0] <= starts[2] and chosen[-1] >= starts[-3]

    def scored(pattern):
        ds = eval_dataset(pattern, model="single_frame", batch_size=8, num_classes=1,
                          clips_per_video=20, views=1, input_size=16)
        rows = [(int(c), f.tobytes()) for b in ds
                for c, f in zip(b["clip_index"].numpy(), b["frames"].numpy())]
        return sorted(rows)

    one, seven = scored(long_video_records[1]), scored(long_video_records[7])
    assert [c for c, _ in one] == list(range(20))
    assert one == seven


def test_a_stream_that_only_skips_ends_and_names_the_file(tmp_path):
    import tensorflow as tf

    from sports1m_tf.data import ErrorCounter, clip_dataset
    from sports1m_tf.data.errors import SkippedRecordsError
    path = str(tmp_path / "broken.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:  # records that parse but never decode
        from tfrecord_tools import clip_encoding
        for i in range(5):
            writer.write(clip_encoding.encode_clip(
                media_id=f"v{i}", label_indices=[0], label_strings=["a"],
                encoded_frames=[b"not a jpeg"] * 16, frame_timestamps_us=list(range(16)),
                frame_rate=25.0, height=40, width=40))
    counter = ErrorCounter(max_skipped_fraction=0.01)
    ds = clip_dataset(path, model="single_frame", training=True, batch_size=2, num_classes=1,
                      input_size=16, repeat=-1, seed=0, error_counter=counter)
    assert list(ds) == []  # the endless stream ended
    assert counter.records_read() < 200
    with pytest.raises(SkippedRecordsError, match=r"broken\.tfrecord \(\d+\)"):
        counter.check_budget()


def test_a_shard_cut_short_is_named_before_training(tmp_path):
    # A cut shard reads as whole up to the cut and then just ends: without the size
    # the converter recorded, its lost clips would go unnoticed.
    from sports1m_tf.data import input_checks
    from tfrecord_tools.convert import convert
    video = tv.write_video(str(tmp_path / "v.avi"), num_frames=96, width=40, height=32, seed=1)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{video},a\n")
    out = tmp_path / "records"
    convert(str(manifest), output_dir=str(out), split="train", num_shards=2, clips_per_video=6,
            frame_size=32, progress=False)
    shards = sorted(str(p) for p in out.glob("train-*"))
    input_checks.check_shards_whole(shards)  # as written: whole
    with open(shards[1], "r+b") as f:
        f.truncate(os.path.getsize(shards[1]) // 2)
    with pytest.raises(input_checks.InputError, match=r"train-00001-of-00002.*cut short"):
        input_checks.check_shards_whole(shards)
    with pytest.raises(input_checks.InputError, match="cut short"):
        input_checks.check_run_inputs([str(out / "train-*")], None, 24)
