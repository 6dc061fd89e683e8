"""Training on precomputed features: the Trainer's path for frozen-tower methods (spec 1.3, 4.4).

A tiny CLIP encodes a small synthetic set once (pooled vectors, caption token states, output
patch tokens, pooled dense captions); the feature forms of ``contrastive`` (residual adapters),
``d2s`` (its adapter form) and ``avse`` (late views) then train, select, save, resume and
evaluate without images or a backbone.
"""

import json

import numpy as np
import pytest
import torch

from retrieval.cli import main as cli_main
from retrieval.data import load_features, make_synthetic
from retrieval.evaluation import protocol_metrics
from retrieval.methods.features import FeatureSpace, get_feature_method
from retrieval.training import (LAST_CHECKPOINT, TrainConfig, Trainer, build_feature_method,
                                load_run)

MODEL = "tiny-vit-64"


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    data = make_synthetic(root / "synthetic", n_images=120, seed=0)
    out = root / "features"
    assert cli_main(["encode", "--model", MODEL, "--data-root", str(data), "--output", str(out),
                     "--splits", "train,val,test", "--tokens", "--image-tokens", "--quiet"]) == 0
    return out


def small_config(epochs, **kw):
    base = dict(epochs=epochs, batch_size=32, lr_backbone=1e-3, lr_new=1e-3, seed=0,
                verbose=False, eval_batch_size=64)
    base.update(kw)
    return TrainConfig(**base)


def test_encode_writes_what_the_feature_forms_need(features):
    train = load_features(features, split="train")
    manifest = json.loads((features / "manifest.json").read_text())
    assert manifest["model"] == MODEL and manifest["d"] == train.img_pooled.shape[1]
    assert train.txt_tokens.shape[:2] == (train.n_captions, 32)  # the tiny context length
    assert train.txt_tokens.shape[2] == manifest["d"] and train.txt_tokens.dtype == np.float16
    assert (train.txt_len >= 3).all() and (train.txt_len <= 32).all()
    # The synthetic set has dense captions: their pooled embeddings are unit vectors.
    assert train.dense_pooled.shape == (train.n_images, manifest["d"])
    np.testing.assert_allclose(np.linalg.norm(train.dense_pooled, axis=1), 1, atol=1e-5)
    # The tiny ViT sees 64 px in patches of 8: 64 output patch tokens per image.
    assert train.img_tokens.shape == (train.n_images, 64, manifest["d"])
    # The EOT token state is the pooled caption embedding (before normalisation).
    eot = train.txt_tokens[np.arange(8), train.txt_len[:8] - 1].astype(np.float32)
    eot /= np.linalg.norm(eot, axis=1, keepdims=True)
    np.testing.assert_allclose(eot, train.txt_pooled[:8], atol=5e-3)


def test_untrained_adapters_reproduce_the_frozen_features(features):
    test = load_features(features, split="test")
    method = build_feature_method("contrastive", test)
    direct = protocol_metrics(test.img_pooled, test.txt_pooled, test.text_image_ids, "full")
    through = method.evaluate_split(test, verbose=False)
    for key in ("i2t_r1", "t2i_r5", "rsum"):
        assert through[key] == pytest.approx(direct[key], abs=1e-9)


def test_contrastive_feature_form_trains_selects_and_reloads(features, tmp_path):
    train, val = (load_features(features, split=s) for s in ("train", "val"))
    torch.manual_seed(0)
    method = build_feature_method("contrastive", train)
    trainer = Trainer(method, small_config(4), tmp_path / "run").fit(train, val)
    losses = [r["train_loss"] for r in trainer.history_]
    assert losses[-1] < losses[0]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["features"]["model"] == MODEL and config["model"] == MODEL
    reloaded = load_run(tmp_path / "run")
    assert isinstance(reloaded, get_feature_method("contrastive"))
    test = load_features(features, split="test")
    assert reloaded.evaluate_split(test)["rsum"] == pytest.approx(
        method.evaluate_split(test)["rsum"])


