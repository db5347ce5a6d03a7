"""README.md runs as written: every command and flag it shows exists, CI runs its test
command, the `make` targets it names exist, and its Python loads a saved model in a
fresh process.

Each `sports1m-*` command of the README's shell blocks is run once with `--helpfull`
(its help path imports no TensorFlow) and every flag shown for it must be listed there.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys

import pytest

from sports1m_tf import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def _blocks(language: str) -> list[str]:
    with open(README) as f:
        text = f.read()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def shell_commands() -> list[list[str]]:
    """The README's shell command lines (continuations joined, comments dropped), as argv."""
    commands = []
    for block in _blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def shown_flags() -> dict[str, set[str]]:
    """sports1m-* command -> the flag names the README passes to it."""
    shown: dict[str, set[str]] = {}
    for argv in shell_commands():
        if argv[0].startswith("sports1m-"):
            names = shown.setdefault(argv[0], set())
            names.update(a[2:].split("=")[0] for a in argv[1:] if a.startswith("--"))
    return shown


def command_modules() -> dict[str, str]:
    """Installed console script -> the module whose run() it calls."""
    return {e.name: e.value.split(":")[0]
            for e in importlib.metadata.entry_points(group="console_scripts")
            if e.name.startswith("sports1m-")}


def test_readme_shows_commands():
    shown = shown_flags()
    assert {"sports1m-convert", "sports1m-train", "sports1m-eval", "sports1m-export",
            "sports1m-predict"} <= set(shown)


@pytest.mark.parametrize("command", sorted(shown_flags()))
def test_every_flag_the_readme_shows_is_accepted(command):
    module = command_modules().get(command)
    if module is None:
        pytest.skip(f"{command}: not installed (pip install -e .)")
    # This Python with the worktree's modules: the installed script may be older.
    argv = [sys.executable, "-c", f"import sys; sys.argv[0] = {command!r}; "
            f"from {module} import run; run()", "--helpfull"]
    result = subprocess.run(argv, capture_output=True, text=True, env=demo.child_env(),
                            timeout=120, cwd=ROOT)
    # absl answers --helpfull with exit status 1; a failed import has no flag list.
    assert "--helpfull" in result.stdout, result.stderr[-2000:]
    listed = set(re.findall(r"--(?:\[no\])?([A-Za-z0-9_]+)", result.stdout))
    missing = sorted(shown_flags()[command] - listed)
    assert not missing, f"README shows {command} --{missing}, which it does not accept"


def test_make_targets_and_ci_run_the_readme_commands():
    with open(os.path.join(ROOT, "Makefile")) as f:
        targets = set(re.findall(r"^([a-z-]+):", f.read(), flags=re.M))
    make = [argv for argv in shell_commands() if argv[0] == "make"]
    assert [argv[1] for argv in make] == ["demo", "test"]
    assert {"demo", "demo-full", "test"} <= targets
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert ci[-1] == "make test"


def test_readme_python_loads_a_saved_model_in_a_fresh_process(tmp_path):
    import keras

    from sports1m_tf.models import build_model

    path = str(tmp_path / "model.keras")
    build_model("single_frame", 3, width=0.0625, input_size=32).save(path)
    block = next(b for b in _blocks("python") if "load_model" in b)
    script = block.replace("runs/slow/model.keras", path) + "\nprint(model.count_params())\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=demo.child_env(), timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) == keras.models.load_model(path).count_params()
