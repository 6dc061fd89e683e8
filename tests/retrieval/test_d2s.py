"""D2S-VSE: dense-caption chunking, the two stages inside one budget, the cached teacher,
resuming across stages, and the command line (spec 5.2, 7)."""

import json
from dataclasses import replace

import pytest
import torch

from retrieval.cli import main as cli_main
from retrieval.data import load_split, make_synthetic
from retrieval.methods.d2s import DenseCaptionDataset, collate_dense, split_dense_caption
from retrieval.training import (BEST_WEIGHTS, LAST_CHECKPOINT, TrainConfig, Trainer,
                                build_method, evaluate_split, load_run)

MODEL = "tiny-vit-64"  # context 32: dense chunks of at most 30 BPE tokens


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, n_images=120, seed=0)
    return root


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    return build_method("contrastive", MODEL).backbone.tokenizer


def small_config(epochs, **kw):
    base = dict(epochs=epochs, batch_size=32, lr_backbone=1e-4, lr_new=1e-4, seed=0,
                augment=False, verbose=False, eval_batch_size=64)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def fine_tuned_clip(synthetic, tmp_path_factory):
    """D2S starts from a CLIP, as on real data (a tiny contrastive run here)."""
    run = tmp_path_factory.mktemp("clip") / "run"
    torch.manual_seed(0)
    method = build_method("contrastive", MODEL)
    Trainer(method, small_config(3, lr_backbone=5e-4, lr_new=5e-4), run).fit(
        load_split(synthetic, "train"), load_split(synthetic, "val"))
    return run


def test_dense_captions_pack_sentences_into_the_context(tokenizer):
    text = ("An image of four objects on a noisy gray background. In the top right there is a "
            "small red square. On the left there is a large red cross. " + " ".join(
                ["a very long run on sentence that goes on"] * 6) + ". Done.")
    chunks = split_dense_caption(text, tokenizer, 30)
    assert all(len(tokenizer.encode(chunk)) <= 30 for chunk in chunks)
    assert " ".join(chunks).split() == text.split()  # nothing lost, order kept
    # Short sentences are packed whole: the first chunk ends at a sentence end.
    assert chunks[0].endswith(".") and len(chunks) >= 3
    assert split_dense_caption("One sentence.", tokenizer, 30) == ["One sentence."]


def test_dense_items_and_their_collation(synthetic, tokenizer):
    split = load_split(synthetic, "train")
    dataset = DenseCaptionDataset(split, None, tokenizer, 30, with_images=False)
    assert len(dataset) == split.n_images
    batch = collate_dense([dataset[0], dataset[1], dataset[2]])
    counts = [dataset[i]["dense"].shape[0] for i in range(3)]
    assert batch["dense"].shape == (3, max(counts), 32)
    assert batch["dense_mask"].sum(dim=1).tolist() == counts
    with pytest.raises(ValueError, match="dense captions"):
        DenseCaptionDataset(replace(split, dense_captions=None), None, tokenizer, 30)


def test_budget_is_split_between_the_stages():
    method = build_method("d2s", MODEL)
    assert [method.stage1_epochs(e) for e in (1, 2, 3, 6, 15)] == [1, 1, 1, 2, 5]
    assert build_method("d2s", MODEL, method_config={"stage1_fraction": 0.5}
                        ).stage1_epochs(4) == 2


@pytest.fixture(scope="module")
def d2s_runs(synthetic, fine_tuned_clip, tmp_path_factory):
    """A 3-epoch run (1 stage-1 epoch + 2 stage-2 epochs), uninterrupted and interrupted."""
    base = tmp_path_factory.mktemp("d2s")
    train, val = load_split(synthetic, "train"), load_split(synthetic, "val")

    def run(out, stop=None):
        torch.manual_seed(0)
        method = build_method("d2s", MODEL, fine_tuned_clip,
                              method_config={"n_prompts": 8, "dropout": 0.0})
        trainer = Trainer(method, small_config(3), out).fit(train, val, stop_after_epoch=stop)
        return method, trainer

    full = run(base / "full")
    # Interrupted at the stage boundary, and again inside stage 2.
    run(base / "part", stop=1)
    stage1 = load_run(base / "part", which="last")
    run(base / "part", stop=2)
    resumed = run(base / "part")
    return {"full": full, "resumed": resumed, "stage1": stage1, "base": base,
            "train": train}


