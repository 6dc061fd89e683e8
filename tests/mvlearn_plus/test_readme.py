"""The README's Python example must keep running as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "'acc': 0.9" in out  # BBCSport is clustered well above chance


def test_readme_deep_example_runs(capsys):
    import pytest

    pytest.importorskip("torch")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = [b for b in blocks if "VariationalGraphGeneratorClustering" in b]
    assert example, "README has no deep-clustering example"
    exec(compile(example[0], str(README), "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert float(lines[0].split()[0]) > 0.8  # ACM with 30 epochs
    assert float(lines[1].split()[0]) > 0.85  # BBCSport


def test_readme_label_free_selection_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = [b for b in blocks if "LabelFreeSelector" in b]
    assert example, "README has no label-free selection example"
    exec(compile(example[0], str(README), "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    name, accuracy = lines[0].rsplit(" ", 1)
    assert float(accuracy) > 0.65  # WebKB: its largest class alone is 0.53
    assert "'rank'" in lines[1] and "'fit_time'" in lines[1]
