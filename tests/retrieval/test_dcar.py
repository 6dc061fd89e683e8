"""DCAR and fine-grained evaluation: the caption rewriter, swapped-twin accuracy, the FDRD
reader, prompted towers and token weights, the losses, and the command line (spec 5.4, 7)."""

import json
import shutil

import numpy as np
import pytest
import torch

from retrieval.cli import main as cli_main
from retrieval.data import load_fdrd, load_split, make_synthetic, shipped_file
from retrieval.fine_grained import (split_twins, twin_accuracy, twin_direction_accuracy,
                                    twin_image_pairs, twin_scores_accuracy)
from retrieval.methods.dcar import HardNegativePairDataset
from retrieval.rewriting import CaptionRewriter, twins_from_objects
from retrieval.training import TrainConfig, Trainer, build_method, load_run

MODEL = "tiny-vit-64"


# ------------------------------------------------------------------------------------ rewriter
def test_rewriter_swaps_one_word_and_flags_captions_without_one():
    rewriter = CaptionRewriter()
    caption = "A young man rides a red bicycle past a wooden bench."
    for seed in range(10):
        swapped = rewriter.swap(caption, "attribute", rng=seed)
        changed = [(a, b) for a, b in zip(caption.split(), swapped.split()) if a != b]
        assert len(changed) == 1 and len(swapped.split()) == len(caption.split())
        assert changed[0][0].strip(".") in ("young", "red", "wooden")
        category = rewriter.swap(caption, "category", rng=seed)
        before, after = [(a, b) for a, b in zip(caption.split(), category.split()) if a != b][0]
        # Another noun of the same domain: a person stays a person, a vehicle a vehicle.
        domain = {"man": "person", "bicycle": "vehicle", "bench": "furniture"}[before.strip(".")]
        from retrieval.rewriting import CATEGORY_DOMAINS
        assert after.strip(".") in CATEGORY_DOMAINS[domain]
    assert rewriter.swap("Dogs play in the park.", "category", rng=0).split()[0] != "Dogs"
    assert rewriter.swap("Dogs play in the park.", "category", rng=0)[0].isupper()
    # Nothing to swap: left alone, flagged with None / no twins.
    assert rewriter.swap("Something happens somewhere.", "attribute") is None
    assert rewriter.twins("Something happens somewhere.", {"attribute": 2, "category": 2}) == {
        "attribute": [], "category": []}
    assert not rewriter.swappable("A scene.", "category")
    twins = rewriter.twins(caption, {"attribute": 2, "category": 2}, rng=0)
    assert len(twins["attribute"]) == 2 and len(set(twins["attribute"])) == 2
    assert caption not in twins["attribute"] + twins["category"]
    with pytest.raises(ValueError, match="kind"):
        rewriter.swap(caption, "colour")


def test_twins_from_objects_change_exactly_one_attribute_or_shape():
    objects = [{"shape": "circle", "colour": "red", "size": "small", "position": "top left",
                "row": 0, "col": 0},
               {"shape": "star", "colour": "blue", "size": "large", "position": "center",
                "row": 1, "col": 1}]
    from retrieval.data import describe_objects
    positive = describe_objects(objects)
    twins = twins_from_objects(objects, {"attribute": 2, "category": 2}, rng=0)
    for kind, words in (("attribute", {"red", "blue"}), ("category", {"circle", "star"})):
        assert len(twins[kind]) == 2
        for twin in twins[kind]:
            differing = [(a, b) for a, b in zip(positive.split(), twin.split()) if a != b]
            assert len(differing) == 1 and differing[0][0].strip(".,") in words


# ------------------------------------------------------------------------------------ twin accuracy
def test_twin_accuracy_against_a_hand_computed_case():
    positives = np.array([0.9, 0.5, 0.7, 0.3])
    twins = [np.array([0.1, 0.8]),        # beats both: success, 2 wins
             np.array([0.5, 0.2]),        # tie with one: failure (ties fail), 1 win
             np.array([0.8]),             # loses: failure, 0 wins
             np.array([])]                # no twins: not counted
    accuracy, win_rate, images = twin_scores_accuracy(positives, twins)
    assert images == 3
    assert accuracy == pytest.approx(100 / 3)
    assert win_rate == pytest.approx(100 * 3 / 5)
    assert np.isnan(twin_scores_accuracy(np.array([0.1]), [np.array([])])[0])