def test_a_feature_form_keeps_the_clip_it_starts_from_when_training_only_hurts(features,
                                                                              tmp_path):
    # Untrained, the adapters are the frozen CLIP: it is validated as epoch 0 and kept unless
    # an epoch beats it (a huge learning rate only hurts).
    train, val = (load_features(features, split=s) for s in ("train", "val"))
    torch.manual_seed(0)
    method = build_feature_method("contrastive", train)
    start = {k: v.clone() for k, v in method.state_dict().items()}
    trainer = Trainer(method, small_config(1, lr_new=1.0), tmp_path / "hurt").fit(train, val)
    assert trainer.start_ is not None
    assert trainer.history_[0]["val_rsum"] < trainer.start_["val_rsum"] == trainer.best_rsum_
    record = json.loads((tmp_path / "hurt" / "history.json").read_text())
    assert record["kept"] == "start"
    assert all(torch.equal(v, start[k]) for k, v in method.state_dict().items())


def test_d2s_feature_form_stages_cache_and_resume(features, tmp_path):
    train, val = (load_features(features, split=s) for s in ("train", "val"))
    torch.manual_seed(0)
    method = build_feature_method("d2s", train, method_config={"n_prompts": 4})
    run = tmp_path / "d2s"
    trainer = Trainer(method, small_config(3), run)
    trainer.fit(train, val, stop_after_epoch=1)
    assert int(method.stage) == 1 and method.teacher_cache is None
    assert "train_dense_matching" in trainer.history_[0]
    # Stage 2 starts on resume: the teacher targets are the stage-1 text adapter's output on
    # the dense captions, computed once, and carry no gradient.
    resumed = build_feature_method("d2s", train, method_config={"n_prompts": 4})
    stage1_adapter = {k: v.clone() for k, v in torch.load(
        run / LAST_CHECKPOINT, weights_only=True)["method"].items() if "text_adapter" in k}
    Trainer(resumed, small_config(3), run).fit(train, val)
    # (The method now holds the validation-selected epoch; the last one is in the checkpoint.)
    last = load_run(run, which="last")
    assert int(last.stage) == 2 and not last.teacher_cache.requires_grad
    reference = build_feature_method("d2s", train, method_config={"n_prompts": 4})
    reference.load_state_dict({**reference.state_dict(), **stage1_adapter})
    with torch.no_grad():
        expected = reference.text_adapter(torch.tensor(np.array(train.dense_pooled)))
    torch.testing.assert_close(last.teacher_cache, expected)
    # The stage-2 text adapter moved on; the cache did not follow it.
    assert not torch.allclose(last.text_adapter.down.weight, reference.text_adapter.down.weight)
    history = json.loads((run / "history.json").read_text())["history"]
    assert [("train_distillation" in r) for r in history] == [False, True, True]
    # Moving the stage boundary on resume is refused.
    reloaded = last
    moved = build_feature_method("d2s", train, method_config={"n_prompts": 4})
    moved.load_state_dict(reloaded.state_dict())
    with pytest.raises(ValueError, match="stage boundary"):
        Trainer(moved, small_config(9), tmp_path / "other").fit(train, val)


def test_cli_trains_and_evaluates_feature_forms(features, tmp_path, capsys):
    run = tmp_path / "adapter"
    assert cli_main(["train", "--method", "contrastive", "--data-root", str(features),
                     "--output", str(run), "--epochs", "2", "--batch-size", "32",
                     "--lr-new", "1e-3", "--quiet"]) == 0
    out = tmp_path / "metrics.json"
    assert cli_main(["evaluate", "--run", str(run), "--data-root", str(features),
                     "--json", str(out), "--quiet"]) == 0
    assert 0 <= json.loads(out.read_text())["rsum"] <= 600
    assert cli_main(["train", "--method", "d2s", "--method-config", '{"n_prompts": 4}',
                     "--data-root", str(features), "--output", str(tmp_path / "d2s"),
                     "--epochs", "2", "--batch-size", "32", "--quiet"]) == 0


