"""The trainer: learning on the synthetic set, checkpoints, resume, errors, DDP with gloo."""

import json
import math

import pytest
import torch

from retrieval.backbones import CheckpointError
from retrieval.data import load_split, make_synthetic
from retrieval.training import (BEST_WEIGHTS, CONFIG_FILE, LAST_CHECKPOINT, TrainConfig, Trainer,
                                build_method, evaluate_split, load_run, warmup_cosine)

MODEL = "tiny-vit-64"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, n_images=300, seed=0)
    return root


def small_config(**kw):
    base = dict(epochs=2, batch_size=32, lr_backbone=5e-4, lr_new=5e-4, seed=0, augment=False,
                verbose=False, eval_batch_size=128)
    base.update(kw)
    return TrainConfig(**base)


def train(synthetic, out, stop_after_epoch=None, **kw):
    torch.manual_seed(0)
    method = build_method("contrastive", MODEL)
    trainer = Trainer(method, small_config(**kw), out)
    trainer.fit(load_split(synthetic, "train"), load_split(synthetic, "val"),
                stop_after_epoch=stop_after_epoch)
    return trainer


def test_schedule_warms_up_then_decays():
    factor = warmup_cosine(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0)


def test_contrastive_fine_tune_beats_zero_shot(synthetic, tmp_path):
    test = load_split(synthetic, "test")
    torch.manual_seed(0)
    zero_shot = evaluate_split(build_method("contrastive", MODEL), test, verbose=False)
    trainer = train(synthetic, tmp_path / "run", epochs=4)
    trained = evaluate_split(load_run(tmp_path / "run"), test, verbose=False)
    # 30 test images: chance rSum is about 3 * (1 + 5 + 10) / 30 * 100 * 2 = 320 for i2t with
    # 5 positives... far lower for t2i; the untrained model sits near chance.
    assert trained["rsum"] > zero_shot["rsum"] + 60, (zero_shot["rsum"], trained["rsum"])
    assert trainer.history_[-1]["train_loss"] < trainer.history_[0]["train_loss"]
    assert "val_rsum" in trainer.history_[0]
    assert trainer.best_epoch_ >= 0


def test_resume_equals_uninterrupted_run(synthetic, tmp_path):
    full = train(synthetic, tmp_path / "full", epochs=2)
    interrupted = train(synthetic, tmp_path / "part", epochs=2, stop_after_epoch=1)
    assert len(interrupted.history_) == 1
    # A second invocation continues from checkpoint_last.pt (fresh model, optimiser, schedule).
    resumed = train(synthetic, tmp_path / "part", epochs=2)
    assert len(resumed.history_) == 2
    a = torch.load(tmp_path / "full" / LAST_CHECKPOINT, weights_only=True)["method"]
    b = torch.load(tmp_path / "part" / LAST_CHECKPOINT, weights_only=True)["method"]
    # Resume is bit-exact on the CPU: the same weights, the same losses.
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert full.history_[1]["train_loss"] == resumed.history_[1]["train_loss"]


