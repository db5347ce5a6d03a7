"""sports1m_tf.cpu_kernels: every entry point asks for oneDNN unless the user chose."""
import os
import subprocess
import sys

import pytest

_CHILD = """
import os, sys
from sports1m_tf import cpu_kernels
if sys.argv[1] == "after_tf":
    import types  # stands in for an imported TensorFlow (a real import takes 5-10 s)
    sys.modules["tensorflow"] = types.ModuleType("tensorflow")
cpu_kernels.prefer_onednn()
print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
"""


def _child(mode: str, env_value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run([sys.executable, "-c", _CHILD, mode], env=env, capture_output=True,
                          text=True, check=True, timeout=120)


@pytest.mark.parametrize("env_value, expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_unset_becomes_on_and_a_users_choice_is_kept(env_value, expected):
    result = _child("before_tf", env_value)
    assert result.stdout.strip() == expected
    assert "imported before prefer_onednn" not in result.stderr


def test_too_late_to_matter_is_reported():
    result = _child("after_tf", None)
    assert "TensorFlow was imported before prefer_onednn()" in result.stderr


_BENCHMARKS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")
_ENTRY_POINTS = ["sports1m_tf.training.train", "sports1m_tf.evaluation.evaluate", "motion_study", "multires_study",
                 "dead_units", "motion_diagnosis"]


def test_entry_point_modules_leave_tensorflow_unimported_until_run():
    # Otherwise run()'s prefer_onednn() would come too late to change the kernels (the
    # studies train in-process: without oneDNN they ran 2.6x slower on an AMD CPU).
    # One process: if none of them imports TensorFlow, importing them in turn is the same.
    code = ("import importlib, sys\n"
            f"for name in {_ENTRY_POINTS!r}:\n"
            "    importlib.import_module(name)\n"
            "    print(name, 'tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120, cwd=_BENCHMARKS)
    assert result.stdout.split() == [word for name in _ENTRY_POINTS for word in (name, "False")]
