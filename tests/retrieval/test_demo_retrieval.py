"""The retrieval part of ``make demo`` (benchmarks/demo_retrieval.py): its plan, not its run.

The demo itself takes minutes; these tests check in seconds that every command it runs is one
the command line accepts, that each method meets its own scenario beside a baseline trained
alike, and that the table names the scenario of every row.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_retrieval",
                                                  ROOT / "benchmarks" / "demo_retrieval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_makefile_demo_runs_the_retrieval_demo():
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^demo:.*?(?=^\S)", makefile, flags=re.S | re.M).group(0)
    assert "benchmarks/demo.py" in target and "benchmarks/demo_retrieval.py" in target


def test_every_demo_command_parses(demo, tmp_path):
    from retrieval.cli import build_parser

    steps, _ = demo.plan(tmp_path)
    parser = build_parser()
    for step in steps:
        args = parser.parse_args(step.argv)  # exits (SystemExit) on a bad command
        assert callable(args.func)
    assert steps[0].shell().startswith("python -m retrieval make-synthetic")


def test_each_method_on_its_own_scenario_beside_a_baseline_trained_alike(demo, tmp_path):
    from retrieval.data.scenarios import SCENARIOS
    from retrieval.methods import METHODS
    from retrieval.methods.features import FEATURE_METHODS

    steps, rows = demo.plan(tmp_path)
    methods = {sc.method for sc in demo.SCENARIOS}
    assert methods == {"d2s", "avse", "dcar", "pcsr"}
    for sc in demo.SCENARIOS:
        assert sc.method in METHODS
        if sc.method != "pcsr":  # PCSR's testbed is the default set with shuffled captions
            assert SCENARIOS[sc.name] == sc.method
        else:
            assert _option(list(sc.train_options), "--noise-ratio") == "0.4"
        if sc.on_features:
            assert sc.method in FEATURE_METHODS and "contrastive" in FEATURE_METHODS
        trains = {_option(s.argv, "--method"): s.argv for s in steps
                  if s.argv[0] == "train" and f"/{sc.key}/" in _option(s.argv, "--output") + "/"}
        assert set(trains) == {"contrastive", sc.method}
        for name in ("--epochs", "--batch-size", "--noise-ratio", "--lr-new", "--data-root",
                     "--pretrained"):
            assert _option(trains["contrastive"], name) == _option(trains[sc.method], name)
        assert set(rows["scenarios"][sc.key]) == {"start", "contrastive", sc.method}


def test_table_names_the_scenario_of_every_row(demo, tmp_path):
    _, rows = demo.plan(tmp_path)
    metrics = {"rsum": 100.0, "i2t_r1": 1.0, "t2i_r1": 2.0}
    paths = list(rows["start"].values()) + [p for arms in rows["scenarios"].values()
                                            for p in arms.values()]
    for number, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"twin_group_category": 7.5, "twin_images_group_category": 40,
                 "twin_group_attribute": 50.0, "twin_images_group_attribute": 2} \
            if "twins" in path.name else {}
        path.write_text(json.dumps({**metrics, "rsum": float(number), **extra}))
    records, markdown = demo.table(rows)
    assert len(records) == len(paths) == 2 + 3 * len(demo.SCENARIOS)
    lines = markdown.splitlines()[2:]
    for sc in demo.SCENARIOS:
        mine = [line for line in lines if line.startswith(f"| {sc.title} | {sc.method} |")]
        assert len(mine) == 3
        assert any("| contrastive" in line for line in mine)
    # The twins scenario's headline score is in the table with its count; a score over too few
    # twin images is left out.
    assert "| 7.5 (3/40) |" in markdown and "50.0" not in markdown
    demo.plot(records, tmp_path / "retrieval.png")
    assert (tmp_path / "retrieval.png").stat().st_size > 10_000
