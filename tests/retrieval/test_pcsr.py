"""PCSR: the loss-based split, the consistency score and threshold, the refinement losses,
both modes (fine-tune and adapters on features), per-pair state in checkpoints, and the rule
that training never reads the true noise labels (spec 3, 5.3, 6, 7)."""

import json

import numpy as np
import pytest
import torch

from retrieval.cli import main as cli_main
from retrieval.data import load_features, load_split, make_synthetic, shuffle_captions
from retrieval.data.features import FeatureSplit
from retrieval.methods import FeatureSpace, PseudoLabelRefinementAdapters
from retrieval.methods.pcsr import (AMBIGUOUS, CLEAN, REFINABLE, TwoStreamPairs,
                                    low_component_probability, network_stream,
                                    pcsr_schedule, per_sample_hinge_losses,
                                    pseudo_label_consistency, soft_correspondence_labels,
                                    update_threshold)
from retrieval.training import LAST_CHECKPOINT, TrainConfig, Trainer, build_method, load_run

MODEL = "tiny-vit-64"
D = 32


# ------------------------------------------------------------------------------------ pieces
def test_mixture_separates_planted_low_and_high_losses():
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.1, 0.03, 300), rng.normal(0.6, 0.05, 200)
    probability = low_component_probability(np.concatenate([low, high]), seed=0)
    assert probability.shape == (500,)
    assert np.mean(probability[:300] > 0.5) > 0.98
    assert np.mean(probability[300:] < 0.5) > 0.98
    # Same answer for the same seed; all-equal values carry no split.
    np.testing.assert_array_equal(
        probability, low_component_probability(np.concatenate([low, high]), seed=0))
    np.testing.assert_array_equal(low_component_probability(np.full(5, 0.3)), np.ones(5))
    with pytest.raises(ValueError, match="finite"):
        low_component_probability(np.array([0.1, np.nan, 0.3]))


def test_per_sample_losses_are_the_mean_hinge_terms_of_each_batch():
    images = torch.eye(3)
    texts = torch.eye(3)[[0, 2, 1]]  # pair 0 matches; pairs 1 and 2 swapped their captions
    ids = torch.arange(3)
    losses = per_sample_hinge_losses(images, texts, ids, margin=0.2, batch_size=3, seed=0)
    # Pair 0: s_00 = 1, every other score 0 -> all four terms [0.2 - 1 + 0]_+ = 0.
    # Pair 1: s_11 = 0; s_12 = 1 (image 1 vs caption 2) and s_21 = 1: terms
    #   i2t [0.2 - 0 + s_10=0, s_12=1] = 0.2, 1.2; t2i [0.2 - 0 + s_01=0, s_21=1] = 0.2, 1.2.
    np.testing.assert_allclose(losses, [0.0, 0.7, 0.7], atol=1e-6)
    # Pairs of the same image are not negatives of each other.
    same = per_sample_hinge_losses(torch.eye(2)[[0, 0]], torch.eye(2)[[1, 1]],
                                   torch.tensor([5, 5]), batch_size=2)
    np.testing.assert_array_equal(same, [0.0, 0.0])


def test_consistency_score_and_threshold_on_hand_made_histories():
    counts = np.array([[5, 1, 0, 0],    # lead 4
                       [3, 3, 0, 0],    # tie: 0
                       [0, 0, 2, 0],    # one class seen: its count
                       [0, 0, 0, 0]])   # never voted
    np.testing.assert_array_equal(pseudo_label_consistency(counts), [4, 0, 2, 0])
    np.testing.assert_array_equal(pseudo_label_consistency(torch.tensor(counts,
                                                                        dtype=torch.int16)),
                                  [4, 0, 2, 0])
    pcs = np.array([4, 0, 2, 0])
    # E_w = 5, E_c = 50, first co-training epoch: t = 5, T = 55, lambda* = 0.4 + 0.5 * 5 / 55.
    target = 0.4 + 0.5 * 5 / 55
    share = 0.5  # PCS 4 and 2 are above tau = 1.5
    expected = 0.7 * 1.5 + 0.3 * (1.5 - 0.2 * (target - share))
    assert update_threshold(1.5, pcs, 0, 5, 50) == pytest.approx(expected)
    # More pairs above the threshold than the target share: it rises; fewer: it falls.
    assert update_threshold(1.5, pcs, 0, 5, 50) > 1.5
    assert update_threshold(3.0, pcs, 0, 5, 50) < 3.0
    assert update_threshold(-1.0, pcs, 49, 5, 50) == pytest.approx(
        -1.0 - 0.3 * 0.2 * (0.4 + 0.5 * 54 / 55 - 1.0))
    labels = soft_correspondence_labels([0.9, 0.2, 0.2], [0.0, 0.8, 0.4])
    np.testing.assert_allclose(labels, [0.9, 0.2 + 0.8 * 0.8, 0.2])