def test_twin_directions_and_group_on_a_hand_made_case():
    """Winoground-style scores: image to text, text to image, both for the same image."""
    positives = np.array([0.9, 0.6, 0.5, 0.4])
    captions = [np.array([0.2]),           # image 0 prefers its caption: i2t right
                np.array([0.7]),           # image 1 prefers the twin caption: i2t wrong
                np.array([0.1, 0.3]),      # i2t right
                np.array([])]              # no caption twins: i2t not counted
    images = [np.array([0.95]),            # caption 0 prefers a twin image: t2i wrong
              np.array([0.1, 0.2]),        # t2i right
              np.array([0.5]),             # tie: t2i wrong
              np.array([0.0])]             # t2i right
    result = twin_direction_accuracy(positives, captions, images)
    assert result["i2t"] == pytest.approx(200 / 3) and result["images_i2t"] == 3
    assert result["t2i"] == pytest.approx(50.0) and result["images_t2i"] == 4
    # Image 0: i2t only; image 1: t2i only; image 2: i2t only; image 3 has no caption twin.
    assert result["group"] == 0.0 and result["images_group"] == 3
    assert twin_direction_accuracy(positives[:1], captions[:1],
                                   [np.array([0.1])])["group"] == 100.0
    assert np.isnan(twin_direction_accuracy(positives[:1], captions[:1], [[]])["t2i"])
    with pytest.raises(ValueError, match="per image"):
        twin_direction_accuracy(positives, captions, images[:2])


def test_twin_images_differ_in_one_colour_or_one_shape():
    def thing(shape, colour, position="top left", size="small"):
        return {"shape": shape, "colour": colour, "position": position, "size": size}

    objects = [[thing("circle", "red"), thing("star", "blue", "center")],
               [thing("star", "blue", "center"), thing("circle", "green")],  # colour of one
               [thing("square", "red"), thing("star", "blue", "center")],    # shape of one
               [thing("square", "green"), thing("star", "blue", "center")],  # both: no twin of 0
               [thing("circle", "red", size="large"), thing("star", "blue", "center")],
               [thing("circle", "red"), thing("star", "blue", "center")]]    # same as 0
    pairs = twin_image_pairs(objects)
    assert pairs["attribute"][0] == [1] and pairs["attribute"][1] == [0, 5]
    assert pairs["category"][0] == [2] and pairs["category"][3] == [1]
    assert pairs["attribute"][2] == [3] and pairs["attribute"][4] == []


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "data", n_images=80, seed=0)


class _Oracle(torch.nn.Module):
    """Scores a caption 1 when it is the split's canonical description of the image."""

    def __init__(self, split):
        super().__init__()
        self.truth = split_twins(split).positives
        self.backbone = build_method("contrastive", MODEL).backbone

    def encode_images(self, images, indices=None):
        return torch.nn.functional.one_hot(indices, len(self.truth)).float()

    def encode_texts(self, ids):  # one-hot of the image it truly describes, else zeros
        texts = [self._decoded[tuple(row.tolist())] for row in ids]
        rows = [torch.nn.functional.one_hot(torch.tensor(self.truth.index(t)),
                                            len(self.truth)).float() if t in self.truth
                else torch.zeros(len(self.truth)) for t in texts]
        return torch.stack(rows)

    def score(self, images, texts):
        return images @ texts.t()