def test_stages_train_their_losses(d2s_runs):
    _, trainer = d2s_runs["full"]
    history = trainer.history_
    assert "train_dense_matching" in history[0] and "train_distillation" not in history[0]
    assert all("train_distillation" in h and "train_matching" in h for h in history[1:])
    assert history[2]["train_distillation"] < history[1]["train_distillation"]
    assert history[2]["train_gamma"] > 0  # the prompt branch receives gradient


def test_teacher_cache_equals_a_live_forward_of_the_stage1_tower(d2s_runs):
    method, _ = d2s_runs["full"]
    stage1 = d2s_runs["stage1"]
    assert int(stage1.stage) == 1 and stage1.teacher_cache is None
    train = d2s_runs["train"]
    dataset = DenseCaptionDataset(train, None, stage1.backbone.tokenizer, 30, with_images=False)
    batch = collate_dense([dataset[i] for i in range(len(dataset))])
    stage1.eval()
    live = stage1.dense_embeddings(batch["dense"], batch["dense_mask"])
    last = load_run(d2s_runs["base"] / "full", which="last")
    assert int(last.stage) == 2
    # Two stage-2 epochs later the cache is still the stage-1 tower's output: training never
    # moved it, while the (student) text tower itself changed.
    torch.testing.assert_close(last.teacher_cache, live, atol=1e-5, rtol=1e-4)
    assert last.teacher_digest == stage1.text_tower_digest() != last.text_tower_digest()


def test_resume_within_and_between_stages_equals_an_uninterrupted_run(d2s_runs):
    base = d2s_runs["base"]
    a = torch.load(base / "full" / LAST_CHECKPOINT, weights_only=True)["method"]
    b = torch.load(base / "part" / LAST_CHECKPOINT, weights_only=True)["method"]
    assert set(a) == set(b)
    # Bit-exact on the CPU, the cached teacher included.
    for key in a:
        if key.endswith("_extra_state"):
            assert torch.equal(a[key]["teacher_cache"], b[key]["teacher_cache"])
        else:
            assert torch.equal(a[key], b[key]), key


def test_resume_that_moves_the_stage_boundary_is_refused(d2s_runs, tmp_path):
    import shutil

    shutil.copytree(d2s_runs["base"] / "part", tmp_path / "run")
    method = load_run(tmp_path / "run", which="last")
    trainer = Trainer(method, small_config(12), tmp_path / "run")
    with pytest.raises(ValueError, match="train.epochs"):
        trainer.fit(d2s_runs["train"], None)


def test_each_stage_warms_up_on_its_own(d2s_runs):
    from retrieval.training import phased_warmup_cosine

    method, _ = d2s_runs["full"]
    assert method.training_phases(3) == [1, 2] and method.training_phases(15) == [5, 10]
    factor = phased_warmup_cosine([10, 50], 0.1)
    assert factor(0) == pytest.approx(1.0) and factor(9) < 0.05
    assert factor(10) == pytest.approx(0.2) and factor(14) == pytest.approx(1.0)


def test_evaluation_uses_the_selected_stage(d2s_runs, synthetic):
    _, trainer = d2s_runs["full"]
    best = load_run(d2s_runs["base"] / "full")
    test = load_split(synthetic, "test")
    metrics = evaluate_split(best, test, verbose=False)
    assert 0 < metrics["rsum"] <= 600
    stored = torch.load(d2s_runs["base"] / "full" / BEST_WEIGHTS, weights_only=True)
    assert int(best.stage) == int(stored["stage"]) == (1 if trainer.best_epoch_ == 0 else 2)


