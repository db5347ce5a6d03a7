"""sports1m-demo: the --quick smoke run end to end (every command once), its summary,
and its re-run rules; and the package as a user installs it, from a wheel.

The smoke run is the real console command of a wheel of this checkout, installed
(not editable) into a fresh virtual environment and run from an unrelated folder:
it generates videos, converts them, trains both models one step, evaluates,
exports and predicts. The re-run rules are checked on a stage made of the real
`sports1m-synth` command, which needs no TensorFlow and takes well under a second.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import venv

import pytest

from sports1m_tf import cli, demo, synthetic

STAGE_COMMANDS = ("sports1m-synth", "sports1m-convert", "sports1m-train", "sports1m-eval",
                  "sports1m-export", "sports1m-predict")
STAGES = ("synth", "convert", "train", "eval", "export", "predict")
SCORES = ("clip_hit_at_1", "video_hit_at_1", "motion_video_hit_at_1",
          "appearance_video_hit_at_1")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> dict:
    """A virtual environment with this checkout's wheel installed (not editable).

    Its dependencies are this environment's (a .pth line; the editable install's own
    hooks there are not run), so only the package comes from the wheel. Commands run
    from `home`, a folder that has nothing of the repository.
    """
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(root / "dist"), REPO],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel, = glob.glob(str(root / "dist" / "sports1m_tf-*.whl"))
    venv.create(root / "venv", with_pip=False)
    python = str(root / "venv" / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True).stdout.strip()
    with open(os.path.join(purelib, "dependencies.pth"), "w") as f:
        # Every site folder of this interpreter (a virtual environment may borrow another's).
        f.writelines(p + "\n" for p in sys.path if p.endswith("site-packages"))
    installed = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                                wheel], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    home = root / "elsewhere"
    home.mkdir()
    return {"bin": str(root / "venv" / "bin"), "python": python, "home": str(home)}


def _run_demo(workdir: str, *flags: str, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    command = ([os.path.join(env["bin"], "sports1m-demo")] if env
               else demo.resolve_command("sports1m-demo"))
    return subprocess.run(command + [f"--workdir={workdir}", "--quick", *flags],
                          capture_output=True, text=True, env=demo.child_env(), timeout=600,
                          cwd=env["home"] if env else None)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, wheel_env):
    workdir = str(tmp_path_factory.mktemp("demo") / "run")
    result = _run_demo(workdir, env=wheel_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, result


def test_the_wheel_holds_the_package_and_its_recipes(wheel_env, quick_run):
    where = subprocess.run(
        [wheel_env["python"], "-c", "import sports1m_tf, export, tfrecord_tools, sports1m_tf.cli "
         "as c; print(sports1m_tf.__file__, export.__file__, tfrecord_tools.__file__, "
         "c.recipe_path('motion_cpu'))"], capture_output=True, text=True,
        cwd=wheel_env["home"])
    assert where.returncode == 0, where.stderr[-2000:]
    venv_root = os.path.dirname(wheel_env["bin"])
    for path in where.stdout.split():
        assert path.startswith(venv_root) and not path.startswith(REPO), path


def test_wheel_trains_two_steps_from_a_recipe(wheel_env, quick_run, tmp_path):
    workdir, _ = quick_run
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [os.path.join(wheel_env["bin"], "sports1m-train"), "--recipe=motion_cpu",
         "--model=single_frame", "--width=0.0625", "--input_size=28", "--batch_size=4",
         f"--train_files={workdir}/records/train-*", f"--model_dir={run_dir}",
         "--train_steps=2", "--log_every=1", "--shuffle_buffer=64"],
        capture_output=True, text=True, timeout=300, cwd=wheel_env["home"])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run_dir / "run_config.json") as f:
        config = json.load(f)
    # The recipe's settings, and the flag given after it over the recipe's.
    assert config["optimizer"] == "adam" and config["kernel_init"] == "he_normal"
    assert config["shuffle_buffer"] == 64 and config["train_steps"] == 2
    assert (run_dir / "model.keras").is_file()


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


def test_rerun_skips_every_finished_stage(quick_run, wheel_env):
    workdir, first = quick_run
    again = _run_demo(workdir, env=wheel_env)
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