def test_budget_is_mapped_onto_the_official_phases():
    assert pcsr_schedule(55) == pcsr_schedule(55, 1 / 11, (0.5, 0.8))
    official = pcsr_schedule(55)
    assert (official.warmup_epochs, official.cotrain_epochs, official.stage2,
            official.stage3) == (5, 50, 25, 40)
    clip = pcsr_schedule(11)
    assert (clip.warmup_epochs, clip.cotrain_epochs, clip.stage2, clip.stage3) == (1, 10, 5, 8)
    assert [clip.phase(e) for e in (0, 1, 5, 6, 9, 10)] == [
        ("warmup", 0), ("cotrain", 1), ("cotrain", 1), ("cotrain", 2), ("cotrain", 3),
        ("cotrain", 3)]
    assert pcsr_schedule(2).phase(1) == ("cotrain", 1)
    with pytest.raises(ValueError, match="epochs"):
        pcsr_schedule(0)


# ------------------------------------------------------------------------------------ features
def planted_features(n_images: int, seed: int, name: str, noise: float = 0.0) -> FeatureSplit:
    """Pooled 'features' of a frozen encoder that already aligns images and captions."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n_images, D)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    ids = np.repeat(np.arange(n_images), 5)
    texts = images[ids] + 0.6 * rng.normal(size=(len(ids), D)).astype(np.float32) / np.sqrt(D)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    manifest = {"model": "planted", "weights": "planted", "d": D}
    split = FeatureSplit(name, images, texts.astype(np.float32), ids.astype(np.int64), manifest)
    if noise:
        split = split.with_noise(shuffle_captions(ids, noise, seed=seed))
    return split


def small_config(epochs, **kw):
    base = dict(epochs=epochs, batch_size=64, lr_backbone=1e-4, lr_new=1e-3, seed=0,
                augment=False, verbose=False, eval_batch_size=128)
    base.update(kw)
    return TrainConfig(**base)


def adapters(**kw):
    torch.manual_seed(0)
    return PseudoLabelRefinementAdapters(FeatureSpace("planted", "planted", D), **kw)


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    """The adapter form on 120 planted images (600 pairs, 40% shuffled), 6 epochs."""
    train = planted_features(120, 0, "train", noise=0.4)
    val = planted_features(40, 1, "val")
    out = tmp_path_factory.mktemp("pcsr") / "run"
    method = adapters()
    trainer = Trainer(method, small_config(6), out).fit(train, val)
    return {"method": method, "trainer": trainer, "train": train, "val": val, "out": out}


def test_split_on_planted_noise_finds_the_clean_pairs(noisy_run):
    history = noisy_run["trainer"].history_
    assert history[0]["pcsr_stage"] == 0 and "pcsr_A_clean" not in history[0]
    cotrain = [record for record in history if record["pcsr_stage"] > 0]
    assert [record["pcsr_stage"] for record in cotrain] == [1, 1, 1, 2, 3]
    for record in cotrain:
        for name in "AB":
            # The noise-free rate is 0.6: a split guessing blindly has that precision.
            assert record[f"pcsr_{name}_clean_precision"] > 0.9
            assert record[f"pcsr_{name}_clean_recall"] > 0.7
            sizes = (record[f"pcsr_{name}_clean"] + record[f"pcsr_{name}_refinable"]
                     + record[f"pcsr_{name}_ambiguous"])
            assert sizes == 600
    # Each stage trains its subsets: refined pairs from stage 2, robust loss in stage 3.
    assert cotrain[0]["train_refined_match_A"] == 0
    # A network trains the robust loss when the other's split left ambiguous pairs.
    last = cotrain[-1]
    assert (last["train_robust_A"] != 0) == (last["pcsr_B_ambiguous"] > 0)
    assert (last["train_robust_B"] != 0) == (last["pcsr_A_ambiguous"] > 0)
    assert last["pcsr_A_ambiguous"] + last["pcsr_B_ambiguous"] > 0


def test_training_never_reads_the_true_noise_labels(noisy_run, tmp_path):
    """Same noisy pairs, other 'true' labels: training is bit-identical; only the logged
    analysis changes."""
    train = noisy_run["train"]
    lying = FeatureSplit("train", train.img_pooled, train.txt_pooled, train.txt_img,
                         train.manifest,
                         clean_text_image_ids=np.random.default_rng(5).permutation(
                             train.clean_text_image_ids))
    method = adapters()
    trainer = Trainer(method, small_config(6), tmp_path / "run").fit(lying, noisy_run["val"])
    for ours, theirs in zip(trainer.history_, noisy_run["trainer"].history_):
        assert ours["train_loss"] == theirs["train_loss"]
        if "pcsr_A_clean" in ours:
            assert ours["pcsr_A_clean"] == theirs["pcsr_A_clean"]
            assert ours["pcsr_A_clean_precision"] != theirs["pcsr_A_clean_precision"]
    for a, b in zip(method.state_dict().values(), noisy_run["method"].state_dict().values()):
        if torch.is_tensor(a):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_losses_fall_over_a_few_steps():
    train = planted_features(60, 2, "train", noise=0.4)
    method = adapters()
    optimiser = torch.optim.Adam(method.parameters(), lr=1e-3)
    batch_rows = torch.arange(64)
    batch = {"image": torch.from_numpy(train.img_pooled[train.txt_img[:64]]),
             "text": torch.from_numpy(train.txt_pooled[:64]),
             "image_index": torch.from_numpy(train.txt_img[:64]), "caption_index": batch_rows}
    method._reset_pair_state(train.n_captions)

    def step(key):
        losses = method.training_step(batch, lambda t: t)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
        return float(losses[key])

    first = step("warmup_match_A")
    for _ in range(20):
        last = step("warmup_match_A")
    assert last < first
    # Co-training, stage 3: every subset present in the batch.
    method.phase_now = ("cotrain", 3)
    codes = torch.full((train.n_captions,), CLEAN, dtype=torch.int8)
    codes[40:52], codes[52:64] = REFINABLE, AMBIGUOUS
    for n in range(2):
        method.subsets[n] = codes
        method.soft_labels[n] = torch.ones(train.n_captions)
    first = {key: step(key) for key in ("clean_match_A",)}
    for _ in range(20):
        losses = method.training_step(batch, lambda t: t)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
    assert float(losses["clean_match_A"]) < first["clean_match_A"]
    for key in ("pseudo_class_A", "refined_match_A", "robust_A"):
        assert torch.isfinite(losses[key]) and float(losses[key]) != 0


def test_state_round_trips_and_resume_equals_an_uninterrupted_run(noisy_run, tmp_path):
    reloaded = load_run(noisy_run["out"], which="last")
    saved = torch.load(noisy_run["out"] / LAST_CHECKPOINT, weights_only=True)
    state = saved["method"]["_extra_state"]
    for n, name in enumerate("AB"):
        torch.testing.assert_close(reloaded.vote_counts[n], state[f"votes_{name}"])
        torch.testing.assert_close(reloaded.banked[n], state[f"bank_{name}"])
        torch.testing.assert_close(reloaded.subsets[n], state[f"subsets_{name}"])
        assert reloaded.threshold[n] == float(state[f"threshold_{name}"])
        assert np.isfinite(reloaded.threshold[n])
    # One vote per pair in each warm-up batch (9 full batches of 64: 576 pairs) and in each
    # of the 5 split passes (all 600 pairs).
    assert reloaded.vote_counts[0].shape == (600, 256)
    assert int(reloaded.vote_counts[0].sum()) == 576 + 5 * 600
    # Stopped after the warm-up and after stage 1, then resumed.
    out = tmp_path / "part"
    for stop in (1, 3, None):
        method = adapters()
        trainer = Trainer(method, small_config(6), out).fit(
            noisy_run["train"], noisy_run["val"], stop_after_epoch=stop)
    for ours, theirs in zip(trainer.history_, noisy_run["trainer"].history_):
        assert ours["train_loss"] == theirs["train_loss"]  # bit-exact on the CPU
        assert ours.get("pcsr_B_clean") == theirs.get("pcsr_B_clean")
    resumed, full = (torch.load(folder / LAST_CHECKPOINT, weights_only=True)["method"]
                     for folder in (out, noisy_run["out"]))
    for key in full:
        if not key.endswith("_extra_state"):
            assert torch.equal(resumed[key], full[key]), key
    with pytest.raises(ValueError, match="planned for 6 epochs"):
        Trainer(adapters(), small_config(8), out).fit(noisy_run["train"], noisy_run["val"])


def test_ensemble_is_the_mean_of_the_two_networks_scores(noisy_run):
    method = noisy_run["method"]
    val = noisy_run["val"]
    images = torch.from_numpy(val.img_pooled[:7])
    texts = torch.from_numpy(val.txt_pooled[:9])
    with torch.no_grad():
        ensemble = method.encode_images(images) @ method.encode_texts(texts).t()
        single = [method.image_adapters[n](images) @ method.text_adapters[n](texts).t()
                  for n in range(2)]
    torch.testing.assert_close(ensemble, (single[0] + single[1]) / 2, atol=1e-6, rtol=0)
    assert method.evaluate_split(val)["rsum"] > 0


# ------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "data", n_images=80, seed=0)


def test_adapter_mode_trains_from_a_features_folder_alone(synthetic, tmp_path):
    features = tmp_path / "features"
    assert cli_main(["encode", "--model", MODEL, "--data-root", str(synthetic), "--output",
                     str(features), "--splits", "train,val,test", "--quiet"]) == 0
    run = tmp_path / "run"
    assert cli_main(["train", "--method", "pcsr", "--data-root", str(features),
                     "--noise-ratio", "0.4", "--epochs", "3", "--batch-size", "32",
                     "--lr-new", "1e-3", "--output", str(run), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["run"]["noise_ratio"] == 0.4 and config["run"]["format"] == "features"
    history = json.loads((run / "history.json").read_text())["history"]
    assert "pcsr_A_clean_precision" in history[-1]
    out = tmp_path / "metrics.json"
    assert cli_main(["evaluate", "--run", str(run), "--data-root", str(features), "--json",
                     str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["rsum"] > 0
    with pytest.raises(SystemExit, match="--noise-ratio"):
        cli_main(["train", "--method", "pcsr", "--data-root", str(features), "--noise-file",
                  str(tmp_path / "noise.npy"), "--output", str(tmp_path / "x"), "--quiet"])
    assert load_features(features, split="train").clean_text_image_ids is None


def test_finetune_mode_from_the_command_line(synthetic, tmp_path):
    run = tmp_path / "run"
    assert cli_main(["train", "--method", "pcsr", "--model", MODEL, "--data-root",
                     str(synthetic), "--noise-ratio", "0.4", "--epochs", "2", "--batch-size",
                     "32", "--method-config", '{"n_pseudo_classes": 16}', "--no-augment",
                     "--output", str(run), "--quiet"]) == 0
    method = load_run(run)
    # Two networks, each with its own towers: the towers take the backbone rate.
    groups = method.parameter_groups(1e-5, 2e-4, 0.1)
    backbone = sum(p.numel() for g in groups if g["name"].startswith("backbone")
                   for p in g["params"])
    towers = sum(p.numel() for b in (method.backbone, method.backbone_b)
                 for p in b.parameters())
    assert backbone == towers
    assert method.encode_texts(method.backbone.tokenizer(["a red circle"])).shape == (1, 128)
    history = json.loads((run / "history.json").read_text())["history"]
    assert history[1]["pcsr_stage"] == 1 and 0 < history[1]["pcsr_A_clean"] <= 320
    checkpoint = torch.load(run / LAST_CHECKPOINT, weights_only=True)
    assert checkpoint["method"]["_extra_state"]["votes_A"].shape == (320, 16)  # 64 training images
    assert cli_main(["evaluate", "--run", str(run), "--data-root", str(synthetic),
                     "--quiet"]) == 0


DDP_PCSR_SCRIPT = """
import sys, torch
from retrieval.data import load_split, shuffle_captions
from retrieval.training import TrainConfig, Trainer, build_method
root, out = sys.argv[1], sys.argv[2]
train = load_split(root, "train").subset(48)
train = train.with_noise(shuffle_captions(train.text_image_ids, 0.4, seed=0))
torch.manual_seed(0)
method = build_method("pcsr", "tiny-vit-64", method_config={"n_pseudo_classes": 8})
config = TrainConfig(epochs=3, batch_size=16, lr_backbone=1e-4, lr_new=1e-3, augment=False,
                     verbose=False, warmup_fraction=0.0, eval_batch_size=20)
