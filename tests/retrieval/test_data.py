"""Tests of retrieval.data: loaders, the synthetic set, noisy correspondence, torch datasets.

The miniature Karpathy files wrap real photos shipped inside installed wheels (sklearn's
``china.jpg`` / ``flower.jpg``, matplotlib's ``grace_hopper.jpg``); their captions are
written by these tests and say so. The published caption/id/noise files are read from the data
home (``retrieval.data.shipped_file``; ``../shared/data`` on development machines and CI).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from math import floor
from pathlib import Path

import numpy as np
import pytest

from retrieval.data import (
    FeatureSplit,
    RetrievalSplit,
    add_noise,
    describe_objects,
    load_caption_file,
    load_dense_captions,
    load_features,
    load_folder,
    load_karpathy,
    load_noise_file,
    load_split,
    make_synthetic,
    noisy_fraction,
    save_features,
    shipped_file,
    shuffle_captions,
    swap_caption,
    write_folder,
)
from retrieval.data.synthetic import COLOURS, SHAPES


def needs_shared(test):
    """Marks tests that read published files from the data home: their absence (not in the data
    home and no download) is a failure, not a skip."""
    return test


# ---------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------


def _sentences(tag: str, n: int = 5) -> list[dict]:
    # Padded with spaces to check that captions are stripped.
    return [{"raw": f"  Test caption {k} of {tag} (written by the mvlearn-plus tests). ", "tokens": []} for k in range(n)]


@pytest.fixture(scope="module")
def karpathy_root(tmp_path_factory, wheel_photos) -> Path:
    """A Flickr30K-style and a COCO-style Karpathy JSON over copies of real photos."""
    root = tmp_path_factory.mktemp("karpathy")
    photos = wheel_photos
    (root / "val2014").mkdir()
    flickr_splits = ["train", "test", "restval", "val", "test", "test"]
    images = []
    for i, split in enumerate(flickr_splits):
        name = f"photo{i}.jpg"
        shutil.copy(photos[i % 3], root / name)
        images.append({"filename": name, "imgid": i, "split": split, "sentences": _sentences(name, 6 if i == 1 else 5)})
    with open(root / "dataset_flickr30k.json", "w") as fh:
        json.dump({"dataset": "flickr30k", "images": images}, fh)

    coco_dir = root / "coco"
    (coco_dir / "val2014").mkdir(parents=True)
    coco = []
    for i, cocoid in enumerate([391895, 522418, 184613]):
        name = f"COCO_val2014_{cocoid:012d}.jpg"
        shutil.copy(photos[i], coco_dir / "val2014" / name)
        coco.append(
            {"filepath": "val2014", "filename": name, "imgid": i, "cocoid": cocoid, "split": "test",
             "sentences": _sentences(name)}  # fmt: skip
        )
    with open(coco_dir / "dataset_coco.json", "w") as fh:
        json.dump({"dataset": "coco", "images": coco}, fh)
    return root


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synthetic"), n_images=60, seed=3)


# ---------------------------------------------------------------------------------------
# RetrievalSplit
# ---------------------------------------------------------------------------------------


def _toy_split(n_images: int = 3, per_image: int = 2) -> RetrievalSplit:
    ids = np.repeat(np.arange(n_images), per_image)
    return RetrievalSplit(
        name="toy",
        image_paths=[f"/img/{i}.png" for i in range(n_images)],
        image_keys=[f"{i}.png" for i in range(n_images)],
        captions=[f"caption {c}" for c in range(len(ids))],
        text_image_ids=ids,
    )


def test_split_validation_errors():
    ok = _toy_split()
    assert ok.n_images == 3 and ok.n_captions == 6
    assert ok.image_captions == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="text_image_ids for 5 captions"):
        RetrievalSplit("x", ok.image_paths, ok.image_keys, ok.captions[:5], ok.text_image_ids)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        RetrievalSplit("x", ok.image_paths, ok.image_keys, ok.captions, ok.text_image_ids + 1)
    with pytest.raises(ValueError, match="no caption"):
        RetrievalSplit("x", ok.image_paths, ok.image_keys, ok.captions, np.array([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="image_keys"):
        RetrievalSplit("x", ok.image_paths, ok.image_keys[:2], ok.captions, ok.text_image_ids)
    with pytest.raises(ValueError, match="integers"):
        RetrievalSplit("x", ok.image_paths, ok.image_keys, ok.captions, ok.text_image_ids.astype(float))
    with pytest.raises(ValueError, match="dense_captions"):
        RetrievalSplit("x", ok.image_paths, ok.image_keys, ok.captions, ok.text_image_ids, dense_captions=["a"])


def test_split_with_noise_and_subset():
    split = _toy_split(4, 2)
    noisy = split.with_noise(np.array([1, 0, 2, 3, 0, 0, 3, 3]))
    assert noisy.is_noisy and not split.is_noisy
    np.testing.assert_array_equal(noisy.clean_text_image_ids, split.text_image_ids)
    # Ground truth per image stays clean.
    assert noisy.image_captions == split.image_captions
    twice = noisy.with_noise(split.text_image_ids)
    np.testing.assert_array_equal(twice.clean_text_image_ids, split.text_image_ids)

    sub = split.subset(2)
    assert sub.n_images == 2 and sub.captions == split.captions[:4]
    with pytest.raises(ValueError, match="dropped image"):
        split.with_noise(split.text_image_ids[::-1].copy()).subset(2)
    with pytest.raises(ValueError):
        split.subset(0)


# ---------------------------------------------------------------------------------------
# Karpathy JSON and shipped caption files
# ---------------------------------------------------------------------------------------


def test_karpathy_test_split_grouping(karpathy_root):
    split = load_karpathy(karpathy_root / "dataset_flickr30k.json", karpathy_root, split="test")
    assert split.image_keys == ["photo1.jpg", "photo4.jpg", "photo5.jpg"]
    assert split.n_captions == 15  # photo1 has 6 sentences, the first 5 are kept
    np.testing.assert_array_equal(split.text_image_ids, np.repeat(np.arange(3), 5))
    assert split.captions[0] == "Test caption 0 of photo1.jpg (written by the mvlearn-plus tests)."
    assert split.captions[4].startswith("Test caption 4 of photo1.jpg")
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in split.image_paths)
    assert split.image_captions[1] == [5, 6, 7, 8, 9]

    all_caps = load_karpathy(karpathy_root / "dataset_flickr30k.json", karpathy_root, captions_per_image=None)
    assert all_caps.n_captions == 16


def test_karpathy_train_includes_restval(karpathy_root):
    js = karpathy_root / "dataset_flickr30k.json"
    train = load_karpathy(js, karpathy_root, split="train")
    assert train.image_keys == ["photo0.jpg", "photo2.jpg"]
    assert load_karpathy(js, karpathy_root, split="val").image_keys == ["photo3.jpg"]
    with pytest.raises(ValueError, match="unknown split"):
        load_karpathy(js, karpathy_root, split="dev")


def test_karpathy_ids_file_reorders(karpathy_root, tmp_path):
    js = karpathy_root / "dataset_flickr30k.json"
    ids = tmp_path / "test_ids.txt"
    # One line per caption, as in the shipped test_ids.txt: imgid 5, 1, 4.
    ids.write_text("".join(f"{i}\n" * 5 for i in (5, 1, 4)))
    split = load_karpathy(js, karpathy_root, split="test", ids_file=ids)
    assert split.image_keys == ["photo5.jpg", "photo1.jpg", "photo4.jpg"]
    assert split.captions[5].startswith("Test caption 0 of photo1.jpg")
    np.testing.assert_array_equal(split.text_image_ids, np.repeat(np.arange(3), 5))

    bad = tmp_path / "bad_ids.txt"
    bad.write_text("5\n1\n")
    with pytest.raises(ValueError, match="lists 2 distinct images"):
        load_karpathy(js, karpathy_root, split="test", ids_file=bad)
    bad.write_text("5\n1\n0\n")
    with pytest.raises(ValueError, match="not imgid values"):
        load_karpathy(js, karpathy_root, split="test", ids_file=bad)


def test_karpathy_coco_filepath_and_cocoid(karpathy_root, tmp_path):
    coco = karpathy_root / "coco"
    ids = tmp_path / "testall_ids.txt"
    ids.write_text("184613\n391895\n522418\n")
    split = load_karpathy(coco / "dataset_coco.json", coco, split="test", ids_file=ids)
    assert split.image_keys[0] == "val2014/COCO_val2014_000000184613.jpg"
    assert all(Path(p).is_file() for p in split.image_paths)
    # Flattened image folders (no val2014/ level) are accepted too.
    flat = tmp_path / "flat"
    shutil.copytree(coco / "val2014", flat)
    assert load_karpathy(coco / "dataset_coco.json", flat).n_images == 3


def test_karpathy_missing_images_and_short_captions(karpathy_root, tmp_path):
    data = json.loads((karpathy_root / "dataset_flickr30k.json").read_text())
    data["images"][4]["filename"] = "does_not_exist.jpg"
    data["images"][5]["filename"] = "nor_this.jpg"
    js = tmp_path / "dataset_flickr30k.json"
    js.write_text(json.dumps(data))
    with pytest.raises(FileNotFoundError, match="2 of 3 images.*does_not_exist.jpg"):
        load_karpathy(js, karpathy_root)
    assert load_karpathy(js, karpathy_root, check_images=False).n_images == 3

    data["images"][1]["sentences"] = data["images"][1]["sentences"][:3]
    js.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="has 3 captions"):
        load_karpathy(js, karpathy_root, check_images=False)
    with pytest.raises(FileNotFoundError, match="Karpathy JSON not found"):
        load_karpathy(tmp_path / "nope.json", karpathy_root)


def test_load_split_detects_formats(karpathy_root, synthetic_root, tmp_path):
    split = load_split(karpathy_root, "test")
    assert isinstance(split, RetrievalSplit) and split.n_images == 3
    assert load_split(karpathy_root / "coco", "test").n_images == 3
    assert load_split(synthetic_root, "val").name == "val"
    (tmp_path / "stuff.txt").write_text("x")
    with pytest.raises(ValueError, match="no known data format.*stuff.txt"):
        load_split(tmp_path)
    with pytest.raises(FileNotFoundError, match="not_here"):
        load_split(tmp_path / "not_here")


@needs_shared
def test_shipped_caption_files():
    caps, ids, image_ids = load_caption_file(shipped_file("f30k/test_caps.txt"), shipped_file("f30k/test_ids.txt"))
    assert len(caps) == 5000 and len(image_ids) == 1000
    np.testing.assert_array_equal(ids, np.repeat(np.arange(1000), 5))
    assert image_ids[0] == 25
    caps, ids, image_ids = load_caption_file(
        shipped_file("coco/testall_caps.txt"), shipped_file("coco/testall_ids.txt")
    )
    assert len(caps) == 25000 and len(image_ids) == 5000 and image_ids[0] == 391895
    np.testing.assert_array_equal(ids, np.repeat(np.arange(5000), 5))


def test_caption_file_length_mismatch(tmp_path):
    (tmp_path / "caps.txt").write_text("a\nb\nc\n")
    (tmp_path / "ids.txt").write_text("1\n1\n")
    with pytest.raises(ValueError, match="3 captions but"):
        load_caption_file(tmp_path / "caps.txt", tmp_path / "ids.txt")


# ---------------------------------------------------------------------------------------
# folder format and dense captions
# ---------------------------------------------------------------------------------------


def test_folder_round_trip_with_synthetic(synthetic_root):
    splits = {s: load_folder(synthetic_root, split=s) for s in ("train", "val", "test")}
    assert [splits[s].n_images for s in ("train", "val", "test")] == [48, 6, 6]
    everything = load_folder(synthetic_root)
    assert everything.name == "all" and everything.n_images == 60 and everything.n_captions == 300
    for split in splits.values():
        assert split.n_captions == 5 * split.n_images
        assert all(len(c) == 5 for c in split.image_captions)
        assert all(Path(p).is_file() for p in split.image_paths)
        assert all(k.startswith(split.name + "/") for k in split.image_keys)
        assert len(split.dense_captions) == len(split.objects) == split.n_images
    from PIL import Image

    with Image.open(splits["test"].image_paths[0]) as img:
        assert img.size == (64, 64) and img.mode == "RGB"


def test_write_folder_and_errors(tmp_path):
    root = tmp_path / "f"
    (root / "images" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        (root / "images" / name).write_bytes(b"")
    write_folder(root, [("sub/b.png", "second image"), ("a.png", "first caption"), ("sub/b.png", "again b")],
                 dense_captions={"a.png": "dense a", "sub/b.png": "dense b"})  # fmt: skip
    split = load_folder(root)
    assert split.image_keys == ["sub/b.png", "a.png"]
    np.testing.assert_array_equal(split.text_image_ids, [0, 1, 0])
    assert split.dense_captions == ["dense b", "dense a"]
    with pytest.raises(ValueError, match="no split column"):
        load_folder(root, split="test")
    with pytest.raises(ValueError, match="tabs or newlines"):
        write_folder(root, [("a.png", "bad\tcaption")])

    (root / "captions.tsv").write_text("a.png\tx\ttest\tbonus\n")
    with pytest.raises(ValueError, match="captions.tsv:1"):
        load_folder(root)
    (root / "captions.tsv").write_text("missing.png\tx\ttest\n")
    (root / "dense_captions.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_folder(root, split="test")
    with pytest.raises(ValueError, match="splits present"):
        load_folder(root, split="val")
    with pytest.raises(FileNotFoundError, match="captions.tsv"):
        load_folder(tmp_path)


def test_dense_captions_keyed(synthetic_root):
    split = load_folder(synthetic_root, split="test")
    again = load_dense_captions(synthetic_root / "dense_captions.jsonl", split)
    assert again == split.dense_captions
    with pytest.raises(ValueError, match="keyed by image"):
        load_dense_captions(synthetic_root / "dense_captions.jsonl", 6)
    with pytest.raises(ValueError, match="no dense caption"):
        load_dense_captions(synthetic_root / "dense_captions.jsonl", ["nope.png"])


@needs_shared
def test_dense_captions_positional_published():
    path = shipped_file("f30k/f30k_test.jsonl")
    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    _, _, image_ids = load_caption_file(shipped_file("f30k/test_caps.txt"), shipped_file("f30k/test_ids.txt"))
    dense = load_dense_captions(path, len(image_ids))
    assert len(dense) == 1000
    assert "beer" in dense[0].lower()  # line 0 describes image id 25, the man with a beer hat
    with pytest.raises(ValueError, match="1000 lines for 999 images"):
        load_dense_captions(path, 999)


def test_dense_captions_positional_small(tmp_path):
    path = tmp_path / "dense.jsonl"
    lines = [{"text": f"dense {j}", "model_id": "m", "metadata": {"length": 7}} for j in range(3)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    split = _toy_split(3)
    assert load_dense_captions(path, split) == ["dense 0", "dense 1", "dense 2"]


# ---------------------------------------------------------------------------------------
# precomputed features
# ---------------------------------------------------------------------------------------


def _features(rng, n_img=4, n_txt=8, d=6):
    return (
        rng.standard_normal((n_img, d)).astype(np.float32),
        rng.standard_normal((n_txt, d)).astype(np.float32),
        np.repeat(np.arange(n_img), n_txt // n_img),
    )


def test_features_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    img, txt, ids = _features(rng)
    manifest = {"model": "tiny-test", "pretrained": None, "d": 6, "open_clip_version": "3.3.0"}
    tokens = rng.standard_normal((4, 3, 5)).astype(np.float32)
    save_features(tmp_path, "test", img, txt, ids, manifest, img_tokens=tokens,
                  txt_tokens=np.zeros((8, 2, 5)), txt_len=np.full(8, 2))  # fmt: skip
    img2, txt2, ids2 = _features(rng, 2, 4)
    save_features(tmp_path, "val", img2, txt2, ids2, {"model": "tiny-test", "command": "encode"})

    feats = load_features(tmp_path, "test", expected_model="tiny-test")
    assert isinstance(feats, FeatureSplit) and feats.n_images == 4 and feats.n_captions == 8
    np.testing.assert_array_equal(feats.img_pooled, img)
    np.testing.assert_array_equal(feats.txt_img, ids)
    assert feats.txt_img.dtype == np.int64
    assert isinstance(feats.img_tokens, np.memmap) and feats.img_tokens.dtype == np.float16
    np.testing.assert_allclose(feats.img_tokens, tokens, atol=1e-2)
    assert feats.dense_pooled is None
    manifest_back = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest_back["splits"]["test"]["n_captions"] == 8 and manifest_back["splits"]["val"]["n_images"] == 2
    assert manifest_back["command"] == "encode" and manifest_back["d"] == 6
    assert load_features(tmp_path, "val", mmap=False).n_images == 2
    assert isinstance(load_split(tmp_path, "val"), FeatureSplit)


def test_features_refusals(tmp_path):
    rng = np.random.default_rng(1)
    img, txt, ids = _features(rng)
    save_features(tmp_path, "test", img, txt, ids, {"model": "ViT-B-32"})
    with pytest.raises(ValueError, match="'ViT-B-32', not 'ViT-B-16'"):
        load_features(tmp_path, "test", expected_model="ViT-B-16")
    with pytest.raises(ValueError, match="refusing to add"):
        save_features(tmp_path, "val", img, txt, ids, {"model": "ViT-L-14"})
    with pytest.raises(ValueError, match="no split 'train'"):
        load_features(tmp_path, "train")
    with pytest.raises(ValueError, match="d=6 but txt_pooled has d=5"):
        save_features(tmp_path, "val", img, txt[:, :5], ids, {"model": "ViT-B-32"})
    with pytest.raises(ValueError, match="txt_img"):
        save_features(tmp_path, "val", img, txt, ids[:-1], {"model": "ViT-B-32"})
    with pytest.raises(ValueError, match="unknown optional array"):
        save_features(tmp_path, "val", img, txt, ids, {"model": "ViT-B-32"}, img_tokns=np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="'model'"):
        save_features(tmp_path / "other", "val", img, txt, ids, {})
    (tmp_path / "test" / "txt_pooled.npy").unlink()
    with pytest.raises(FileNotFoundError, match="txt_pooled.npy"):
        load_features(tmp_path, "test")


# ---------------------------------------------------------------------------------------
# synthetic set
# ---------------------------------------------------------------------------------------


def _word_map(vocab: dict) -> list[tuple[str, str]]:
    pairs = []
    for name, value in vocab.items():
        words = value[1] if isinstance(value[0], tuple) else value
        pairs += [(w, name) for w in words]
    return sorted(pairs, key=lambda p: -len(p[0]))  # longest first: "five-pointed star" before "star"


def _mentioned(caption: str, pairs: list[tuple[str, str]]) -> set[str]:
    found, text = set(), caption.lower()
    for word, name in pairs:
        pattern = r"\b" + re.escape(word) + r"\b"
        if re.search(pattern, text):
            found.add(name)
            text = re.sub(pattern, " ", text)
    return found


def test_synthetic_deterministic(tmp_path, synthetic_root):
    again = make_synthetic(tmp_path / "again", n_images=60, seed=3)
    for name in ("captions.tsv", "objects.jsonl", "dense_captions.jsonl"):
        assert (again / name).read_bytes() == (synthetic_root / name).read_bytes()
    split = load_folder(synthetic_root, "test")
    for key in split.image_keys[:3]:
        assert (again / "images" / key).read_bytes() == (synthetic_root / "images" / key).read_bytes()
    other = make_synthetic(tmp_path / "other", n_images=60, seed=4)
    assert (other / "captions.tsv").read_text() != (synthetic_root / "captions.tsv").read_text()
    assert (synthetic_root / "README.md").read_text().startswith("# Synthetic")
    meta = json.loads((synthetic_root / "metadata.json").read_text())
    assert meta["seed"] == 3 and meta["splits"] == {"train": 48, "val": 6, "test": 6}


def test_synthetic_captions_true_varied_and_dense(synthetic_root):
    split = load_folder(synthetic_root)
    colour_words, shape_words = _word_map(COLOURS), _word_map(SHAPES)
    for img, caps in enumerate(split.image_captions):
        objects = split.objects[img]
        assert 1 <= len(objects) <= 4
        texts = [split.captions[c] for c in caps]
        assert len(texts) == 5 and len(set(texts)) == 5
        colours = {o["colour"] for o in objects}
        shapes = {o["shape"] for o in objects}
        for text in texts:
            # Every caption is true: it names only colours and shapes present in the image.
            assert _mentioned(text, colour_words) <= colours, text
            assert _mentioned(text, shape_words) <= shapes, text
        dense = split.dense_captions[img]
        for o in objects:
            assert f"{o['size']} {o['colour']} {o['shape']}" in dense
            assert o["position"] in dense.lower()
    # Varied: almost all captions are distinct, and several wordings of the same thing occur.
    assert len(set(split.captions)) > 0.9 * split.n_captions
    joined = " ".join(split.captions).lower()
    assert "violet" in joined or "rhombus" in joined or "disc" in joined
    assert any("among other shapes" in c for c in split.captions)


def test_swap_caption():
    objects = [
        {"shape": "circle", "colour": "red", "size": "large", "position": "top left", "row": 0, "col": 0},
        {"shape": "star", "colour": "blue", "size": "small", "position": "center", "row": 1, "col": 1},
    ]
    positive = describe_objects(objects)
    assert positive == "A large red circle in the top left and a small blue star in the center."

    def changed_words(negative):
        pos, neg = positive.rstrip(".").split(), negative.rstrip(".").split()
        assert len(pos) == len(neg)
        return [(a, b) for a, b in zip(pos, neg) if a != b]

    for seed in range(10):
        # Exactly one word changes: one object's colour, or one object's shape.
        (old, new), = changed_words(swap_caption(objects, "attribute", seed))
        assert old in COLOURS and new in COLOURS
        (old, new), = changed_words(swap_caption(objects, "category", np.random.default_rng(seed)))
        assert old in SHAPES and new in SHAPES
    assert swap_caption(objects, "attribute", 5) == swap_caption(objects, "attribute", 5)
    with pytest.raises(ValueError, match="kind"):
        swap_caption(objects, "colour")


# ---------------------------------------------------------------------------------------
# noisy correspondence
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.2, 0.29, 0.5, 0.8])
def test_shuffle_captions_exact_fraction(ratio):
    clean = np.repeat(np.arange(200), 5)
    before = clean.copy()
    noisy = shuffle_captions(clean, ratio, seed=0)
    np.testing.assert_array_equal(clean, before)
    assert noisy.dtype == np.int64
    assert np.sum(noisy != clean) == floor(round(ratio * clean.size, 9))
    assert noisy_fraction(noisy, clean) == floor(round(ratio * 1000, 9)) / 1000
    # A permutation of targets: every image keeps its number of captions.
    np.testing.assert_array_equal(np.bincount(noisy, minlength=200), np.full(200, 5))
    np.testing.assert_array_equal(shuffle_captions(clean, ratio, seed=0), noisy)
    assert not np.array_equal(shuffle_captions(clean, ratio, seed=1), noisy)


def test_shuffle_captions_edge_cases():
    clean = np.arange(10)
    np.testing.assert_array_equal(shuffle_captions(clean, 0.0), clean)
    assert shuffle_captions(clean, 0.0) is not clean
    with pytest.raises(ValueError, match="single caption"):
        shuffle_captions(np.array([0, 1]), 0.99)  # floor(1.98) = 1 caption cannot move
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            shuffle_captions(clean, bad)
    assert np.sum(shuffle_captions(np.array([0, 1, 2, 3]), 0.5) != np.arange(4)) == 2
    with pytest.raises(ValueError, match="too many"):
        shuffle_captions(np.zeros(10, dtype=int), 0.5)  # one image: no wrong pair exists
    assert np.sum(shuffle_captions(np.arange(10), 0.9, seed=7) != np.arange(10)) == 9


def test_add_noise_keeps_clean_labels():
    split = _toy_split(20, 5)
    noisy = add_noise(split, 0.4, seed=2)
    assert noisy_fraction(noisy.text_image_ids, split.text_image_ids) == 0.4
    np.testing.assert_array_equal(noisy.clean_text_image_ids, split.text_image_ids)
    again = add_noise(noisy, 0.2, seed=2)  # re-noising starts from the clean labels
    assert noisy_fraction(again.text_image_ids, split.text_image_ids) == 0.2


@needs_shared
@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6])
def test_published_bicro_caption_level(ratio):
    path = shipped_file(f"noise/bicro/f30k_precomp/f30k_precomp_{ratio}.npy")
    noise_map, info = load_noise_file(path, n_images=29000, return_info=True)
    assert info["level"] == "caption" and noise_map.shape == (145000,)
    clean = np.arange(145000) // 5
    assert abs(noisy_fraction(noise_map, clean) - ratio) < 1e-4
    assert info["noisy_fraction"] == noisy_fraction(noise_map, clean)
    with pytest.raises(ValueError, match="needs length 29000"):
        load_noise_file(path, n_images=29000, level="image")


@needs_shared
@pytest.mark.parametrize("dataset,n_images", [("f30k", 29000), ("coco", 113287)])
def test_published_rcl_image_level(dataset, n_images):
    for ratio in (0.2, 0.4, 0.6, 0.8):
        path = shipped_file(f"noise/rcl/{dataset}_precomp/noise_inx_{ratio}.npy")
        noise_map, info = load_noise_file(path, n_images=n_images, return_info=True)
        assert info["level"] == "image" and "RCL" in info["protocol"]
        assert noise_map.shape == (5 * n_images,)
        # Whole images move: the 5 captions of an image share their (noisy) image.
        assert np.all(noise_map.reshape(-1, 5) == noise_map[::5, None])
        assert abs(noisy_fraction(noise_map, np.arange(5 * n_images) // 5) - ratio) < 1e-3


def test_noise_file_rejections(tmp_path):
    np.save(tmp_path / "short.npy", np.arange(7))
    with pytest.raises(ValueError, match="matches neither"):
        load_noise_file(tmp_path / "short.npy", n_images=4)
    np.save(tmp_path / "float.npy", np.arange(20, dtype=float))
    with pytest.raises(ValueError, match="integer"):
        load_noise_file(tmp_path / "float.npy", n_images=4)
    np.save(tmp_path / "range.npy", np.arange(20))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        load_noise_file(tmp_path / "range.npy", n_images=4)
    np.save(tmp_path / "notperm.npy", np.array([0, 0, 2, 3]))
    with pytest.raises(ValueError, match="permutation"):
        load_noise_file(tmp_path / "notperm.npy", n_images=4)
    np.save(tmp_path / "perm.npy", np.array([1, 0, 2, 3]))
    with pytest.raises(ValueError, match="explicit|level="):
        load_noise_file(tmp_path / "perm.npy", n_images=4, captions_per_image=1)
    np.testing.assert_array_equal(
        load_noise_file(tmp_path / "perm.npy", n_images=4, captions_per_image=1, level="image"), [1, 0, 2, 3]
    )
    np.testing.assert_array_equal(load_noise_file(tmp_path / "perm.npy", n_images=4)[:6], [1, 1, 1, 1, 1, 0])
    with pytest.raises(FileNotFoundError, match="absent.npy"):
        load_noise_file(tmp_path / "absent.npy", n_images=4)


# ---------------------------------------------------------------------------------------
# torch datasets
# ---------------------------------------------------------------------------------------


def test_data_modules_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import retrieval.data as d\n"
        "from retrieval.data import karpathy, folder, features, synthetic, noise\n"
        "assert 'PairDataset' in d.__all__\n"
    )
    root = Path(__file__).parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_pair_dataset_items(karpathy_root, synthetic_root):
    open_clip = pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    from torchvision import transforms

    from retrieval.data import ImageDataset, PairDataset, TextDataset

    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=16)
    transform = transforms.Compose(
        [transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor(),
         transforms.Normalize((0.48, 0.46, 0.41), (0.27, 0.26, 0.28))]  # fmt: skip
    )
    photos = load_karpathy(karpathy_root / "dataset_flickr30k.json", karpathy_root, split="test")
    noisy = photos.with_noise(np.roll(photos.text_image_ids, 5))
    dataset = PairDataset(noisy, transform, tokenizer, cache_size=2)
    assert len(dataset) == 15
    item = dataset[6]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["text"].shape == (16,) and item["text"].dtype == torch.int64
    assert item["caption_index"] == 6 and item["image_index"] == int(noisy.text_image_ids[6]) == 0
    assert "clean_image_index" not in item
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["text"].shape == (4, 16)

    synth = load_folder(synthetic_root, "val")
    images = ImageDataset(synth.image_paths, None)
    assert len(images) == 6 and images[0]["image"].shape == (3, 64, 64)
    assert float(images[0]["image"].max()) <= 1.0
    texts = TextDataset(synth.captions, tokenizer)
    assert len(texts) == 30 and texts[3]["text"].shape == (16,) and texts[3]["index"] == 3


def test_data_modules_import_one_way():
    # Every relative import inside retrieval.data (function-level ones included, type-checking
    # ones excluded) must form an acyclic graph: no two modules import each other.
    import ast
    from pathlib import Path

    import retrieval.data as data_package

    folder = Path(data_package.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        tree = ast.parse(path.read_text())
        skipped = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                skipped.update(id(child) for child in ast.walk(node))
        graph[path.stem] = {node.module for node in ast.walk(tree)
                            if isinstance(node, ast.ImportFrom) and node.level == 1
                            and node.module and id(node) not in skipped}
    state = {}

    def visit(module, trail):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' -> '.join(trail + [module])}"
        state[module] = "open"
        for target in graph.get(module, ()):
            visit(target, trail + [module])
        state[module] = "done"

    for module in graph:
        visit(module, [])
    assert "dense" in graph["_split"] and "_split" not in graph["dense"]


# ---------------------------------------------------------------------------------------
# Image files: truncated, 16-bit, unreadable ones left out on request
# ---------------------------------------------------------------------------------------
def _truncated_jpeg(path, wheel_photos):
    data = Path(wheel_photos[0]).read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path, wheel_photos):
    from retrieval.data import ImageDataset, UnreadableImageError, load_rgb

    bad = _truncated_jpeg(tmp_path / "broken.jpg", wheel_photos)
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        load_rgb(bad)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UnreadableImageError, match="text.png"):
        load_rgb(tmp_path / "text.png")
    with pytest.raises(FileNotFoundError, match="absent.png"):
        load_rgb(tmp_path / "absent.png")
    # Through a DataLoader worker the message still names the file.
    from torch.utils.data import DataLoader

    loader = DataLoader(ImageDataset([str(wheel_photos[1]), str(bad)], None), batch_size=1,
                        num_workers=1)
    with pytest.raises(Exception, match="broken.jpg"):
        list(loader)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from retrieval.data import load_rgb

    values = np.array([[0, 16384], [32768, 65535]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # PIL reads it as a wide integer image
    rgb = np.asarray(load_rgb(path))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], [[0, 64], [128, 255]])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    # An 8-bit grey image is unchanged.
    Image.fromarray(np.array([[0, 100]], dtype=np.uint8)).save(tmp_path / "grey8.png")
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "grey8.png"))[..., 1],
                                  [[0, 100]])


def test_skip_bad_images_drops_them_with_their_captions(tmp_path, wheel_photos, caplog):
    from retrieval.data import drop_unreadable_images

    root = make_synthetic(tmp_path / "set", n_images=40, seed=1)
    split = load_split(root, "train")
    victim = split.image_paths[2]
    n_captions = int((split.text_image_ids == 2).sum())
    _truncated_jpeg(Path(victim), wheel_photos)
    noisy = split.with_noise(shuffle_captions(split.text_image_ids, 0.3, seed=0))
    with caplog.at_level("WARNING"):
        kept, dropped = drop_unreadable_images(noisy, workers=2)
    assert list(dropped) == [victim]
    assert victim not in kept.image_paths and kept.n_images == split.n_images - 1
    assert kept.n_captions <= split.n_captions - n_captions
    assert "skipped 1 unreadable image" in caplog.text and Path(victim).name in caplog.text
    # Every other caption stays, with its clean image and its (noisy) training image.
    expected = [(c, noisy.image_paths[t], noisy.image_paths[n]) for c, t, n in zip(
        noisy.captions, noisy.clean_text_image_ids, noisy.text_image_ids)
        if victim not in (noisy.image_paths[t], noisy.image_paths[n])]
    got = [(c, kept.image_paths[t], kept.image_paths[n]) for c, t, n in zip(
        kept.captions, kept.clean_text_image_ids, kept.text_image_ids)]
    assert got == expected
    unchanged, none = drop_unreadable_images(load_split(make_synthetic(
        tmp_path / "clean", n_images=20, seed=2), "train"))
    assert none == {} and unchanged.n_images > 0
