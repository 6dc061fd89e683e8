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
    for kind in ("attribute", "category"):
        assert {f"twin_i2t_{kind}", f"twin_t2i_{kind}", f"twin_group_{kind}"} <= set(live)
        assert live[f"twin_i2t_{kind}"] == live[f"twin_acc_{kind}"]
    for key in again:
        assert again[key] == pytest.approx(live[key], abs=1e-6)


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, err
    assert not any("Traceback" in line for line in err)
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_missing_data_root_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--model", "tiny-vit", "--data-root",
                 str(tmp_path / "nowhere")]) == 2
    _one_line_error(capsys, "nowhere")


def test_user_errors_are_one_line(synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--method", "contrastive", "--model", "tiny-vit", "--data-root",
                 str(synthetic), "--output", str(run), "--epochs", "1", "--batch-size", "16",
                 "--quiet", "--workers", "0", "--force-quick-gelu", "--checkpoint-every", "7",
                 "--log-every", "3"]) == 0
    # The options reach the run (not accepted and dropped).
    config = json.loads((run / "config.json").read_text())
    assert config["backbone_options"]["force_quick_gelu"] is True
    assert config["train"]["checkpoint_every"] == 7 and config["train"]["log_every"] == 3
    assert config["train"]["num_workers"] == 0
    capsys.readouterr()
    # A run folder of another method.
    assert main(["train", "--method", "pcsr", "--model", "tiny-vit", "--data-root",
                 str(synthetic), "--output", str(run), "--epochs", "1", "--batch-size", "16",
                 "--quiet"]) == 2
    _one_line_error(capsys, str(run), "method")
    # Not a run folder; a missing weights file; wrong format for the folder.
    assert main(["evaluate", "--run", str(tmp_path), "--data-root", str(synthetic)]) == 2
    _one_line_error(capsys, "not a training run folder")
    assert main(["evaluate", "--model", "tiny-vit", "--pretrained",
                 str(tmp_path / "missing.pt"), "--data-root", str(synthetic)]) == 2
    _one_line_error(capsys, "missing.pt")
    assert main(["evaluate", "--model", "tiny-vit", "--data-root", str(synthetic),
                 "--format", "karpathy"]) == 2
    _one_line_error(capsys)
    assert main(["evaluate", "--model", "no-such-model", "--data-root", str(synthetic)]) == 2
    _one_line_error(capsys, "no-such-model")
    # An unknown method is argparse's own one-line usage error.
    with pytest.raises(SystemExit):
        main(["train", "--method", "nope", "--data-root", str(synthetic), "--output",
              str(tmp_path / "x")])


def test_help_shows_every_default():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "train" in a.choices)
    for name, sub in subparsers.choices.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or action.required or action.dest == "help":
                continue
            text = formatter._format_action(action)
            assert "default" in text, (name, action.option_strings, text)


def test_bad_images_named_or_skipped(tmp_path, capsys, wheel_photos):
    root = tmp_path / "set"
    assert main(["make-synthetic", "--output", str(root), "--n-images", "60"]) == 0
    from retrieval.data import load_split

    victim = load_split(root, "test").image_paths[0]
    data = wheel_photos[0].read_bytes()
    with open(victim, "wb") as handle:
        handle.write(data[: len(data) // 4])
    capsys.readouterr()
    assert main(["evaluate", "--model", "tiny-vit", "--data-root", str(root), "--quiet",
                 "--workers", "0"]) == 2
    _one_line_error(capsys, victim)
    assert main(["evaluate", "--model", "tiny-vit", "--data-root", str(root), "--quiet",
                 "--skip-bad-images", "--amp", "bf16"]) == 0
    assert "skipped 1 unreadable image" in capsys.readouterr().err


def test_run_or_model_required(synthetic):
    with pytest.raises(SystemExit, match="--run RUN_DIR or --model NAME"):
        main(["evaluate", "--data-root", str(synthetic)])


def test_open_clip_warning_is_not_hidden(synthetic, caplog):
    with caplog.at_level("WARNING"):
        assert main(["evaluate", "--model", "tiny-vit", "--data-root", str(synthetic),
                     "--quiet", "--workers", "0"]) == 0
    assert "No pretrained weights loaded" in caplog.text