def test_command_line_trains_d2s_and_refuses_missing_dense_captions(synthetic, fine_tuned_clip,
                                                                    tmp_path, capsys):
    run = tmp_path / "cli"
    code = cli_main(["train", "--method", "d2s", "--model", MODEL, "--pretrained",
                     str(fine_tuned_clip), "--data-root", str(synthetic), "--output", str(run),
                     "--epochs", "2", "--batch-size", "32", "--lr", "1e-4", "--quiet",
                     "--method-config", json.dumps({"n_prompts": 4})])
    assert code == 0
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "d2s" and config["method_config"]["n_prompts"] == 4
    assert cli_main(["evaluate", "--run", str(run), "--data-root", str(synthetic),
                     "--quiet"]) == 0
    # A folder without dense captions: a clear error before any training.
    (tmp_path / "plain").mkdir()
    for name in ("captions.tsv", "images"):
        (tmp_path / "plain" / name).symlink_to(synthetic / name)
    assert cli_main(["train", "--method", "d2s", "--model", MODEL, "--data-root",
                     str(tmp_path / "plain"), "--output", str(tmp_path / "x"), "--epochs", "2",
                     "--batch-size", "32", "--quiet"]) == 2
    assert "dense captions" in capsys.readouterr().err


DDP_D2S_SCRIPT = """
import sys, torch
from retrieval.data import load_split
from retrieval.training import TrainConfig, Trainer, build_method
root, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
method = build_method("d2s", "tiny-vit-64", method_config={"n_prompts": 4, "dropout": 0.0})
config = TrainConfig(epochs=2, batch_size=16, lr_backbone=1e-4, lr_new=1e-4, augment=False,
                     verbose=False, warmup_fraction=0.0)
Trainer(method, config, out).fit(load_split(root, "train").subset(48), None)
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_teacher_cache_and_stages_under_two_gloo_processes(synthetic, one_and_two_processes):
    """The stage-2 teacher cache is computed on shards and gathered: two processes cache what
    one process caches, and train the same losses on the same global batches."""
    folders = one_and_two_processes(DDP_D2S_SCRIPT, str(synthetic))
    one, two = (torch.load(folder / LAST_CHECKPOINT, weights_only=True) for folder in folders)
    cache_one = one["method"]["_extra_state"]["teacher_cache"]
    cache_two = two["method"]["_extra_state"]["teacher_cache"]
    assert cache_one.shape == (48, 64)
    torch.testing.assert_close(cache_two, cache_one, atol=1e-5, rtol=1e-4)
    history_one, history_two = (json.loads(h["history"]) for h in (one, two))
    for a, b in zip(history_one, history_two):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    assert "train_distillation" in history_two[1]


def test_training_steps_never_wait_for_the_device(synthetic, tokenizer, host_syncs):
    """Both stages' steps run without reading the device back: the dense chunks come listed
    from the collation, the stage is known on the host, the teacher rows are indexed where
    the batch is."""
    from retrieval.data.torch_datasets import PairDataset

    split = load_split(synthetic, "train")
    torch.manual_seed(0)
    method = build_method("d2s", MODEL, method_config={"n_prompts": 4, "dropout": 0.0})
    dense = collate_dense([DenseCaptionDataset(split, method.backbone.preprocess, tokenizer,
                                               30)[i] for i in range(4)])
    with host_syncs() as calls:
        method.training_step(dense, lambda t: t)["loss"].backward()
    assert calls == []
    method._set_stage(2)
    method.teacher_cache = torch.nn.functional.normalize(
        torch.randn(split.n_images, method.backbone.embed_dim), dim=-1)
    method.teacher_digest = method.text_tower_digest()
    pairs = PairDataset(split, method.backbone.preprocess, tokenizer)
    batch = method.collate([pairs[i] for i in range(4)])
    with host_syncs() as calls:
        losses = method.training_step(batch, lambda t: t)
        losses["loss"].backward()
    assert calls == [] and torch.isfinite(losses["distillation"])
    # The stage on the host follows a loaded state dict.
    state = method.state_dict()
    state["stage"] = torch.tensor(1)
    method.load_state_dict(state)
    assert method.stage_now == 1
