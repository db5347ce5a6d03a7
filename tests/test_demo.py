"""sports1m-demo: the --quick smoke run end to end (every command once), and its resume rules.

The smoke run is the real console command in a subprocess: it generates videos,
converts them, trains both models one step, evaluates, exports and predicts.
The resume rules are checked on a stage made of the real `sports1m-synth`
command, which needs no TensorFlow and takes well under a second.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess

import pytest

from sports1m_tf import demo, synthetic

STAGE_COMMANDS = ("sports1m-synth", "sports1m-convert", "sports1m-train", "sports1m-eval",
                  "sports1m-export", "sports1m-predict")


def _run_demo(workdir: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(demo.resolve_command("sports1m-demo") + [f"--workdir={workdir}", "--quick", *flags],
                          capture_output=True, text=True, env=demo.child_env(), timeout=300)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("demo") / "run")
    result = _run_demo(workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, result


def test_quick_demo_runs_every_command_and_leaves_its_artefacts(quick_run):
    workdir, result = quick_run
    out = result.stdout
    for name in STAGE_COMMANDS:
        assert f"$ {name} " in out, f"{name} was not run (or not printed)"
    assert out.count("$ sports1m-convert ") == 3  # train, val, test
    for model in demo.MODELS:
        assert os.path.isfile(os.path.join(workdir, "runs", model, "model.keras"))
        assert os.listdir(os.path.join(workdir, "runs", model, "train"))  # TensorBoard events
        with open(os.path.join(workdir, "reports", model, "metrics.json")) as f:
            report = json.load(f)
        # 11 classes x 1 test video each (--quick: 1 train / 1 val / 1 test per class).
        assert report["videos"] == len(synthetic.CLASS_SETS["mixed"])
        row = next(line for line in out.splitlines() if line.startswith(f"| {model} |"))
        assert f"| {100 * report['video_hit_at_1']:.1f} |" in row
    best = demo.best_model(workdir)
    version = os.path.join(workdir, "serving", best, "1")
    assert os.path.isfile(os.path.join(version, "saved_model.pb"))
    with open(os.path.join(version, "assets", "class_names.txt")) as f:
        assert f.read().split() == list(synthetic.CLASS_SETS["mixed"])
    assert f"SavedModel:   {os.path.abspath(version)}" in out
    with open(os.path.join(workdir, "predictions.json")) as f:
        predictions = json.load(f)
    truths = [p["true_class"] for p in predictions]
    assert truths[0] in synthetic.MOTION_CLASSES and truths[1] in synthetic.APPEARANCE_CLASSES
    for p in predictions:
        assert "error" not in p
        probs = [t["probability"] for t in p["top_k"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True)
        assert {t["name"] for t in p["top_k"]} <= set(synthetic.CLASS_SETS["mixed"])
    with open(os.path.join(workdir, demo.STATE_FILE)) as f:
        state = json.load(f)
    assert all(stage["finished"] for stage in state.values()) and len(state) == 8


def test_rerun_skips_every_finished_stage(quick_run):
    workdir, first = quick_run
    again = _run_demo(workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "$ sports1m-" not in again.stdout  # no command ran
    assert again.stdout.count("done in an earlier run, skipped") == 8
    table = lambda out: out[out.index("| model |"):out.index("models:")]
    assert table(again.stdout) == table(first.stdout)


def _synth_stage(videos: int) -> demo.Stage:
    return demo.Stage("synth", "synthetic videos", [(
        "sports1m-synth", ["--output_dir=synth", "--classes=still,red_square",
                           f"--videos_per_class={videos}", "--splits=train=1.0",
                           "--num_frames=4", "--size=16"])],
        ["synth"], demo._exists("synth/synthetic.json"))


def test_stage_skips_resumes_and_restarts_clean(tmp_path, capsys):
    workdir = str(tmp_path)
    demo.prepare_workdir(workdir, restart=False)
    state = demo.load_state(workdir)
    assert demo.run_stage(workdir, _synth_stage(1), state, False, "1/1") is True
    marker = tmp_path / "synth" / "left_by_the_first_run"
    marker.write_text("x")
    # Finished with the same command: skipped, outputs untouched.
    assert demo.run_stage(workdir, _synth_stage(1), state, False, "1/1") is False
    assert marker.exists()
    # A stage before it ran again: this one starts clean.
    assert demo.run_stage(workdir, _synth_stage(1), state, True, "1/1") is True
    assert not marker.exists()
    # Interrupted (recorded as unfinished) with the same command: resumed on top.
    marker.write_text("x")
    state["synth"]["finished"] = False
    assert demo.run_stage(workdir, _synth_stage(1), state, False, "1/1") is True
    assert marker.exists()
    # Another command (other flags): outputs deleted, then run.
    assert demo.run_stage(workdir, _synth_stage(2), state, False, "1/1") is True
    assert not marker.exists()
    with open(tmp_path / "synth" / "train.csv") as f:
        assert len(f.read().splitlines()) == 4  # 2 classes x 2 videos
    assert "--videos_per_class=2" in demo.load_state(workdir)["synth"]["commands"][0]
    assert "$ sports1m-synth --output_dir=synth" in capsys.readouterr().out


def test_failed_command_names_itself(tmp_path):
    with pytest.raises(RuntimeError, match=r"exit status \d+: sports1m-synth --bogus"):
        demo.run_command("sports1m-synth", ["--bogus"], cwd=str(tmp_path))


def test_workdir_of_other_files_is_refused_and_restart_empties_a_demo_one(tmp_path):
    from absl import app

    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    with pytest.raises(app.UsageError, match="not a demo workdir"):
        demo.prepare_workdir(str(other), restart=True)
    assert (other / "precious.txt").exists()
    mine = tmp_path / "mine"
    demo.prepare_workdir(str(mine), restart=False)
    (mine / "old").write_text("x")
    demo.prepare_workdir(str(mine), restart=True)
    assert sorted(os.listdir(mine)) == [demo.STATE_FILE]


def test_fallback_modules_match_the_installed_console_scripts():
    scripts = {e.name: e.value.split(":")[0]
               for e in importlib.metadata.entry_points(group="console_scripts")
               if e.name.startswith("sports1m-")}
    if not scripts:
        pytest.skip("the package is not installed (pip install -e .)")
    for name, module in demo.COMMANDS.items():
        assert scripts[name] == module