def test_twin_accuracy_of_a_perfect_and_a_blind_scorer(synthetic):
    test = load_split(synthetic, "test")
    twin_set = split_twins(test)
    assert len(twin_set.positives) == test.n_images
    assert all(len(t) == 2 for t in twin_set.twins["attribute"])
    # Seeded per image: a subset draws the same twins for the images it keeps.
    assert split_twins(test.subset(5)).twins["category"] == twin_set.twins["category"][:5]
    oracle = _Oracle(test)
    texts = twin_set.positives + [t for kind in twin_set.twins.values() for per in kind
                                  for t in per]
    oracle._decoded = {tuple(oracle.backbone.tokenize([t])[0].tolist()): t for t in texts}
    results = twin_accuracy(oracle, test)
    assert results["twin_acc_attribute"] == 100.0 and results["twin_acc_category"] == 100.0
    for kind in ("attribute", "category"):
        assert results[f"twin_i2t_{kind}"] == results[f"twin_acc_{kind}"]
        # Twin images of the split score 0 with a caption that is not theirs.
        counted = results[f"twin_images_t2i_{kind}"]
        assert counted == len([1 for found in twin_image_pairs(test.objects)[kind] if found])
        if counted:
            assert results[f"twin_t2i_{kind}"] == 100.0
            assert results[f"twin_group_{kind}"] == 100.0
    # A scorer blind to captions ties everywhere: ties fail.
    oracle.encode_texts = lambda ids: torch.ones(len(ids), len(oracle.truth))
    blind = twin_accuracy(oracle, test)
    assert blind["twin_acc_attribute"] == 0.0 and blind["twin_win_category"] == 0.0
    assert twin_accuracy(oracle, load_split(synthetic, "test").__class__(
        "x", test.image_paths, test.image_keys, test.captions, test.text_image_ids)) == {}


# ------------------------------------------------------------------------------------ FDRD
def test_fdrd_reader_on_the_shipped_files_with_stand_in_images(tmp_path, wheel_photos):
    source = shipped_file("fdrd/pets_test.json")
    data = json.loads(source.read_text())
    keys = list(data)[:3]
    small = tmp_path / "pets_test.json"
    small.write_text(json.dumps({k: data[k] for k in keys}))
    # The user's image folder, any layout: found by file name.
    nested = tmp_path / "images" / "oxford_pets" / "images"
    nested.mkdir(parents=True)
    for key, photo in zip(keys, wheel_photos):
        shutil.copy(photo, nested / f"{data[key]['file_name']}.jpg")
    split = load_split(small, "test", image_root=tmp_path / "images")
    assert split.n_images == 3 and split.captions == [data[k]["positive"] for k in keys]
    assert split.negatives == [data[k]["negative"] for k in keys]
    assert all(len(n) == 4 for n in split.negatives)
    assert split.image_keys == keys and split.image_paths[0].startswith(str(nested))
    twin_set = split_twins(split)
    assert twin_set.twins == {"category": split.negatives}
    # The full shipped files parse; missing images are counted and named.
    (tmp_path / "empty").mkdir()
    for name, count in (("flower", 2463), ("pets", 3669), ("plane", 3333)):
        with pytest.raises(FileNotFoundError, match=f"{count} of {count} FDRD images"):
            load_fdrd(shipped_file(f"fdrd/{name}_test.json"), tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="image-root"):
        load_fdrd(small, None)
    with pytest.raises(ValueError, match="no split 'train'"):
        load_fdrd(small, tmp_path / "images", split="train")
    # Evaluate a zero-shot tiny CLIP on it: R@K and the category twin accuracy.
    out = tmp_path / "metrics.json"
    assert cli_main(["evaluate", "--model", MODEL, "--data-root", str(small), "--image-root",
                     str(tmp_path / "images"), "--json", str(out), "--quiet"]) == 0
    metrics = json.loads(out.read_text())
    assert "twin_acc_category" in metrics and "twin_acc_attribute" not in metrics
    assert metrics["twin_images_category"] == 3


# ------------------------------------------------------------------------------------ DCAR
@pytest.fixture(scope="module")
def fine_tuned_clip(synthetic, tmp_path_factory):
    """DCAR starts from a CLIP, as on real data (a tiny contrastive run here)."""
    run = tmp_path_factory.mktemp("clip") / "run"
    torch.manual_seed(0)
    method = build_method("contrastive", MODEL)
    config = TrainConfig(epochs=2, batch_size=32, lr_backbone=5e-4, lr_new=5e-4,
                         augment=False, verbose=False)
    Trainer(method, config, run).fit(load_split(synthetic, "train"), load_split(synthetic,
                                                                               "val"))
    return run


