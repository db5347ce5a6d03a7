"""benchmarks/gpu_check.py keeps working where there is no GPU: its dry run, in a fresh process."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # about 1 min on an idle 2-core machine, 4 min under heavy load
def test_gpu_check_dry_run_runs_every_part(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"),
                           "--dry_run", f"--output={out}"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["dry_run"]
    steps = result["train_step"]
    assert {(r["precision"], r["multires"]) for r in steps} == {
        ("bfloat16+xla", False), ("bfloat16+xla", True), ("float32", False), ("float32", True)}
    for row in steps:
        assert "error" not in row, row
        assert row["clips_per_s"] > 0 and row["train_gflop_per_clip"] > 0
    assert "error" not in result["input_pipeline"], result["input_pipeline"]
    assert result["input_pipeline"]["clips_per_s"]["10 frames (slow_fusion)"] > 0
    assert [r["model"] for r in result["end_to_end"]] == ["single_frame"]
    assert result["end_to_end"][0]["clips_per_s"] > 0, result["end_to_end"]
    assert 0 <= result["end_to_end"][0]["input_wait"] <= 1
    assert "MFU" in done.stdout and "end to end single_frame" in done.stdout
