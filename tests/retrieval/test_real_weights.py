"""Real weights and real files (issue 25): activations follow the weights, user mistakes are
one-line errors naming the file, entry or option and the fix."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.backbones import CheckpointError, create_backbone, save_weights

ROOT = Path(__file__).resolve().parents[2]


def _quick_gelu_in(backbone) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(module, QuickGELU) for module in backbone.model.modules())


@pytest.fixture
def quickgelu_tag(tmp_path, monkeypatch):
    """A pretrained tag of ``tiny-vit`` recorded, as open_clip records ``openai``, as trained
    with QuickGELU; its weights are a local file, so nothing is downloaded."""
    import open_clip.pretrained as registry

    weights = save_weights(create_backbone("tiny-vit").model, tmp_path / "tag.pt")
    monkeypatch.setitem(registry._PRETRAINED, "tiny-vit", {
        "quickgelu_tag": {"file": str(weights), "quick_gelu": True},
        "gelu_tag": {"file": str(weights)}})
    return "quickgelu_tag"


def test_a_quickgelu_tag_builds_the_quickgelu_model(quickgelu_tag, recwarn):
    backbone = create_backbone("tiny-vit", quickgelu_tag)
    assert _quick_gelu_in(backbone)
    assert backbone.build_options["force_quick_gelu"] is True  # recorded: load_run rebuilds it
    assert not [w for w in recwarn if "QuickGELU mismatch" in str(w.message)]
    assert not _quick_gelu_in(create_backbone("tiny-vit", "gelu_tag"))


def test_force_quick_gelu_with_a_gelu_tag_is_refused(quickgelu_tag):
    with pytest.raises(ValueError, match="drop --force-quick-gelu"):
        create_backbone("tiny-vit", "gelu_tag", force_quick_gelu=True)


def test_unknown_tag_names_the_option_and_the_known_tags(quickgelu_tag):
    with pytest.raises(ValueError, match=r"--pretrained 'opneai' .*tags: \[.quickgelu_tag."):
        create_backbone("tiny-vit", "opneai")


def test_offline_tag_is_a_checkpoint_error_with_the_fix(monkeypatch):
    import open_clip.pretrained as registry

    monkeypatch.setitem(registry._PRETRAINED, "tiny-vit", {
        "online": {"url": "https://example.invalid/tiny.pt", "quick_gelu": True}})
    monkeypatch.setattr(registry, "has_hf_hub", lambda *args, **kwargs: False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(registry, "download_pretrained_from_url", offline)
    with pytest.raises(CheckpointError, match="--pretrained 'online'.*could not be fetched.*"
                                              "local weights file"):
        create_backbone("tiny-vit", "online")


def test_open_clip_is_pinned_below_4():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [dep for deps in project["project"]["optional-dependencies"].values() for dep in deps
            if dep.startswith("open-clip-torch")]
    assert pins and all("<4" in pin for pin in pins), pins


def test_readme_recipe_uses_the_quickgelu_config_for_openai_weights():
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines()
             if "python -m retrieval" in line and "--pretrained $CLIP" in line]
    assert lines and all("-quickgelu" in line for line in lines), lines


# ------------------------------------------------------------------------------------------
# One-line errors (exit 2) that name the file, entry or option, and the fix
# ------------------------------------------------------------------------------------------
def _one_line_error(capsys, *fragments):
    lines = capsys.readouterr().err.strip().splitlines()
    (error,) = [line for line in lines if line.startswith("error:")]
    assert "Traceback" not in "\n".join(lines) and all(f in error for f in fragments), lines
    return error


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from retrieval.cli import main

    root = tmp_path_factory.mktemp("real") / "synthetic"
    assert main(["make-synthetic", "--output", str(root), "--n-images", "60"]) == 0
    return root


def _karpathy(folder: Path, images: list) -> Path:
    import json

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(images)):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.jpg")
    path = folder / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": images}))
    return path


def _entry(i: int, **changes):
    entry = {"filename": f"{i}.jpg", "imgid": i, "split": "test",
             "sentences": [{"raw": f"caption {k} of image {i}"} for k in range(5)]}
    entry.update(changes)
    return entry


@pytest.mark.parametrize("broken, fragments", [
    (dict(sentences=[{"tokens": ["a", "dog"]}] * 5), ["images[1]", "sentences[0]", "'raw'"]),
    (dict(sentences=["a dog"] * 5), ["images[1]", "plain string", '{"raw": "the caption"}']),
    ("file_name", ["images[1]", "'file_name'", "rename the key"]),
])
def test_karpathy_entries_outside_the_schema_are_named(tmp_path, capsys, broken, fragments):
    from retrieval.cli import main

    second = _entry(1)
    if broken == "file_name":
        second["file_name"] = second.pop("filename")
    else:
        second.update(broken)
    path = _karpathy(tmp_path / "k", [_entry(0), second])
    assert main(["evaluate", "--model", "tiny-vit", "--data-root", str(path.parent),
                 "--quiet", "--workers", "0"]) == 2
    _one_line_error(capsys, str(path), *fragments)


def test_invalid_karpathy_json_is_named_without_the_order_warning(tmp_path, capsys, caplog):
    from retrieval.cli import main

    path = _karpathy(tmp_path / "k", [_entry(0)])
    path.write_text(path.read_text()[:-5])
    assert main(["evaluate", "--model", "tiny-vit", "--data-root", str(path.parent),
                 "--quiet"]) == 2
    _one_line_error(capsys, str(path), "not valid JSON", "line 1")
    assert not [r for r in caplog.records if "canonical order" in r.getMessage()]


def test_captions_tsv_with_a_bom_and_in_latin1(tmp_path):
    from PIL import Image

    from retrieval.data import load_folder

    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "images" / "a.jpg")
    (root / "captions.tsv").write_bytes("\ufeffa.jpg\tun café\n".encode("utf-8"))
    split = load_folder(root)
    assert split.image_keys == ["a.jpg"] and split.captions == ["un café"]
    (root / "captions.tsv").write_bytes("a.jpg\tfirst\na.jpg\tun café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"captions.tsv:2: not UTF-8 .*save the file as UTF-8"):
        load_folder(root)


def _bomb_png(path: Path, side: int = 20000) -> None:
    """A PNG whose header claims ``side`` x ``side`` pixels (its data is a few bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_decompression_bomb_is_named_or_skipped(synthetic, tmp_path, capsys):
    import shutil

    from retrieval.cli import main
    from retrieval.data import load_split

    root = tmp_path / "set"
    shutil.copytree(synthetic, root)
    victim = load_split(root, "test").image_paths[0]
    _bomb_png(Path(victim))
    capsys.readouterr()
    assert main(["evaluate", "--model", "tiny-vit", "--data-root", str(root), "--quiet",
                 "--workers", "0"]) == 2
    _one_line_error(capsys, victim, "--skip-bad-images")
    assert main(["evaluate", "--model", "tiny-vit", "--data-root", str(root), "--quiet",
                 "--workers", "0", "--skip-bad-images"]) == 0
    assert "skipped 1 unreadable image" in capsys.readouterr().err


def test_method_config_that_is_not_json_names_the_option(synthetic, tmp_path, capsys):
    from retrieval.cli import main

    assert main(["train", "--model", "tiny-vit", "--data-root", str(synthetic), "--output",
                 str(tmp_path / "run"), "--method-config", "{lr:1}", "--quiet"]) == 2
    _one_line_error(capsys, "--method-config", "double-quoted keys")


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_cuda_out_of_memory_is_one_line_with_the_fix(synthetic, tmp_path, capsys, monkeypatch,
                                                      command):
    import retrieval.cli as cli

    def out_of_memory(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cli, f"cmd_{command}", out_of_memory)
    argv = [command, "--model", "tiny-vit", "--data-root", str(synthetic)]
    if command == "train":
        argv += ["--output", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    line = _one_line_error(capsys, "out of device memory", "--batch-size")
    assert ("--grad-checkpointing" in line) == (command == "train")


# ------------------------------------------------------------------------------------------
# timm image towers
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def timm_models(tmp_path_factory):
    """Tiny configs of the two timm tower kinds: ConvNeXt (``convnext_base``'s family) and a
    SigLIP-style ViT with attention pooling and a custom text tower."""
    import json

    import open_clip

    pytest.importorskip("timm")
    folder = tmp_path_factory.mktemp("timm_configs")
    text = {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}
    (folder / "tiny-convnext.json").write_text(json.dumps({
        "embed_dim": 64, "text_cfg": text,
        "vision_cfg": {"timm_model_name": "convnext_atto", "timm_model_pretrained": False,
                       "timm_pool": "avg", "timm_proj": "linear", "image_size": 32}}))
    (folder / "tiny-sl-vit.json").write_text(json.dumps({
        "embed_dim": 192, "init_logit_bias": -10, "custom_text": True,
        "vision_cfg": {"image_size": 224, "timm_model_name": "vit_tiny_patch16_224",
                       "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": {**text, "width": 192, "no_causal_mask": True, "proj_bias": True,
                     "pool_type": "last"}}))
    open_clip.add_model_config(folder)
    return {"tiny-convnext": 64, "tiny-sl-vit": 192}


def test_timm_towers_build_and_encode(timm_models):
    from retrieval.backbones import encode_texts

    for name, dim in timm_models.items():
        backbone = create_backbone(name, warn_random=False)
        assert backbone.embed_dim == dim
        size = backbone.model.visual.image_size if hasattr(backbone.model.visual, "image_size") \
            else 32
        side = size[0] if isinstance(size, (tuple, list)) else size
        with torch.no_grad():
            assert backbone.encode_image(torch.randn(1, 3, side, side)).shape == (1, dim)
        assert encode_texts(backbone, ["a dog"], verbose=False).shape == (1, dim)


def test_token_methods_refuse_timm_towers_in_one_line(timm_models, synthetic, tmp_path, capsys):
    from retrieval.cli import main

    assert main(["train", "--method", "avse", "--model", "tiny-convnext", "--data-root",
                 str(synthetic), "--output", str(tmp_path / "run"), "--quiet"]) == 2
    _one_line_error(capsys, "tiny-convnext", "TimmModel")


# ------------------------------------------------------------------------------------------
# Encoding, resume rules, noise labels, the epoch record
# ------------------------------------------------------------------------------------------
def test_bf16_model_encodes_image_and_text_tokens(synthetic, tmp_path):
    from retrieval.data import load_features, load_split
    from retrieval.training import encode_to_features

    backbone = create_backbone("tiny-vit", precision="bf16")
    split = load_split(synthetic, "test").subset(6)
    encode_to_features(backbone, split, tmp_path / "f", batch_size=4, verbose=False,
                       tokens=True, image_tokens=True, amp="bf16")
    features = load_features(tmp_path / "f", split="test")
    assert features.img_tokens.shape[:2] == (6, 16)
    assert features.txt_tokens.shape[0] == split.n_captions


def _tiny_train(synthetic, out, split=None, **config):
    from retrieval.data import load_split
    from retrieval.training import TrainConfig, Trainer, build_method

    torch.manual_seed(0)
    method = build_method("contrastive", "tiny-vit")
    settings = dict(epochs=2, batch_size=16, verbose=False, augment=False, num_workers=0,
                    eval_batch_size=64)
    settings.update(config)
    trainer = Trainer(method, TrainConfig(**settings), out)
    split = split if split is not None else load_split(synthetic, "train")
    return trainer, split


def test_resume_allows_memory_options_and_refuses_another_training_set(synthetic, tmp_path):
    trainer, split = _tiny_train(synthetic, tmp_path / "run")
    trainer.fit(split, stop_after_epoch=1)
    # The usual fix after running out of GPU memory: accepted.
    trainer, _ = _tiny_train(synthetic, tmp_path / "run", grad_checkpointing=True, amp="bf16")
    trainer.fit(split, stop_after_epoch=1)
    smaller = split.without_images([0])
    trainer, _ = _tiny_train(synthetic, tmp_path / "run")
    with pytest.raises(ValueError, match="another training set .*--restart"):
        trainer.fit(smaller)


def test_methods_never_see_the_clean_pairing(synthetic, tmp_path, monkeypatch):
    from retrieval.data import shuffle_captions
    from retrieval.methods.contrastive import ContrastiveFineTune

    seen = []
    monkeypatch.setattr(ContrastiveFineTune, "on_epoch_start", lambda self, epoch, context: (
        seen.append(context.train_split.clean_text_image_ids),
        context.report_clean_split("probe", np.ones(context.train_split.n_captions, bool))))
    trainer, split = _tiny_train(synthetic, tmp_path / "run", epochs=1)
    noisy = split.with_noise(shuffle_captions(split.text_image_ids, 0.5, seed=0))
    trainer.fit(noisy)
    assert seen == [None] and noisy.clean_text_image_ids is not None
    # The analysis still scores against the truth, read on the data side.
    record = trainer.history_[0]
    assert record["probe_clean_precision"] == pytest.approx(
        float(np.mean(noisy.text_image_ids == noisy.clean_text_image_ids)))


def test_skipped_fp16_updates_leave_the_mean_gradient_norm():
    from retrieval.training import _epoch_means

    sums = {"loss": torch.tensor(8.0, dtype=torch.float64),
            "grad_norm": torch.tensor(6.0, dtype=torch.float64)}
    record = _epoch_means(sums, 4, skipped=1)
    assert record == {"train_loss": 2.0, "train_grad_norm": 2.0, "train_skipped_updates": 1}
    # Every update skipped: no norm to report, never an infinite one.
    record = _epoch_means({"loss": torch.tensor(8.0, dtype=torch.float64)}, 4, skipped=4)
    assert math.isnan(record["train_grad_norm"]) and record["train_skipped_updates"] == 4


def test_evaluate_checks_the_data_path_before_building_the_model(tmp_path, capsys,
                                                                 monkeypatch):
    import retrieval.cli as cli

    def no_model(args):
        raise AssertionError("the model was built before the data path was checked")

    monkeypatch.setattr(cli, "_model_from_args", no_model)
    assert cli.main(["evaluate", "--model", "tiny-vit", "--data-root",
                     str(tmp_path / "nowhere")]) == 2
    _one_line_error(capsys, "--data-root", "nowhere")