def test_prompted_towers_token_weights_and_frozen_clip(fine_tuned_clip, synthetic):
    torch.manual_seed(0)
    method = build_method("dcar", MODEL, fine_tuned_clip)
    assert not any(p.requires_grad for p in method.backbone.parameters())
    trainable = {name.split(".")[0] for name, p in method.named_parameters() if p.requires_grad}
    assert trainable == {"text_prompts", "coupling", "adapter"}
    assert method.layers == 2 and method.text_prompts.shape == (2, 2, 64)
    ids = method.backbone.tokenize(["a small red circle in the center",
                                    "two large blue stars"])
    images = torch.randn(2, 3, 64, 64)
    weights = method.token_weights(ids, method.encode_images(images))
    assert weights.shape == ids.shape and torch.isfinite(weights).all()
    eot = ids.argmax(dim=-1)
    for row in range(2):
        words = weights[row, 1:eot[row]]
        assert (words <= 3.0 + 1e-6).all() and (words >= 0).all()
        # Normalised by the caption's mean change, then capped: the mean is at most 1,
        # exactly 1 when nothing was capped.
        assert float(words.mean()) <= 1.0 + 1e-5
        assert float(words.mean()) == pytest.approx(1.0, abs=1e-5) or (words == 3.0).any()
        assert (weights[row, eot[row]:] == 1).all() and weights[row, 0] == 1
    # Prompts change the towers' output; the adapter starts as the identity.
    plain = torch.nn.functional.normalize(method.backbone.encode_image(images), dim=-1)
    assert not torch.allclose(method.encode_images(images), plain)
    pooled, tokens, _ = method.prompted_text(ids)
    assert tokens.shape == (2, ids.shape[1], 64)
    torch.testing.assert_close(method.adapter(torch.nn.functional.normalize(pooled, dim=-1)),
                               torch.nn.functional.normalize(pooled, dim=-1))
    # A caption filling the context keeps its end token after the prompts take their place.
    long = method.backbone.tokenize([" ".join(["red"] * 60)])
    assert method._fit_context(long)[0].argmax() == long.shape[1] - 1 - method.n_prompts


def test_hard_negative_items_and_flags(synthetic):
    train = load_split(synthetic, "train")
    tokenizer = build_method("contrastive", MODEL).backbone.tokenizer
    dataset = HardNegativePairDataset(train, None, tokenizer, k_attribute=2, k_category=2)
    item = dataset[3]
    assert item["cate_text"].shape[0] == 5 and bool(item["cate_valid"].all())
    assert item["cate_same_category"].tolist() == [True, True, True, False, False]
    assert dataset.candidates(3) == dataset.candidates(3)  # seeded
    # Other epochs draw other twins (the true caption stays).
    other_epochs = [HardNegativePairDataset(train, None, tokenizer, epoch=e).candidates(3)
                    for e in range(1, 6)]
    assert all(texts[0] == dataset.candidates(3)[0][0] for texts, _ in other_epochs)
    assert any(texts != dataset.candidates(3)[0] for texts, _ in other_epochs)
    # Real captions: the lexicon; captions with nothing to swap are flagged, no twins.
    plain = train.__class__("t", train.image_paths, train.image_keys,
                            ["Something happens."] + train.captions[1:], train.text_image_ids)
    rewritten = HardNegativePairDataset(plain, None, tokenizer)
    assert rewritten.flagged["attribute"] >= 1
    assert rewritten[0]["cate_valid"].tolist() == [True, False, False, False, False]