def test_avse_late_views_start_at_clip_and_are_seeded_per_image(features, tmp_path):
    train, val, test = (load_features(features, split=s) for s in ("train", "val", "test"))
    method = build_feature_method("avse", train)
    assert method.n_patches == 64 and not method.is_single_vector
    images, _, _ = method.encode_features(test)
    views = images.reshape(len(images), method.n_views, -1)
    # gamma starts at 0: every view is the (adapted = normalised) pooled CLIP embedding.
    np.testing.assert_allclose(views[:, 0], views[:, 1], atol=1e-6)
    np.testing.assert_allclose(views[:, 0], test.img_pooled, atol=1e-5)
    with torch.no_grad():
        method.gamma.fill_(0.7)
    a, _, _ = method.encode_features(test, batch_size=64)
    b, _, _ = method.encode_features(test, batch_size=7)
    # An image's views do not depend on its batch (equal up to BLAS summation order).
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert not np.allclose(a.reshape(len(a), 2, -1)[:, 0], a.reshape(len(a), 2, -1)[:, 1])
    torch.manual_seed(0)
    fresh = build_feature_method("avse", train)
    trainer = Trainer(fresh, small_config(3), tmp_path / "avse").fit(train, val)
    losses = [r["train_loss"] for r in trainer.history_]
    assert losses[-1] < losses[0] and "train_regulariser" in trainer.history_[0]
    reloaded = load_run(tmp_path / "avse")
    assert reloaded.evaluate_split(test)["rsum"] == pytest.approx(fresh.evaluate_split(test)["rsum"])


def test_feature_training_refusals(features, tmp_path):
    with pytest.raises(SystemExit, match="--pretrained"):
        cli_main(["train", "--method", "contrastive", "--data-root", str(features),
                  "--pretrained", "openai", "--output", str(tmp_path / "b"), "--quiet"])
    with pytest.raises(SystemExit, match="not --model"):
        cli_main(["train", "--method", "contrastive", "--data-root", str(features),
                  "--model", "ViT-B-32", "--output", str(tmp_path / "c"), "--quiet"])
    # Features without token states cannot train D2S: the message says how to write them.
    plain = tmp_path / "plain"
    data = make_synthetic(tmp_path / "syn", n_images=60, seed=1)
    assert cli_main(["encode", "--model", MODEL, "--data-root", str(data), "--output",
                     str(plain), "--splits", "train", "--quiet"]) == 0
    with pytest.raises(SystemExit, match="txt_tokens"):
        cli_main(["train", "--method", "d2s", "--data-root", str(plain), "--output",
                  str(tmp_path / "d"), "--batch-size", "16", "--quiet"])
    with pytest.raises(SystemExit, match="img_tokens.*--image-tokens"):
        cli_main(["train", "--method", "avse", "--data-root", str(plain), "--output",
                  str(tmp_path / "a"), "--batch-size", "16", "--quiet"])
    with pytest.raises(ValueError, match="prompts live inside"):
        get_feature_method("dcar")
    # Dense captions of the training images need the train split: never silently dropped.
    with pytest.raises(SystemExit, match="add train to --splits"):
        cli_main(["encode", "--model", MODEL, "--data-root", str(data), "--output",
                  str(tmp_path / "x"), "--splits", "test", "--dense-captions",
                  str(tmp_path / "dense.jsonl"), "--quiet"])
    # A feature run refuses features made by other weights.
    space = FeatureSpace(model=MODEL, weights="some-other-weights.pt", d=64)
    other = get_feature_method("contrastive")(space)
    with pytest.raises(ValueError, match="other-weights"):
        other.evaluate_split(load_features(features, split="test"))


def test_features_of_other_weights_are_refused_by_fingerprint(features, tmp_path, capsys):
    # Random weights from another seed carry the same name ("random") as the features the
    # run trained on; only their fingerprint tells them apart.
    manifest = json.loads((features / "manifest.json").read_text())
    assert len(manifest["weights_fingerprint"]) == 64
    data = make_synthetic(tmp_path / "syn", n_images=60, seed=1)
    other = tmp_path / "other"
    assert cli_main(["encode", "--model", MODEL, "--data-root", str(data), "--output",
                     str(other), "--splits", "test", "--seed", "1", "--quiet"]) == 0
    other_manifest = json.loads((other / "manifest.json").read_text())
    assert other_manifest["weights"] == manifest["weights"]
    assert other_manifest["weights_fingerprint"] != manifest["weights_fingerprint"]
    method = build_feature_method("contrastive", load_features(features, split="train"))
    method.evaluate_split(load_features(features, split="test"))  # the same weights: fine
    with pytest.raises(ValueError, match="other weights"):
        method.evaluate_split(load_features(other, split="test"))
    # One folder holds one set of weights.
    assert cli_main(["encode", "--model", MODEL, "--data-root", str(data), "--output",
                     str(other), "--splits", "val", "--seed", "2", "--quiet"]) == 2
    assert "other weights" in capsys.readouterr().err


