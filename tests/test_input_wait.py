"""Input wait, its verdict and --profile_steps: real runs on 200-pixel records from real videos.

A tiny model on 200-pixel frames spends its time waiting for JPEG decoding; a
model far heavier than its one decoded frame hardly waits. Both figures are
read back from the run's TensorBoard events. The verdicts' wording is checked
on made-up intervals (no timing).
"""
import glob
import logging
import os

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sports1m_tf import synthetic
from sports1m_tf.training import input_wait, profiling, train
from tfrecord_tools.convert import convert

WAIT_TAGS = ("input_wait_fraction", "input_wait_seconds_per_step", "compute_seconds_per_step")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Train records of 200-pixel frames, converted from synthetic video files."""
    root = tmp_path_factory.mktemp("wait_records")
    videos = synthetic.make_dataset(str(root / "videos"), classes="appearance",
                                    splits={"train": 2}, num_frames=32, size=200, seed=0)
    out = str(root / "records")
    convert(videos["manifests"]["train"], output_dir=out, split="train", num_shards=2,
            clips_per_video=2, frame_size=200, progress=False)
    return [os.path.join(out, "train-*")]


def _scalars(model_dir):
    events = EventAccumulator(os.path.join(model_dir, "train"), size_guidance={"tensors": 0})
    events.Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
            for tag in events.Tags()["tensors"] if not tag.startswith("filters/")}


def _run(records, model_dir, caplog, **settings):
    config = train.make_config(train_files=records, model_dir=str(model_dir),
                               strategy="one_device", checkpoint_every=1000, log_every=2,
                               learning_rate=0.001, shuffle_buffer=16, **settings)
    with caplog.at_level(logging.INFO, logger="absl"):
        train.train(config)
    return _scalars(str(model_dir)), caplog.text


def test_tiny_model_waits_for_input_says_so_and_traces_its_profile_steps(records, tmp_path,
                                                                         caplog):
    scalars, log = _run(records, tmp_path / "tiny", caplog, model="single_frame",
                        width=0.0625, input_size=32, batch_size=128, train_steps=16,
                        profile_steps="11,12")
    for tag in WAIT_TAGS:
        assert [s for s, _ in scalars[tag]] == list(range(2, 17, 2)), tag
    waits = [v for _, v in scalars["input_wait_fraction"]]
    assert all(0 <= w <= 1 for w in waits)
    # Reading a 16-frame record of 200-pixel JPEGs and decoding one costs far more than a
    # 1/16-width net's step on 32 pixels.
    assert sum(waits[1:]) / len(waits[1:]) > 0.5, waits
    assert "input wait" in log and "input-bound:" in log, log[-3000:]
    assert "--frame_size=38" in log  # the records' 200 pixels for a 32-pixel crop
    traces = glob.glob(str(tmp_path / "tiny" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0, traces
    assert "profiling steps 11-12" in log


def test_heavy_model_hardly_waits_for_input(records, tmp_path, caplog):
    scalars, log = _run(records, tmp_path / "heavy", caplog, model="single_frame",
                        width=0.5, input_size=170, batch_size=8, train_steps=10)
    waits = [v for _, v in scalars["input_wait_fraction"]]
    assert len(waits) == 5
    # One decoded frame a clip against a half-width network on 170 pixels.
    assert sum(waits[1:]) / len(waits[1:]) < 0.2, waits
    assert "input-bound" not in log and "input is not the limit" in log
    assert not glob.glob(str(tmp_path / "heavy" / "plugins"))


def _interval(wait, clips_per_second=100.0, cpu_cores=2.0):
    return input_wait.Interval(steps=10, clips=int(clips_per_second * 10), wall_seconds=10.0,
                               input_seconds=10.0 * wait, cpu_seconds=10.0 * cpu_cores)


def _setup(**changes):
    return input_wait.InputSetup(**{**dict(model="slow_fusion", crop=170, stored_frame=200,
                                           data_service=None, cores=2, accelerator=True),
                                    **changes})


def test_verdict_comes_once_the_wait_holds_and_again_when_it_changes():
    verdicts = input_wait.Verdicts(_setup())
    said = [verdicts.offer(_interval(w)) for w in
            (0.9, 0.6, 0.6, 0.1, 0.6, 0.6, 0.6, 0.7, 0.01, 0.02, 0.03, 0.01)]
    # The first interval is warm-up; then three high ones in a row, said once.
    assert [i for i, s in enumerate(said) if s] == [6, 10]
    assert said[6].startswith("input-bound: the steps waited for input 60%")
    assert said[10].startswith("input is not the limit: the steps waited for input 2%")


def test_input_bound_advice_follows_the_measured_figures():
    bound = _interval(0.75, clips_per_second=500.0, cpu_cores=2.0)
    local = input_wait.input_bound(bound, _setup())
    # 500 clips/s at 75% wait: the model alone trains 2,000; 250 clips per core-second.
    assert "the model alone would train 2000.0" in local
    assert "250 clips per CPU-second" in local and "about 8 cores" in local
    assert "slow_fusion decodes 10 a clip" in local
    assert "--frame_size=200" not in local and "frame_size" not in local  # 200 fits 170
    service = input_wait.input_bound(bound, _setup(data_service="grpc://h:1"))
    assert "about 4.0x its workers' present cores" in service
    idle = input_wait.input_bound(_interval(0.75, cpu_cores=0.3), _setup(model="single_frame"))
    assert "faster disk" in idle and "decodes" not in idle
    # Idle because other processes hold the CPU: more decoding cores, not a disk.
    loaded = input_wait.input_bound(_interval(0.75, cpu_cores=0.3), _setup(),
                                    machine_load=100.0)
    assert "faster disk" not in loaded and "load 100.0" in loaded


def test_profile_steps_are_checked():
    assert profiling.parse_steps("20,25") == (20, 25) and profiling.parse_steps(None) is None
    for bad in ("25,20", "0,3", "5", "a,b"):
        with pytest.raises(ValueError, match="--profile_steps"):
            profiling.parse_steps(bad)
    with pytest.raises(ValueError, match="--profile_steps"):
        train.train(train.make_config(train_files=["x"], model_dir="y", profile_steps="3"))
