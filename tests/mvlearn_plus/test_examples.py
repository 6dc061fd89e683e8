"""The runnable examples run (with shortened training) and write their plots."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_deep_clustering_example_runs(tmp_path):
    pytest.importorskip("torch")
    output = tmp_path / "deep.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "deep_clustering.py"), "--output", str(output),
         "--vgmgc-epochs", "3", "--mgbcc-epochs", "5"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "VGMGC on ACM" in result.stdout and "MGBCC held-out 20 %" in result.stdout
    assert output.stat().st_size > 10_000


def test_label_free_selection_example_runs(tmp_path):
    output = tmp_path / "selection.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "label_free_selection.py"), "--output",
         str(output), "--datasets", "webkb"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "webkb: picked" in result.stdout
    assert output.stat().st_size > 10_000