Trainer(method, config, out).fit(train, None)
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_split_is_made_once_and_shared_under_two_gloo_processes(synthetic,
                                                                one_and_two_processes):
    """The per-pair pass is sharded and gathered; the main process fits the mixtures and
    broadcasts them: two processes split and train as one does."""
    folders = one_and_two_processes(DDP_PCSR_SCRIPT, str(synthetic))
    one, two = (torch.load(folder / LAST_CHECKPOINT, weights_only=True) for folder in folders)
    for key in ("votes_A", "votes_B", "subsets_A", "subsets_B"):
        torch.testing.assert_close(two["method"]["_extra_state"][key],
                                   one["method"]["_extra_state"][key])
    history_one, history_two = (json.loads(h["history"]) for h in (one, two))
    for a, b in zip(history_one, history_two):
        assert b.get("pcsr_A_clean") == a.get("pcsr_A_clean")
        assert b.get("pcsr_B_refinable") == a.get("pcsr_B_refinable")
        if a.get("train_refined_match_A", 0.0) == 0.0 and a.get("train_robust_A", 0.0) == 0.0:
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        # Once a subset loss acts (refinable or ambiguous pairs), each process averages it
        # over its own share of the batch, as DDP does with every loss: with unequal subset
        # counts in the two shares that mean differs from the one-process mean (0.8 % on the
        # refined-match term here), so only the shared split decisions are compared then.


