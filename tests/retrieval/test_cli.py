"""The command line, run in-process: make-synthetic, evaluate, train, encode, features."""

import json

import pytest

from retrieval.cli import build_parser, main


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "synthetic"
    assert main(["make-synthetic", "--output", str(root), "--n-images", "120"]) == 0
    return root


def test_every_subcommand_is_listed():
    help_text = build_parser().format_help()
    for command in ("make-synthetic", "train", "evaluate", "encode"):
        assert command in help_text


def test_zero_shot_train_evaluate_encode(synthetic, tmp_path, capsys):
    zero = tmp_path / "zero.json"
    assert main(["evaluate", "--model", "tiny-vit", "--data-root", str(synthetic), "--json",
                 str(zero), "--quiet"]) == 0
    metrics = json.loads(zero.read_text())
    assert {"i2t_r1", "t2i_r10", "rsum", "i2t_medr"} <= set(metrics)
    run = tmp_path / "run"
    assert main(["train", "--method", "contrastive", "--model", "tiny-vit", "--data-root",
                 str(synthetic), "--output", str(run), "--epochs", "1", "--batch-size", "16",
                 "--lr", "1e-4", "--noise-ratio", "0.2", "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["run"]["noise_ratio"] == 0.2
    trained = tmp_path / "trained.json"
    assert main(["evaluate", "--run", str(run), "--data-root", str(synthetic), "--json",
                 str(trained), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "rSum" in printed and "img->txt" in printed
    features = tmp_path / "features"
    assert main(["encode", "--run", str(run), "--data-root", str(synthetic), "--output",
                 str(features), "--splits", "test,val", "--quiet"]) == 0
    manifest = json.loads((features / "manifest.json").read_text())
    assert manifest["model"] == "tiny-vit" and set(manifest["splits"]) == {"test", "val"}
    # Evaluating the cached features needs no backbone and reproduces the live numbers.
    cached = tmp_path / "cached.json"
    assert main(["evaluate", "--data-root", str(features), "--json", str(cached)]) == 0
    live, again = json.loads(trained.read_text()), json.loads(cached.read_text())
    # The images' run also scores swapped twins (the synthetic split has object records);
    # features carry no captions to swap.
    assert "twin_acc_attribute" in live and "twin_acc_attribute" not in again
    for key in again:
        assert again[key] == pytest.approx(live[key], abs=1e-6)


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        main(["evaluate", "--model", "tiny-vit", "--data-root", str(tmp_path / "nowhere")])


def test_run_or_model_required(synthetic):
    with pytest.raises(SystemExit, match="--run RUN_DIR or --model NAME"):
        main(["evaluate", "--data-root", str(synthetic)])
