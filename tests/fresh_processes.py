"""Commands started together in fresh processes (sharing TensorFlow's start-up time), then
collected: the tests' way to check console scripts as a user runs them."""
from __future__ import annotations

import subprocess
import sys

from sports1m_tf import demo


def command(name: str, module: str, *args: str) -> list[str]:
    """A console script run by this Python with the checkout's modules (the installed
    script may be older): `name` as argv[0], `module`'s run()."""
    return [sys.executable, "-c", f"import sys; sys.argv[0] = {name!r}; "
            f"from {module} import run; run()", *args]


def run_together(commands: dict[str, list[str]], cwd: str, timeout: float = 600
                 ) -> dict[str, subprocess.CompletedProcess]:
    """Starts every command at once and waits for all; {key: its completed process}."""
    procs = {k: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=demo.child_env(), cwd=cwd) for k, c in commands.items()}
    results = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=timeout)
        results[key] = subprocess.CompletedProcess(commands[key], proc.returncode, out, err)
    return results