def test_weighted_info_nce_and_the_infonce_match_option():
    from retrieval.losses import info_nce
    from retrieval.methods.pcsr import weighted_info_nce

    torch.manual_seed(0)
    scores = torch.randn(6, 6)
    ids = torch.tensor([0, 0, 1, 2, 3, 4])
    same = ids[:, None] == ids[None, :]
    # Unit weights: the usual InfoNCE with same-image masking.
    torch.testing.assert_close(weighted_info_nce(scores, torch.ones(6), same, 0.1),
                               info_nce(scores, ids, temperature=0.1))
    # Zero weight removes a pair; all zero gives 0.
    weights = torch.tensor([1.0, 1, 1, 1, 1, 0])
    assert weighted_info_nce(scores, torch.zeros(6), same, 0.1) == 0
    assert weighted_info_nce(scores, weights, same, 0.1) != weighted_info_nce(
        scores, torch.ones(6), same, 0.1)
    method = adapters(match_loss="infonce")
    assert method.get_config()["match_loss"] == "infonce"
    with pytest.raises(ValueError, match="match_loss"):
        adapters(match_loss="l2")
    train = planted_features(60, 2, "train", noise=0.4)
    method._reset_pair_state(train.n_captions)
    method.phase_now = ("cotrain", 3)
    codes = torch.full((train.n_captions,), CLEAN, dtype=torch.int8)
    codes[40:52], codes[52:64] = REFINABLE, AMBIGUOUS
    for n in range(2):
        method.subsets[n] = codes
    batch = {"image": torch.from_numpy(train.img_pooled[train.txt_img[:64]]),
             "text": torch.from_numpy(train.txt_pooled[:64]),
             "image_index": torch.from_numpy(train.txt_img[:64]),
             "caption_index": torch.arange(64)}
    losses = method.training_step(batch, lambda t: t)
    assert torch.isfinite(losses["loss"]) and float(losses["clean_match_A"]) > 0
    assert float(losses["refined_match_A"]) >= 0