def test_mid_epoch_resume_of_a_feature_form_equals_an_uninterrupted_run(features, tmp_path):
    # Feature forms keep one dataset (one loader and sampler) for all epochs: the epoch after
    # a resumed one must run, count and average all of its steps.
    train = load_features(features, split="train")
    val = load_features(features, split="val")

    def fit(out, **kw):
        torch.manual_seed(0)  # the same initial heads (a resumed run loads its own anyway)
        method = build_feature_method("contrastive", train)
        return Trainer(method, small_config(3, checkpoint_every=4), out).fit(train, val, **kw)

    full = fit(tmp_path / "full")
    steps = train.n_captions // 32
    part = tmp_path / "part"
    fit(part, stop_after_step=steps // 2)
    fit(part, stop_after_step=steps + 3)
    resumed = fit(part)
    assert [r["train_loss"] for r in resumed.history_] == pytest.approx(
        [r["train_loss"] for r in full.history_], rel=1e-6)
    a = torch.load(tmp_path / "full" / LAST_CHECKPOINT, weights_only=True)
    b = torch.load(part / LAST_CHECKPOINT, weights_only=True)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 3 * steps
    for key in a["method"]:
        torch.testing.assert_close(a["method"][key], b["method"][key])


@pytest.mark.parametrize("name", ["avse", "d2s"])
def test_infonce_matching_option_trains_and_reloads(features, tmp_path, name):
    # match_loss="infonce" replaces the hinge in every stage: the logged matching loss is the
    # InfoNCE of the batch (positive, about log(batch) at the start), and the run reloads with it.
    train, val, test = (load_features(features, split=s) for s in ("train", "val", "test"))
    config = {"match_loss": "infonce", **({"n_prompts": 4} if name == "d2s" else {})}
    torch.manual_seed(0)
    method = build_feature_method(name, train, method_config=config)
    assert method.get_config()["match_loss"] == "infonce"
    trainer = Trainer(method, small_config(3), tmp_path / name).fit(train, val)
    key = "train_matching" if name == "avse" else "train_loss"
    assert all(np.isfinite(r[key]) and r[key] > 0 for r in trainer.history_)
    reloaded = load_run(tmp_path / name)
    assert reloaded.get_config()["match_loss"] == "infonce"
    assert reloaded.evaluate_split(test)["rsum"] == pytest.approx(
        method.evaluate_split(test)["rsum"])


def test_infonce_matching_is_the_scaled_infonce_of_the_method_score(features):
    # AVSE: InfoNCE on the MaxSim chunk score divided by the number of caption chunks (4 at
    # d = 64, chunks of 16); D2S stage 1: InfoNCE on the image-dense cosines. The hinge option
    # gives another value on the same batch.
    from retrieval.losses import hinge_triplet, info_nce
    from retrieval.methods.avse import chunk_scores

    train = load_features(features, split="train")
    d = train.img_pooled.shape[1]
    generator = torch.Generator().manual_seed(0)
    ids = torch.arange(8)
    avse = build_feature_method("avse", train, method_config={"match_loss": "infonce",
                                                              "temperature": 0.1})
    images = torch.nn.functional.normalize(torch.randn(8, avse.n_views * d, generator=generator))
    texts = torch.nn.functional.normalize(torch.randn(8, d, generator=generator))
    scores = chunk_scores(images, texts, avse.chunk_sizes)
    assert avse.chunk_sizes == [16]
    matching = avse.view_losses(images, texts, ids, epoch=1)["matching"]
    torch.testing.assert_close(matching, info_nce(scores / 4, ids, temperature=0.1))
    hinge = build_feature_method("avse", train).view_losses(images, texts, ids, epoch=1)
    torch.testing.assert_close(hinge["matching"], hinge_triplet(scores, ids))
    assert not torch.isclose(hinge["matching"], matching)
    d2s = build_feature_method("d2s", train, method_config={"match_loss": "infonce",
                                                            "n_prompts": 4})
    dense = torch.nn.functional.normalize(torch.randn(8, d, generator=generator))
    torch.testing.assert_close(d2s.dense_matching(texts, dense, ids, epoch=1)["loss"],
                               info_nce(texts @ dense.t(), ids, temperature=0.05))
