"""The ``captions.jsonl`` reader: on a folder written here (always), and on a handful of the real
Flickr8k photos of the data home (skipped when the data home has no ``flickr8k_1k``)."""

import json

import numpy as np
import pytest
from PIL import Image

from retrieval.cli import main
from retrieval.data import load_captions_jsonl, load_rgb, load_split
from retrieval.data.dense import read_jsonl
from retrieval.data.shipped import local_set_dir

FLICKR = local_set_dir("flickr8k_1k", required=False)
needs_flickr = pytest.mark.skipif(FLICKR is None, reason="no flickr8k_1k in the data home "
                                  "($MVLEARN_PLUS_DATA/retrieval/flickr8k_1k)")


def _write(root, rows):
    (root / "images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        path = root / row["image"]
        if not path.exists():
            Image.new("RGB", (8, 6), (len(row["captions"]) * 40, 0, 0)).save(path)
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_reader_keeps_captions_per_image_and_reads_dev_as_val(tmp_path):
    rows = [{"image": "images/a.png", "captions": ["a one ", "a two"], "split": "train", "id": 1},
            {"image": "images/b.png", "captions": ["b one"], "split": "dev"},
            {"image": "images/c.png", "captions": ["c one", "c two", "c three"], "split": "train"}]
    root = _write(tmp_path / "set", rows)
    train = load_split(root, "train")  # detected by its captions.jsonl
    assert train.image_keys == ["images/a.png", "images/c.png"]
    assert train.captions == ["a one", "a two", "c one", "c two", "c three"]
    assert train.text_image_ids.tolist() == [0, 0, 1, 1, 1]
    assert train.image_paths[1] == str((root / "images" / "c.png").resolve())
    val = load_split(root, "val", format="jsonl")
    assert (val.name, val.image_keys) == ("val", ["images/b.png"])
    assert load_captions_jsonl(root).n_images == 3
    with pytest.raises(ValueError, match=r"no line of split 'test'.*\['dev', 'train'\]"):
        load_captions_jsonl(root, "test")


@pytest.mark.parametrize("rows, message", [
    ([{"image": "images/a.png", "captions": []}], "non-empty 'captions'"),
    ([{"captions": ["x"]}], "needs 'image'"),
    ([{"image": "images/a.png", "captions": ["x"]}, {"image": "images/a.png", "captions": ["y"]}],
     "appears twice"),
])
def test_reader_refuses_malformed_lines(tmp_path, rows, message):
    root = tmp_path / "bad"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "images" / "a.png")
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=message):
        load_captions_jsonl(root)


def test_reader_names_a_missing_image(tmp_path):
    root = _write(tmp_path / "set", [{"image": "images/a.png", "captions": ["x"], "split": "test"}])
    (root / "images" / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match="a.png"):
        load_captions_jsonl(root, "test")


def test_local_set_dir_says_how_to_get_a_missing_set(tmp_path):
    assert local_set_dir("flickr8k_1k", tmp_path, required=False) is None
    with pytest.raises(FileNotFoundError, match="flickr8k_1k.md"):
        local_set_dir("flickr8k_1k", tmp_path)
    with pytest.raises(KeyError, match="flickr8k_1k"):
        local_set_dir("flickr30k", tmp_path)


@needs_flickr
def test_flickr8k_splits_match_its_readme():
    counts = {name: load_split(FLICKR, name) for name in ("train", "val", "test")}
    assert {n: s.n_images for n, s in counts.items()} == {"train": 753, "val": 113, "test": 125}
    for split in counts.values():
        assert split.n_captions == 5 * split.n_images
        assert np.array_equal(np.bincount(split.text_image_ids), np.full(split.n_images, 5))
    assert not set(counts["train"].image_keys) & set(counts["test"].image_keys)


@needs_flickr
def test_flickr8k_handful_through_reader_and_command(tmp_path):
    """Six real photos: captions as in the file, images decoded, zero-shot ``evaluate`` runs."""
    lines = [r for r in read_jsonl(FLICKR / "captions.jsonl") if r["split"] == "test"][:6]
    subset = tmp_path / "subset"
    subset.mkdir()
    (subset / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    split = load_split(subset, "test", image_root=FLICKR)
    assert split.n_images == 6
    assert split.captions == [c.strip() for r in lines for c in r["captions"]]
    for path in split.image_paths:
        image = load_rgb(path)
        assert image.mode == "RGB" and min(image.size) >= 100
    out = tmp_path / "zero.json"
    assert main(["evaluate", "--model", "tiny-vit-64", "--data-root", str(subset),
                 "--image-root", str(FLICKR), "--json", str(out), "--quiet"]) == 0
    metrics = json.loads(out.read_text())
    # Six images: every caption finds its image among the first ten.
    assert 0 <= metrics["rsum"] <= 600 and metrics["t2i_r10"] == 100.0
