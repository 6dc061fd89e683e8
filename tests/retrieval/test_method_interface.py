"""The method interface the trainer offers every method: own training items and collation,
epoch hooks with a pass over the training set, data-sized state in checkpoints, the method's
own evaluation (validation, selection, ``evaluate`` and its protocols), per-image indices at
encoding, and starting from a finished run's backbone."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from retrieval.cli import main as cli_main
from retrieval.data import load_split, make_synthetic
from retrieval.methods import METHODS, RetrievalMethod
from retrieval.methods.base import EpochContext
from retrieval.training import (BEST_WEIGHTS, LAST_CHECKPOINT, TrainConfig, Trainer,
                                build_method, evaluate_split, load_run)

MODEL = "tiny-vit-64"


class ImageItems(torch.utils.data.Dataset):
    """One item per image with its dense caption (what D2S stage 1 trains on)."""

    def __init__(self, split, transform, tokenizer):
        from retrieval.data.torch_datasets import ImageDataset

        self.images = ImageDataset(split.image_paths, transform)
        self.texts = split.dense_captions
        self.tokenizer = tokenizer

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        item = self.images[index]
        return {"image": item["image"], "text": self.tokenizer([self.texts[index]])[0],
                "image_index": index, "note": f"image {index}"}


class _DenseProbe(RetrievalMethod):
    """A test method exercising every hook; it keeps a bank of per-image features."""

    name = "_dense_probe"
    uses_dense_captions = True

    def __init__(self, backbone):
        super().__init__(backbone)
        self.bank = torch.zeros(0, backbone.embed_dim)
        self.calls = []
        self.batch_sizes = []
        self.notes = []
        self.encoded_indices = []

    def get_extra_state(self):
        return {"bank": self.bank}

    def set_extra_state(self, state):
        self.bank = state["bank"]

    def training_dataset(self, split, transform, tokenizer, *, epoch=0, epochs=1):
        if split.dense_captions is None:
            raise ValueError("_dense_probe needs dense captions")
        return ImageItems(split, transform, tokenizer)

    def collate(self, items):
        notes = [item.pop("note") for item in items]
        batch = torch.utils.data.default_collate(items)
        batch["note"] = notes
        return batch

    def on_epoch_start(self, epoch, context=None):
        assert isinstance(context, EpochContext) and context.epoch == epoch
        # A pass over every training item, as PCSR's split and D2S's teacher cache need.
        features = []
        with torch.no_grad(), context.autocast():
            for batch in context.make_loader():
                features.append(F.normalize(self.backbone.encode_image(
                    batch["image"].to(context.device)), dim=-1).float().cpu())
        self.bank = torch.cat(features)
        self.calls.append(("start", epoch, len(self.bank)))

    def on_epoch_end(self, epoch, context=None):
        self.calls.append(("end", epoch, context.train_split.n_images))

    def training_step(self, batch, gather, epoch=0):
        self.batch_sizes.append(len(batch["image"]))
        self.notes.extend(batch["note"])
        images = self.encode_images(batch["image"])
        texts = self.encode_texts(batch["text"])
        scores = images @ texts.t() / 0.05
        target = torch.arange(len(scores))
        return {"loss": F.cross_entropy(scores, target)}

    def encode_images(self, images, indices=None):
        if indices is not None:
            self.encoded_indices.append(indices.cpu())
        return super().encode_images(images, indices)

    def evaluate_split(self, split, **kwargs):
        self.calls.append(("evaluate", kwargs.get("protocol")))
        return super().evaluate_split(split, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def registered_probe():
    # Registered only while these tests run, so other tests see the real method list.
    METHODS[_DenseProbe.name] = _DenseProbe
    yield
    METHODS.pop(_DenseProbe.name, None)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, n_images=120, seed=0)
    return root


def config(**kw):
    base = dict(epochs=2, batch_size=16, lr_backbone=5e-4, lr_new=5e-4, seed=0, augment=False,
                verbose=False, eval_batch_size=32)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def probe_run(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "run"
    torch.manual_seed(0)
    method = build_method("_dense_probe", MODEL)
    train = load_split(synthetic, "train")
    Trainer(method, config(), out).fit(train, load_split(synthetic, "val"))
    return method, train, out


def test_method_items_collation_and_hooks_reach_training(probe_run):
    method, train, _ = probe_run
    n_images = train.n_images
    # One item per image (not per caption), in batches of 16, with the custom collation's
    # non-tensor field intact.
    assert sum(method.batch_sizes) == 2 * (n_images // 16) * 16
    assert set(method.batch_sizes) == {16}
    assert all(note.startswith("image ") for note in method.notes)
    starts = [c for c in method.calls if c[0] == "start"]
    ends = [c for c in method.calls if c[0] == "end"]
    assert [c[1] for c in starts] == [0, 1] and [c[1] for c in ends] == [0, 1]
    # The epoch-start pass saw every training image once.
    assert all(c[2] == n_images for c in starts)
    # Validation (and so selection) went through the method's own evaluation, once per epoch.
    assert [c for c in method.calls if c[0] == "evaluate"] == [("evaluate", "full")] * 2


def test_data_sized_state_saved_and_restored(probe_run):
    method, train, out = probe_run
    banks = {}
    for which, name in (("best", BEST_WEIGHTS), ("last", LAST_CHECKPOINT)):
        stored = torch.load(out / name, weights_only=True)
        banks[which] = stored.get("method", stored)["_extra_state"]["bank"]
        assert banks[which].shape == (train.n_images, 64)
        torch.testing.assert_close(load_run(out, which=which).bank, banks[which])
    # After fit the method holds the validation-selected state, its bank included.
    torch.testing.assert_close(method.bank, banks["best"])


def test_encode_passes_dataset_indices_independent_of_batching(probe_run, synthetic):
    _, _, out = probe_run
    method = load_run(out)
    test = load_split(synthetic, "test")
    for batch_size in (7, 64):
        method.encoded_indices.clear()
        evaluate_split(method, test, batch_size=batch_size, verbose=False)
        seen = torch.cat(method.encoded_indices).numpy()
        np.testing.assert_array_equal(seen, np.arange(test.n_images))


def test_folds_protocol_goes_through_the_method(probe_run, synthetic):
    _, _, out = probe_run
    method = load_run(out)
    test = load_split(synthetic, "test")
    metrics = evaluate_split(method, test, verbose=False, protocol="1k-folds", n_folds=2,
                             fold_size=test.n_images // 2)
    assert ("evaluate", "1k-folds") in method.calls and "folds" not in metrics
    assert 0 <= metrics["rsum"] <= 600
    with pytest.raises(ValueError, match="protocol"):
        evaluate_split(method, test, verbose=False, protocol="5k")


def test_cli_folds_protocol_is_not_ignored(probe_run, synthetic):
    _, _, out = probe_run
    # 12 test images cannot make five folds of 1,000: the protocol reached the metrics, and
    # the command line says so without a traceback.
    with pytest.raises(SystemExit, match="1k-folds.*5 folds of 1000 images"):
        cli_main(["evaluate", "--run", str(out), "--data-root", str(synthetic),
                  "--protocol", "1k-folds", "--quiet"])


def test_pretrained_run_folder_starts_from_its_backbone(probe_run):
    _, _, out = probe_run
    run_state = torch.load(out / BEST_WEIGHTS, weights_only=True)
    torch.manual_seed(123)
    method = build_method("contrastive", MODEL, out)
    for key, value in method.backbone.model.state_dict().items():
        torch.testing.assert_close(value, run_state["backbone.model." + key])
    assert method.backbone.pretrained.endswith(BEST_WEIGHTS)
    with pytest.raises(ValueError, match="trained model 'tiny-vit-64', not 'ViT-B-32'"):
        build_method("contrastive", "ViT-B-32", out)


def test_cli_train_from_run_and_dense_caption_rules(probe_run, synthetic, tmp_path, capsys):
    _, _, out = probe_run
    code = cli_main(["train", "--method", "contrastive", "--model", MODEL, "--pretrained",
                     str(out), "--data-root", str(synthetic), "--output", str(tmp_path / "ft"),
                     "--epochs", "1", "--batch-size", "16", "--quiet"])
    assert code == 0 and (tmp_path / "ft" / BEST_WEIGHTS).is_file()
    # A method that does not train on dense captions refuses them instead of ignoring them.
    with pytest.raises(SystemExit, match="does not train on dense captions"):
        cli_main(["train", "--method", "contrastive", "--model", MODEL, "--data-root",
                  str(synthetic), "--output", str(tmp_path / "x"), "--epochs", "1",
                  "--dense-captions", str(Path(synthetic) / "dense_captions.jsonl"), "--quiet"])



def test_methods_that_need_a_pretrained_start_say_so_in_the_run_log(caplog):
    from retrieval.runs import build_method

    # AVSE and PCSR train from random weights without an error, to a result far below the
    # contrastive fine-tune (issue 26): the run log must say what they need.
    for method, config, expected in (("avse", {}, "hinge loss collapses"),
                                     ("avse", {"match_loss": "infonce"}, "165.6"),
                                     ("pcsr", {}, "sorts noise")):
        caplog.clear()
        with caplog.at_level("WARNING", logger="retrieval"):
            build_method(method, "tiny-vit", None, method_config=config)
        assert expected in caplog.text and "--pretrained" in caplog.text, (method, caplog.text)
    caplog.clear()
    with caplog.at_level("WARNING", logger="retrieval"):
        build_method("contrastive", "tiny-vit", None)
        build_method("avse", "tiny-vit", None, warn_random=False)
    assert "random weights" not in caplog.text
