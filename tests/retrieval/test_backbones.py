"""Backbones: tiny configs, checkpoint loading and its errors, token access, freezing."""

import time
from pathlib import Path

import pytest
import torch

from retrieval.backbones import (TINY_MODELS, CheckpointError, ClipBackbone, count_parameters,
                                 create_backbone, encode_texts, freeze_all_but, freeze_backbone,
                                 load_weights, read_state_dict, save_weights, unfreeze_backbone)


@pytest.fixture(scope="module")
def backbone() -> ClipBackbone:
    torch.manual_seed(0)
    return create_backbone("tiny-vit").eval()


def test_tiny_configs_registered_and_fast():
    assert {"tiny-vit", "tiny-vit-64"} <= set(TINY_MODELS)
    started = time.perf_counter()
    model = create_backbone("tiny-vit-64")
    assert time.perf_counter() - started < 1.5  # well under a second on an idle 2-core CPU
    assert model.embed_dim == 64 and model.context_length == 32
    assert count_parameters(model) < 5_000_000


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown open_clip model 'tiny-vitt'"):
        create_backbone("tiny-vitt")


def test_token_access_matches_pooled_encoders(backbone):
    images = torch.randn(2, 3, 32, 32)
    ids = backbone.tokenize(["a red circle", "two small blue squares at the top"])
    with torch.no_grad():
        pooled, tokens = backbone.image_tokens(images)
        assert tokens.shape == (2, 16, 64)  # 4 x 4 patch grid, CLS excluded, projected
        torch.testing.assert_close(pooled, backbone.encode_image(images), atol=1e-5, rtol=1e-5)
        pre = backbone.pre_transformer_tokens(images)
        assert pre.shape == (2, 17, 64)
        torch.testing.assert_close(backbone.encode_image_tokens(pre), pooled, atol=1e-5,
                                   rtol=1e-5)
        text_pooled, text_tokens, mask = backbone.text_tokens(ids)
        torch.testing.assert_close(text_pooled, backbone.encode_text(ids), atol=1e-5, rtol=1e-5)
    assert text_tokens.shape == (2, 32, 64)
    lengths = (ids != 0).sum(1)  # SOT ... EOT, padding is 0
    assert torch.equal(mask.sum(1), lengths)


def test_selected_tokens_change_the_embedding(backbone):
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        pre = backbone.pre_transformer_tokens(images)
        full = backbone.encode_image_tokens(pre)
        part = backbone.encode_image_tokens(pre[:, :9])  # CLS + 8 patches
    assert part.shape == full.shape and not torch.allclose(part, full)


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".safetensors"])
def test_checkpoint_round_trip(tmp_path, backbone, suffix):
    path = save_weights(backbone.model, tmp_path / f"w{suffix}")
    torch.manual_seed(1)
    other = create_backbone("tiny-vit", path)
    for key, value in backbone.model.state_dict().items():
        torch.testing.assert_close(other.model.state_dict()[key], value)


def test_module_prefix_and_state_dict_wrapper(tmp_path, backbone):
    state = {f"module.{k}": v for k, v in backbone.model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "ddp.pt")
    loaded = read_state_dict(tmp_path / "ddp.pt")
    assert set(loaded) == set(backbone.model.state_dict())
    model = create_backbone("tiny-vit", tmp_path / "ddp.pt")
    torch.testing.assert_close(model.model.visual.proj, backbone.model.visual.proj)


