"""The README's retrieval example must keep running as written (in a temporary folder)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_retrieval_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = [b for b in blocks if "from retrieval" in b]
    assert example, "README has no retrieval example"
    monkeypatch.chdir(tmp_path)
    exec(compile(example[0], str(README), "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    zero_shot = float(lines[0])
    trained = eval(lines[-1], {"nan": float("nan")})  # the printed metrics dict
    assert trained["rsum"] > zero_shot + 30
    assert (tmp_path / "runs" / "demo" / "model_best.pt").is_file()