def test_a_few_steps_lower_both_losses_and_the_run_reloads(fine_tuned_clip, synthetic,
                                                          tmp_path):
    train = load_split(synthetic, "train")
    tokenizer = build_method("contrastive", MODEL).backbone.tokenizer
    torch.manual_seed(0)
    method = build_method("dcar", MODEL, fine_tuned_clip)
    dataset = HardNegativePairDataset(train, method.backbone.preprocess, tokenizer)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(0, 160, 5)])
    optimiser = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=5e-3)
    history = []
    for _ in range(15):
        losses = method.training_step(batch, lambda t: t)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    assert history[-1]["contrastive"] < history[0]["contrastive"]
    assert history[-1]["category"] < history[0]["category"]
    assert method.mean_training_image() is not None
    # Command line: train from the contrastive run, evaluate with twin accuracy.
    run = tmp_path / "run"
    assert cli_main(["train", "--method", "dcar", "--model", MODEL, "--pretrained",
                     str(fine_tuned_clip), "--data-root", str(synthetic), "--epochs", "1",
                     "--batch-size", "32", "--no-augment", "--output", str(run),
                     "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr_new"] == 2e-3  # the method's default
    reloaded = load_run(run)
    assert float(reloaded.image_count) > 0
    out = tmp_path / "metrics.json"
    assert cli_main(["evaluate", "--run", str(run), "--data-root", str(synthetic), "--json",
                     str(out), "--quiet"]) == 0
    metrics = json.loads(out.read_text())
    assert {"twin_acc_attribute", "twin_acc_category", "rsum"} <= set(metrics)


def test_bad_settings_are_clear_errors():
    for config, message in (({"token_weighting": "static"}, "token_weighting"),
                            ({"test_token_weights": "pairs"}, "test_token_weights"),
                            ({"k_short": 0}, "k_short"),
                            ({"n_prompts": 0}, "n_prompts"), ({"prompt_depth": 0}, "prompt_depth"),
                            ({"temperature": -1.0}, "temperature")):
        with pytest.raises(ValueError, match=message):
            build_method("dcar", MODEL, method_config=config)


def _spy_on_weights(method):
    """Record the token weights of every weighted pass through the prompted text tower."""
    calls = []
    original = method.prompted_text

    def spy(token_ids, token_weights=None):
        if token_weights is not None:
            calls.append((token_ids.clone(), token_weights.detach().clone()))
        return original(token_ids, token_weights)

    method.prompted_text = spy
    return calls


@pytest.mark.parametrize("weighting,rule", [("dynamic", "mean"), ("frozen", "mean"),
                                            ("dynamic", "rerank")])
def test_training_and_test_weights_agree_on_the_same_pair(fine_tuned_clip, synthetic,
                                                          weighting, rule):
    """One weighting rule: a caption meets in training the weights it meets at test."""
    train = load_split(synthetic, "train")
    torch.manual_seed(0)
    method = build_method("dcar", MODEL, fine_tuned_clip, method_config={
        "token_weighting": weighting, "test_token_weights": rule})
    dataset = HardNegativePairDataset(train, method.backbone.preprocess,
                                      method.backbone.tokenizer)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(0, 30, 5)])
    method.train()
    calls = _spy_on_weights(method)
    method.training_step(batch, lambda t: t)
    ids, trained = calls[0]  # the contrastive pass comes first
    method.eval()
    calls.clear()
    with torch.no_grad():
        if rule == "mean":
            method.encode_texts(batch["text"])
            torch.testing.assert_close(calls[0][0], ids)
            torch.testing.assert_close(calls[0][1], trained)
        else:
            # Pair (caption 2, image 4): row 2 * 6 + 4 of the training pass, and the pair
            # rule of the test-time re-ranking.
            image = batch["image"][4:5]
            method.pair_scores(method.encode_images(image), method.weighting_images(image),
                               batch["text"][2:3])
            torch.testing.assert_close(ids[2 * 6 + 4], batch["text"][2])
            torch.testing.assert_close(calls[0][1][0], trained[2 * 6 + 4])
            # The weights do depend on the image under this rule.
            assert not torch.allclose(trained[2 * 6 + 4], trained[2 * 6 + 3])
    assert not torch.allclose(trained, torch.ones_like(trained))


def test_frozen_weights_ignore_the_prompts_and_rerank_evaluates(fine_tuned_clip, synthetic):
    torch.manual_seed(0)
    frozen = build_method("dcar", MODEL, fine_tuned_clip, method_config={
        "token_weighting": "frozen", "test_token_weights": "rerank", "k_short": 5})
    ids = frozen.backbone.tokenize(["a small red circle in the center", "two large blue stars"])
    images = torch.randn(2, 3, 64, 64)
    before = frozen.token_weights(ids, frozen.weighting_images(images))
    with torch.no_grad():
        frozen.text_prompts.add_(torch.randn_like(frozen.text_prompts))
        for coupling in frozen.coupling:
            coupling.weight.add_(torch.randn_like(coupling.weight))
    torch.testing.assert_close(frozen.token_weights(ids, frozen.weighting_images(images)),
                               before)
    # Re-ranked evaluation: a short list from the mean-image embeddings, scored pair by pair.
    frozen.image_sum += frozen.weighting_images(images).double().sum(0)
    frozen.image_count += 2
    val = load_split(synthetic, "val")
    metrics = frozen.evaluate_split(val, verbose=False)
    assert 0 <= metrics["rsum"] <= 600 and np.isfinite(metrics["rsum"])
    with pytest.raises(ValueError, match="full gallery"):
        frozen.evaluate_split(val, verbose=False, protocol="1k-folds")