def test_missing_truncated_and_mismatched_checkpoints(tmp_path, backbone):
    with pytest.raises(CheckpointError, match="not found"):
        create_backbone("tiny-vit", tmp_path / "absent.pt")
    path = save_weights(backbone.model, tmp_path / "w.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        create_backbone("tiny-vit", tmp_path / "cut.pt")
    safetensors_path = save_weights(backbone.model, tmp_path / "w.safetensors")
    cut = safetensors_path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(cut[: len(cut) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        create_backbone("tiny-vit", tmp_path / "cut.safetensors")
    # A checkpoint of another architecture: the 64 px model has a larger positional table.
    with pytest.raises(CheckpointError, match="shape mismatches"):
        create_backbone("tiny-vit-64", path)
    partial = dict(backbone.model.state_dict())
    partial.pop("visual.proj")
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="1 missing keys .*1 unexpected keys"):
        load_weights(create_backbone("tiny-vit").model, tmp_path / "partial.pt")


def test_torchscript_archive_gets_a_specific_error(tmp_path):
    import warnings

    with warnings.catch_warnings():  # torch deprecates TorchScript; OpenAI's files still are
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(torch.nn.Linear(2, 2))
        torch.jit.save(scripted, str(tmp_path / "ViT-B-32-openai.pt"))
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        read_state_dict(tmp_path / "ViT-B-32-openai.pt")


def test_weights_only_refuses_pickled_objects(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": object()}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(tmp_path / "bad.pt")


def test_freezing_helpers():
    backbone = create_backbone("tiny-vit")
    freeze_backbone(backbone)
    assert count_parameters(backbone, trainable_only=True) == 1  # logit_scale only
    freeze_backbone(backbone, image_unlocked_blocks=1, text_unlocked_blocks=1)
    visual_blocks = backbone.model.visual.transformer.resblocks
    assert all(p.requires_grad for p in visual_blocks[-1].parameters())
    assert not any(p.requires_grad for p in visual_blocks[0].parameters())
    assert backbone.model.text_projection.requires_grad
    assert not backbone.model.token_embedding.weight.requires_grad
    kept = freeze_all_but(backbone, ["ln_final"])
    assert kept and all("ln_final" in name for name in kept)
    unfreeze_backbone(backbone)
    assert count_parameters(backbone, trainable_only=True) == count_parameters(backbone)


def test_encode_texts_batches_and_normalises(backbone):
    captions = [f"caption number {i}" for i in range(7)]
    emb = encode_texts(backbone, captions, batch_size=3, verbose=False)
    assert emb.shape == (7, 64)
    assert abs(float((emb**2).sum(1).mean()) - 1.0) < 1e-5


def test_frozen_towers_stay_in_eval_mode_while_training():
    from retrieval.methods import ContrastiveFineTune

    method = ContrastiveFineTune(create_backbone("tiny-vit"))
    freeze_backbone(method.backbone, towers="image")
    method.train()
    assert not method.backbone.model.visual.training
    assert method.backbone.model.transformer.training  # the text tower still trains
    method.eval()
    assert not method.backbone.model.transformer.training


TEXT_CFG = {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}


@pytest.mark.parametrize("text_overrides", [
    {"pool_type": "eos", "eos_id": 49407},
    {"pool_type": "last"},
    {"pool_type": "first", "no_causal_mask": True},
    {"proj_type": "none"},  # no text projection: width 64 is the embedding size
    {"pool_type": "eos", "eos_id": 49407, "proj_type": "none"},
])
def test_text_path_honours_the_models_pooling_and_projection(text_overrides):
    torch.manual_seed(0)
    backbone = create_backbone("tiny-vit", open_clip_kwargs={
        "text_cfg": {**TEXT_CFG, **text_overrides}}).eval()
    if text_overrides.get("proj_type") == "none":
        assert backbone.model.text_projection is None
    ids = backbone.tokenize(["a red circle", "two small blue squares at the top"])
    with torch.no_grad():
        pooled, tokens, mask = backbone.text_tokens(ids)
        torch.testing.assert_close(pooled, backbone.encode_text(ids), atol=1e-5, rtol=1e-5)
    assert tokens.shape == (2, 32, 64) and mask.shape == (2, 32)
    assert backbone.build_options["open_clip_kwargs"]["text_cfg"]["width"] == 64
    # Freezing works without a projection too.
    freeze_backbone(backbone, text_unlocked_blocks=1)
    unfreeze_backbone(backbone)


def test_random_weights_of_a_real_model_are_warned_about(tmp_path, caplog):
    import json

    import open_clip

    # A tiny architecture under a name that is not one of the shipped test models.
    config = json.loads((Path(create_backbone.__globals__["MODEL_CONFIG_DIR"])
                         / "tiny-vit.json").read_text())
    (tmp_path / "not-a-test-model.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path)
    with caplog.at_level("WARNING"):
        create_backbone("not-a-test-model")
    assert "random weights" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="retrieval"):
        create_backbone("tiny-vit")
        create_backbone("not-a-test-model", warn_random=False)
    assert "random weights" not in caplog.text
    with pytest.raises(ValueError, match="open_clip_kwargs may not set"):
        create_backbone("tiny-vit", open_clip_kwargs={"precision": "bf16"})


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_models_encode_on_cpu(tmp_path, precision):
    import numpy as np
    from PIL import Image

    from retrieval.backbones import encode_images

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    torch.manual_seed(0)
    full = create_backbone("tiny-vit-64").eval()
    low = create_backbone("tiny-vit-64", precision=precision).eval()
    low.model.load_state_dict({k: v.to(low.model.state_dict()[k].dtype)
                               for k, v in full.model.state_dict().items()})
    reference = encode_images(full, paths, verbose=False)
    for encoded in (encode_images(low, paths, verbose=False),
                    encode_texts(low, ["a red circle", "a blue square"], verbose=False)):
        assert encoded.dtype == np.float32 and np.isfinite(encoded).all()
    got = encode_images(low, paths, verbose=False)
    assert (np.sum(got * reference, axis=1) > 0.98).all()
    # Mixed precision of an fp32 model on the CPU (autocast), and a bad mode.
    mixed = encode_images(full, paths, verbose=False, amp="bf16")
    assert (np.sum(mixed * reference, axis=1) > 0.98).all()
    with pytest.raises(ValueError, match="amp must be"):
        encode_images(full, paths, verbose=False, amp="fp8")
