"""Shipped retrieval files and the canonical image order applied to Karpathy JSON files."""

import json

import numpy as np

from retrieval.data import load_split, read_id_file, shipped_file


def test_shipped_test_orders():
    f30k = read_id_file(shipped_file("f30k/test_ids.txt"))
    coco = read_id_file(shipped_file("coco/testall_ids.txt"))
    for ids, n_images in ((f30k, 1000), (coco, 5000)):
        assert len(ids) == 5 * n_images
        assert len(np.unique(ids)) == n_images
        assert np.all(ids.reshape(n_images, 5) == ids[::5, None])  # 5 consecutive captions


def test_karpathy_test_split_follows_the_shipped_order(tmp_path):
    ids = read_id_file(shipped_file("f30k/test_ids.txt"))[::5]
    rng = np.random.default_rng(0)
    images = []
    for imgid in rng.permutation(ids):  # the JSON lists the test images in another order
        name = f"{imgid}.jpg"
        (tmp_path / name).touch()
        images.append({"filename": name, "imgid": int(imgid), "split": "test",
                       "sentences": [{"raw": f"caption {k} of image {imgid} (written by the "
                                             "tests)"} for k in range(5)]})
    images.append({"filename": "extra.jpg", "imgid": 999999, "split": "train",
                   "sentences": [{"raw": "a training caption"}] * 5})
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    split = load_split(tmp_path, "test")
    assert [int(k.split(".")[0]) for k in split.image_keys] == [int(i) for i in ids]
    assert split.captions[5].startswith(f"caption 0 of image {ids[1]}")
    kept = load_split(tmp_path, "test", ids_file=None)
    assert [k for k in kept.image_keys] == [im["filename"] for im in images[:-1]]


def test_dense_captions_attach_from_a_file(tmp_path):
    from retrieval.data import make_synthetic

    root = make_synthetic(tmp_path / "syn", n_images=20, seed=1)
    split = load_split(root, "train")
    stripped = split.with_dense_captions([""] * split.n_images)
    attached = stripped.with_dense_captions(root / "dense_captions.jsonl")
    assert attached.dense_captions == split.dense_captions and attached is not stripped
    published = load_split(root, "test").subset(2)
    with __import__("pytest").raises(ValueError):
        published.with_dense_captions(shipped_file("f30k/f30k_test.jsonl"))  # 1000 lines, 2 images