def test_run_folder_round_trip_and_errors(synthetic, tmp_path):
    run = tmp_path / "run"
    train(synthetic, run, epochs=1)
    config = json.loads((run / CONFIG_FILE).read_text())
    assert config["method"] == "contrastive" and config["model"] == MODEL
    method = load_run(run)
    test = load_split(synthetic, "test")
    a = evaluate_split(method, test, verbose=False)
    b = evaluate_split(load_run(run), test, verbose=False)
    assert a == b
    # Truncated weights.
    data = (run / BEST_WEIGHTS).read_bytes()
    (run / BEST_WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_run(run)
    # A run folder whose config names another architecture.
    (run / BEST_WEIGHTS).write_bytes(data)
    config["model"] = "tiny-vit"
    (run / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_run(run)
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        load_run(tmp_path / "nowhere")


def test_resume_with_other_settings_is_refused_and_leaves_the_run_intact(synthetic, tmp_path):
    run = tmp_path / "run"
    train(synthetic, run, epochs=2, stop_after_epoch=1)
    before = (run / CONFIG_FILE).read_text()
    with pytest.raises(ValueError, match="train.lr_backbone"):
        train(synthetic, run, epochs=2, lr_backbone=1e-3)
    assert (run / CONFIG_FILE).read_text() == before
    # Restarting is explicit and clears the old checkpoints.
    torch.manual_seed(0)
    trainer = Trainer(build_method("contrastive", MODEL), small_config(epochs=1, lr_backbone=1e-3),
                      run)
    trainer.fit(load_split(synthetic, "train"), load_split(synthetic, "val"), resume=False)
    assert len(trainer.history_) == 1
    assert json.loads((run / CONFIG_FILE).read_text())["train"]["lr_backbone"] == 1e-3


def test_corrupt_last_checkpoint_on_resume(synthetic, tmp_path):
    run = tmp_path / "run"
    train(synthetic, run, epochs=2, stop_after_epoch=1)
    torch.save({"method": {}}, run / LAST_CHECKPOINT)
    with pytest.raises(CheckpointError, match="lacks"):
        train(synthetic, run, epochs=2)
    (run / LAST_CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(synthetic, run, epochs=2)


def test_selection_never_sees_test(synthetic, tmp_path):
    trainer = Trainer(build_method("contrastive", MODEL), small_config(), tmp_path)
    with pytest.raises(ValueError, match="test split"):
        trainer.fit(load_split(synthetic, "train"), load_split(synthetic, "test"))
    train_split = load_split(synthetic, "train")
    with pytest.raises(ValueError, match="both in the training and the validation"):
        trainer.fit(train_split, train_split.subset(10))


def test_bad_settings_are_refused(synthetic, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=1)
    tiny = load_split(synthetic, "test")  # 30 images, 150 pairs
    trainer = Trainer(build_method("contrastive", MODEL), small_config(batch_size=256), tmp_path)
    with pytest.raises(ValueError, match="fewer than one batch"):
        trainer.fit(tiny)


DDP_SCRIPT = """
import sys, torch
from retrieval.data import load_split
from retrieval.training import TrainConfig, Trainer, build_method
root, stop, out = sys.argv[1], sys.argv[2], sys.argv[3]
torch.manual_seed(0)
method = build_method("contrastive", "tiny-vit")
# A weight matrix the loss never uses: AdamW's decay and momentum must leave it alone in
# two processes as in one.
method.register_parameter("never_used", torch.nn.Parameter(torch.ones(4, 4)))
config = TrainConfig(epochs=2, batch_size=32, lr_backbone=1e-3, augment=True, verbose=False,
                     warmup_fraction=0.0, grad_clip=2.0, num_workers=0, eval_batch_size=40)
trainer = Trainer(method, config, out)
trainer.fit(load_split(root, "train").subset(40), load_split(root, "val").subset(20),
            stop_after_step=int(stop) if stop != "-" else None)
"""


@pytest.fixture(scope="module")
def ddp_runs(synthetic, tmp_path_factory, launch):
    """Two epochs of 6 steps with validation: in one process, in two gloo processes, and in
    two processes stopped inside the second epoch (step 9) then resumed by a new launch."""
    if not torch.distributed.is_available():
        pytest.skip("torch without distributed")
    base = tmp_path_factory.mktemp("ddp")
    script = base / "ddp_script.py"
    script.write_text(DDP_SCRIPT)
    folders = {name: base / name for name in ("one", "two", "resumed")}
    launch(script, str(synthetic), "-", str(folders["one"]))
    launch(script, str(synthetic), "-", str(folders["two"]), processes=2)
    launch(script, str(synthetic), "9", str(folders["resumed"]), processes=2)
    partial = torch.load(folders["resumed"] / LAST_CHECKPOINT, weights_only=True)
    assert json.loads(partial["partial"])["steps"] == 3 and partial["epoch"] == 0
    launch(script, str(synthetic), "-", str(folders["resumed"]), processes=2)
    return folders


def test_ddp_two_gloo_processes_match_one_process(ddp_runs):
    one_history = json.loads((ddp_runs["one"] / "history.json").read_text())
    two_history = json.loads((ddp_runs["two"] / "history.json").read_text())
    one, two = one_history["history"][0], two_history["history"][0]
    # The same global batches: the same loss, the same gradient (its norm before clipping
    # covers every parameter, CLIP's temperature included) and the same weights after the
    # updates.
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert two["train_grad_norm"] == pytest.approx(one["train_grad_norm"], rel=1e-4)
    a = torch.load(ddp_runs["one"] / LAST_CHECKPOINT, weights_only=True)["method"]
    b = torch.load(ddp_runs["two"] / LAST_CHECKPOINT, weights_only=True)["method"]
    diffs = torch.cat([(a[k].float() - b[k].float()).abs().flatten() for k in a])
    # Gradients agree up to summation order; Adam divides by sqrt(v), which can turn a
    # 1e-9 gradient difference into a visible step for parameters whose gradient is ~0, so
    # the bound is a flipped Adam step (2 lr) per update for the few such entries.
    assert float(diffs.median()) < 1e-6
    assert float((diffs > 1e-5).float().mean()) < 0.01
    assert float(diffs.max()) < 2 * 2 * 1e-3  # 2 updates, a sign flip costs 2 lr each
    # The parameter without gradient did not move, in either run.
    assert torch.equal(a["never_used"], torch.ones(4, 4))
    assert torch.equal(b["never_used"], torch.ones(4, 4))
    # Validation ran under two processes at every epoch end, and the main process saved
    # the selected epoch: model_best.pt holds the weights that epoch ended with.
    for history in (one_history, two_history):
        assert all("val_rsum" in record for record in history["history"])
        assert history["best_val_rsum"] == max(r["val_rsum"] for r in history["history"])
    best = torch.load(ddp_runs["two"] / BEST_WEIGHTS, weights_only=True)
    if two_history["best_epoch"] == 1:
        assert all(torch.equal(best[key], b[key]) for key in b)
    else:
        assert not all(torch.equal(best[key], b[key]) for key in b)


def test_ddp_mid_epoch_resume_equals_an_uninterrupted_run(ddp_runs):
    # Bit-exact: the same batches, seeds and reductions (gloo sums the two processes'
    # gradients, a + b, whatever the bucket layout DDP rebuilds after the resume).
    full, resumed = (torch.load(ddp_runs[name] / LAST_CHECKPOINT, weights_only=True)
                     for name in ("two", "resumed"))
    assert full["method"].keys() == resumed["method"].keys()
    for key in full["method"]:
        assert torch.equal(full["method"][key], resumed["method"][key]), key
    assert json.loads(full["history"]) == [
        {**record, "train_time_s": theirs["train_time_s"]}
        for record, theirs in zip(json.loads(resumed["history"]), json.loads(full["history"]))]
    best_full, best_resumed = (torch.load(ddp_runs[name] / BEST_WEIGHTS, weights_only=True)
                               for name in ("two", "resumed"))
    assert all(torch.equal(best_full[key], best_resumed[key]) for key in best_full)


def test_ddp_wraps_the_training_step_in_distributed_data_parallel():
    # The engine is torch's DDP (bucketed, overlapped reduction), not a per-parameter loop.
    import inspect

    from retrieval import training

    source = inspect.getsource(training)
    assert "DistributedDataParallel(" in source
    assert "dist.all_reduce(parameter.grad" not in source


def _small_split(synthetic):
    return load_split(synthetic, "train").subset(60), load_split(synthetic, "val").subset(20)


def test_mid_epoch_resume_equals_an_uninterrupted_run(synthetic, tmp_path):
    train_split, val_split = _small_split(synthetic)

    def run(out, **kw):
        torch.manual_seed(0)
        trainer = Trainer(build_method("contrastive", MODEL),
                          small_config(augment=True, checkpoint_every=4, **kw), out)
        return trainer

    full = run(tmp_path / "full", num_workers=0).fit(train_split, val_split)
    steps_per_epoch = train_split.n_captions // 32
    assert steps_per_epoch == 9
    # Pre-empted in the middle of epoch 1 (step 5) and in the middle of epoch 2 (step 13).
    part = tmp_path / "part"
    run(part, num_workers=0).fit(train_split, val_split, stop_after_step=5)
    state = torch.load(part / LAST_CHECKPOINT, weights_only=True)
    assert state["epoch"] == -1 and json.loads(state["partial"])["steps"] == 5
    run(part, num_workers=0).fit(train_split, val_split, stop_after_step=13)
    assert json.loads(torch.load(part / LAST_CHECKPOINT, weights_only=True)["partial"])[
        "steps"] == 4
    # The last leg with two loader workers: the crops are seeded per item, not per worker.
    resumed = run(part, num_workers=2).fit(train_split, val_split)
    a = torch.load(tmp_path / "full" / LAST_CHECKPOINT, weights_only=True)
    b = torch.load(part / LAST_CHECKPOINT, weights_only=True)
    for key in a["method"]:
        assert torch.equal(a["method"][key], b["method"][key]), key
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 2 * steps_per_epoch
    # The running sums of a pre-empted epoch travel through the checkpoint as float64, so
    # the epoch means are the same numbers too.
    assert [r["train_loss"] for r in resumed.history_] == [r["train_loss"]
                                                           for r in full.history_]


def test_resume_with_other_epochs_is_refused(synthetic, tmp_path):
    train_split, val_split = _small_split(synthetic)
    torch.manual_seed(0)
    Trainer(build_method("contrastive", MODEL), small_config(epochs=2), tmp_path).fit(
        train_split, val_split, stop_after_epoch=1)
    with pytest.raises(ValueError, match="train.epochs"):
        Trainer(build_method("contrastive", MODEL), small_config(epochs=3), tmp_path).fit(
            train_split, val_split)


class _SkippingScaler:
    """A stand-in for torch.amp.GradScaler that skips the first two updates: their scaled
    loss overflows, as fp16 does, so their gradients (and norms) are infinite."""

    def __init__(self):
        self.calls, self.scale_value = 0, 1024.0

    def scale(self, loss):
        return loss * float("inf") if self.calls < 2 else loss

    def unscale_(self, optimizer):
        pass

    def step(self, optimizer):
        self.calls += 1
        if self.calls > 2:
            optimizer.step()

    def update(self):
        if self.calls <= 2:
            self.scale_value /= 2

    def get_scale(self):
        return self.scale_value

    def state_dict(self):
        return {"scale": self.scale_value}


def test_schedule_does_not_advance_on_skipped_fp16_steps(synthetic, tmp_path, monkeypatch):
    import contextlib

    train_split, _ = _small_split(synthetic)
    monkeypatch.setattr(Trainer, "_autocast",
                        lambda self, device: (contextlib.nullcontext(), _SkippingScaler()))
    torch.manual_seed(0)
    trainer = Trainer(build_method("contrastive", MODEL), small_config(epochs=1), tmp_path)
    trainer.fit(train_split, None)
    state = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)
    assert state["scheduler"]["last_epoch"] == 9 - 2
    # The skipped steps are logged as such; the mean norm is over the applied updates.
    record = trainer.history_[0]
    assert record["train_skipped_updates"] == 2
    assert math.isfinite(record["train_grad_norm"]) and record["train_grad_norm"] > 0


def test_non_finite_loss_is_caught_at_the_next_sync(synthetic, tmp_path, monkeypatch):
    from retrieval.methods.contrastive import ContrastiveFineTune

    train_split, _ = _small_split(synthetic)
    original = ContrastiveFineTune.training_step

    def poisoned(self, batch, gather, epoch=0):
        losses = original(self, batch, gather, epoch=epoch)
        losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(ContrastiveFineTune, "training_step", poisoned)
    trainer = Trainer(build_method("contrastive", MODEL), small_config(epochs=1, log_every=3),
                      tmp_path)
    with pytest.raises(FloatingPointError, match="3 non-finite loss"):
        trainer.fit(train_split, None)


def test_quickgelu_run_reloads_as_quickgelu(synthetic, tmp_path):
    from open_clip.transformer import QuickGELU

    from retrieval.backbones import encode_texts

    train_split, val_split = _small_split(synthetic)
    torch.manual_seed(0)
    method = build_method("contrastive", MODEL, backbone_options={"force_quick_gelu": True})
    Trainer(method, small_config(epochs=1), tmp_path / "run").fit(train_split, val_split)
    config = json.loads((tmp_path / "run" / CONFIG_FILE).read_text())
    assert config["backbone_options"]["force_quick_gelu"] is True
    reloaded = load_run(tmp_path / "run")
    assert any(isinstance(m, QuickGELU) for m in reloaded.backbone.model.modules())
    captions = val_split.captions[:8]
    torch.testing.assert_close(torch.from_numpy(encode_texts(reloaded, captions, verbose=False)),
                               torch.from_numpy(encode_texts(method, captions, verbose=False)))
    # A run started from this one inherits its build options.
    child = build_method("contrastive", MODEL, tmp_path / "run")
    assert child.backbone.build_options["force_quick_gelu"] is True


def test_a_trained_start_is_kept_unless_an_epoch_beats_it(synthetic, tmp_path):
    """``--pretrained RUN_FOLDER`` (or a weights file): the start is validated as epoch 0
    and stays in model_best.pt unless an epoch beats it."""
    from retrieval.backbones import save_weights

    train_split = load_split(synthetic, "train")
    val_split = load_split(synthetic, "val")
    torch.manual_seed(0)
    start_file = save_weights(build_method("contrastive", MODEL).backbone.model,
                              tmp_path / "random_start.pt")
    # Training helps: a later epoch beats the (random) start and is selected.
    torch.manual_seed(0)
    helped = Trainer(build_method("contrastive", MODEL, start_file),
                     small_config(epochs=2, lr_backbone=1e-3, lr_new=1e-3), tmp_path / "helped")
    helped.fit(train_split, val_split)
    assert helped.start_ is not None and helped.best_epoch_ >= 0, (
        helped.start_["val_rsum"], [r["val_rsum"] for r in helped.history_])
    assert helped.best_rsum_ > helped.start_["val_rsum"]
    record = json.loads((tmp_path / "helped" / "history.json").read_text())
    assert record["kept"] == "epoch" and record["start"]["val_rsum"] == helped.start_["val_rsum"]
    # Training only hurts (a huge learning rate): the start, that run's selected weights,
    # is what the run keeps and ends with.
    torch.manual_seed(0)
    method = build_method("contrastive", MODEL, tmp_path / "helped")
    start = {k: v.clone() for k, v in method.state_dict().items()}
    hurt = Trainer(method, small_config(epochs=1, lr_backbone=0.3, lr_new=0.3),
                   tmp_path / "hurt")
    hurt.fit(train_split.subset(40), val_split)
    assert hurt.history_[0]["val_rsum"] < hurt.start_["val_rsum"] == hurt.best_rsum_
    assert hurt.best_epoch_ == -1
    record = json.loads((tmp_path / "hurt" / "history.json").read_text())
    assert record["kept"] == "start" and record["best_epoch"] == -1
    best = torch.load(tmp_path / "hurt" / BEST_WEIGHTS, weights_only=True)
    assert all(torch.equal(best[k], start[k]) for k in start)
    assert all(torch.equal(v, start[k]) for k, v in method.state_dict().items())
    # Random weights or evaluate_start=False: no epoch 0.
    torch.manual_seed(0)
    plain = Trainer(build_method("contrastive", MODEL, start_file),
                    small_config(epochs=1, evaluate_start=False), tmp_path / "plain")
    plain.fit(train_split.subset(40), val_split)
    assert plain.start_ is None and plain.best_epoch_ == 0