def test_bad_settings_are_clear_errors():
    for config, message in (({"inference": "C"}, "inference"), ({"gce_q": 0.0}, "gce_q"),
                            ({"warmup_temperature": 0.0}, "warmup_temperature"),
                            ({"n_pseudo_classes": 1}, "n_pseudo_classes"),
                            ({"split_batch_size": 1}, "split_batch_size"),
                            ({"warmup_fraction": 1.0}, "warmup_fraction"),
                            ({"stage_fractions": [0.9, 0.5]}, "stage_fractions")):
        with pytest.raises(ValueError, match=message):
            adapters(**config)
    with pytest.raises(ValueError, match="inference"):
        build_method("pcsr", MODEL, method_config={"inference": "C"})


# ------------------------------------------------------------------------------------ co-teaching
def test_two_networks_are_two_learners_after_the_warm_up(synthetic, tmp_path):
    """Co-divide needs two learners: after the warm-up the networks' weights differ, and the
    splits they make for each other differ; the ensemble is still the mean of both scores."""
    train = load_split(synthetic, "train").subset(32)
    train = train.with_noise(shuffle_captions(train.text_image_ids, 0.4, seed=0))
    config = dict(n_pseudo_classes=8, classifier_hidden=16)

    def run(stop):
        torch.manual_seed(0)
        method = build_method("pcsr", MODEL, method_config=config)
        Trainer(method, small_config(2, batch_size=16, lr_backbone=1e-4, warmup_fraction=0.0),
                tmp_path / "run").fit(train, None, stop_after_epoch=stop)
        return method

    warm = run(1)
    # Own seeds: the heads differ from the start; own batches and the pseudo-class loss in
    # the warm-up: the towers (one pretrained CLIP, copied) part during the warm-up.
    for a, b in zip(warm.classifiers[0].parameters(), warm.classifiers[1].parameters()):
        assert not torch.equal(a, b)
    gap = max(float((a - b).detach().abs().max())
              for a, b in zip(warm.backbone.parameters(), warm.backbone_b.parameters()))
    assert gap > 1e-4
    assert warm.network_seed == build_method("pcsr", MODEL, method_config={
        **config, "network_seed": warm.network_seed}).network_seed
    # Network B saw its pairs in batches of its own: its warm-up votes fell elsewhere.
    assert not torch.equal(warm.vote_counts[0], warm.vote_counts[1])
    done = run(None)
    # The first co-training epoch trained each network on the other's split: different.
    assert not torch.equal(done.soft_labels[0], done.soft_labels[1])
    images = torch.rand(3, 3, 64, 64)
    tokens = done.backbone.tokenizer(["a red circle", "two blue squares"])
    with torch.no_grad():
        ensemble = done.encode_images(images) @ done.encode_texts(tokens).t()
        single = [torch.nn.functional.normalize(b.encode_image(images), dim=-1)
                  @ torch.nn.functional.normalize(b.encode_text(tokens), dim=-1).t()
                  for b in (done.backbone, done.backbone_b)]
    torch.testing.assert_close(ensemble, (single[0] + single[1]) / 2, atol=1e-5, rtol=0)
    assert not torch.allclose(single[0], single[1], atol=1e-5)


