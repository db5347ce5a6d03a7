"""sports1m-demo: the --quick smoke run end to end (every command once), its summary,
and its re-run rules.

The smoke run is the real console command in a subprocess: it generates videos,
converts them, trains both models one step, evaluates, exports and predicts. The
re-run rules are checked on a stage made of the real `sports1m-synth` command, which
needs no TensorFlow and takes well under a second.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from sports1m_tf import cli, demo, synthetic

STAGE_COMMANDS = ("sports1m-synth", "sports1m-convert", "sports1m-train", "sports1m-eval",
                  "sports1m-export", "sports1m-predict")
STAGES = ("synth", "convert", "train", "eval", "export", "predict")
SCORES = ("clip_hit_at_1", "video_hit_at_1", "motion_video_hit_at_1",
          "appearance_video_hit_at_1")


def _run_demo(workdir: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(demo.resolve_command("sports1m-demo") +
                          [f"--workdir={workdir}", "--quick", *flags],
                          capture_output=True, text=True, env=demo.child_env(), timeout=600)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("demo") / "run")
    result = _run_demo(workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, result


def test_quick_demo_runs_every_command_and_writes_its_summary(quick_run):
    workdir, result = quick_run
    out = result.stdout
    for name in STAGE_COMMANDS:
        assert f"$ {name} " in out, f"{name} was not run (or not printed)"
    assert out.count("$ sports1m-convert ") == 3  # train, val, test
    assert "--recipe=motion_cpu" in out
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert set(summary) == {"seconds", "models", "predictions"}
    assert set(summary["models"]) == set(demo.MODELS)
    for model, scores in summary["models"].items():
        assert all(0 <= scores[k] <= 1 for k in SCORES)
        with open(os.path.join(workdir, "reports", model, "metrics.json")) as f:
            report = json.load(f)
        # --quick: 1 test video per class of the mixed set.
        assert report["videos"] == len(synthetic.CLASS_SETS["mixed"])
        assert scores["video_hit_at_1"] == report["video_hit_at_1"]
        row = next(line for line in out.splitlines() if line.startswith(f"| {model} |"))
        assert f"| {100 * report['video_hit_at_1']:.1f} |" in row
        assert os.path.isfile(os.path.join(workdir, "runs", model, "model.keras"))
    version = os.path.join(workdir, "serving", "slow_fusion", "1")
    assert os.path.isfile(os.path.join(version, "saved_model.pb"))
    # One held-out test video per class, each with its true class and 5 class names.
    predictions = summary["predictions"]
    assert sorted(p["true_class"] for p in predictions) == sorted(synthetic.CLASS_SETS["mixed"])
    for p in predictions:
        assert p["true_class"] in p["file"] and os.path.isfile(os.path.join(workdir, p["file"]))
        assert len(p["top5"]) == 5 and set(p["top5"]) <= set(synthetic.CLASS_SETS["mixed"])
    assert "sports1m-demo finished in" in out.splitlines()[-1]


def test_rerun_skips_every_finished_stage(quick_run):
    workdir, first = quick_run
    again = _run_demo(workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "$ sports1m-" not in again.stdout  # no command ran
    assert again.stdout.count("finished in an earlier run, skipped") == len(STAGES)
    table = lambda out: out[out.index("| model |"):out.index("models:")]
    assert table(again.stdout) == table(first.stdout)


def _synth(videos: int) -> list:
    return [("sports1m-synth", ["--output_dir=synth", "--classes=still,red_square",
                                f"--videos_per_class={videos}", "--splits=train=1.0",
                                "--num_frames=4", "--size=16"])]


def test_stage_skips_carries_on_and_restarts_clean(tmp_path, capsys):
    workdir = str(tmp_path)
    run = lambda videos, upstream=False, resumable=False: demo.run_stage(
        workdir, "synth", _synth(videos), ["synth"], upstream, resumable)
    assert run(1) is True
    marker = tmp_path / "synth" / "left_by_the_first_run"
    marker.write_text("x")
    assert run(1) is False and marker.exists()  # finished, same command: skipped
    assert run(1, upstream=True) is True and not marker.exists()  # a stage before it ran
    # Interrupted (recorded as unfinished): a resumable stage carries on, another starts clean.
    marker.write_text("x")
    record = tmp_path / demo.STAGES_DIR / "synth.json"
    record.write_text(record.read_text().replace('"finished": true', '"finished": false'))
    assert run(1, resumable=True) is True and marker.exists()
    record.write_text(record.read_text().replace('"finished": true', '"finished": false'))
    assert run(1) is True and not marker.exists()
    marker.write_text("x")
    assert run(2) is True and not marker.exists()  # another command: outputs deleted
    with open(tmp_path / "synth" / "train.csv") as f:
        assert len(f.read().splitlines()) == 4  # 2 classes x 2 videos
    assert "$ sports1m-synth --output_dir=synth" in capsys.readouterr().out


def test_failed_command_names_itself(tmp_path):
    with pytest.raises(cli.UserError, match=r"exit status \d+: sports1m-synth --bogus"):
        demo.run_commands([("sports1m-synth", ["--bogus"])], cwd=str(tmp_path))


def test_a_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("keep")
    result = subprocess.run(demo.resolve_command("sports1m-demo") +
                            [f"--workdir={tmp_path}", "--quick"],
                            capture_output=True, text=True, env=demo.child_env(), timeout=60)
    assert result.returncode == 1 and "not a demo's folder" in result.stderr
    assert (tmp_path / "precious.txt").exists()