def test_each_network_draws_its_own_batches():
    pairs = [{"image_index": i, "caption_index": i} for i in range(50)]
    stream = TwoStreamPairs(pairs, seed=3, epoch=0)
    items = [stream[i] for i in range(50)]
    b_pairs = [item["caption_index_b"] for item in items]
    assert sorted(b_pairs) == list(range(50)) and b_pairs != list(range(50))
    assert [item["caption_index"] for item in items] == list(range(50))
    # A new order every epoch, the same for the same seed and epoch.
    assert TwoStreamPairs(pairs, seed=3, epoch=1).order.tolist() != stream.order.tolist()
    assert TwoStreamPairs(pairs, seed=3, epoch=0).order.tolist() == stream.order.tolist()
    batch = torch.utils.data.default_collate(items[:4])
    assert network_stream(batch, 1)["caption_index"].tolist() == b_pairs[:4]
    assert network_stream(batch, 0) is batch


def test_training_steps_never_wait_for_the_device(host_syncs):
    """Warm-up and every co-training stage run without reading the device back: the per-pair
    tables are indexed on the device and the subset losses are masked, not selected."""
    train = planted_features(60, 2, "train", noise=0.4)
    batch = {"image": torch.from_numpy(train.img_pooled[train.txt_img[:64]]),
             "text": torch.from_numpy(train.txt_pooled[:64]),
             "image_index": torch.from_numpy(train.txt_img[:64]),
             "caption_index": torch.arange(64)}
    codes = torch.full((train.n_captions,), CLEAN, dtype=torch.int8)
    codes[40:52], codes[52:64] = REFINABLE, AMBIGUOUS
    for match_loss in ("infonce", "hinge"):
        method = adapters(match_loss=match_loss)
        method._reset_pair_state(train.n_captions)
        for phase in (("warmup", 0), ("cotrain", 1), ("cotrain", 2), ("cotrain", 3)):
            method.phase_now = phase
            if phase[0] == "cotrain":
                for n in range(2):
                    method.subsets[n] = codes
                    method.soft_labels[n] = torch.linspace(0, 1, train.n_captions)
            with host_syncs() as calls:
                losses = method.training_step(batch, lambda t: t)
                losses["loss"].backward()
            assert calls == [], (match_loss, phase, calls)
            assert torch.isfinite(losses["loss"])
