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


# ------------------------------------------------------------------------------------------
# The published files come from the data home (downloaded on first use), never the project
# ------------------------------------------------------------------------------------------


def test_published_files_are_pinned_and_their_card_lists_them():
    import hashlib
    from pathlib import Path

    from retrieval.data import PUBLISHED_FILES, get_data_home

    card = (Path(__file__).resolve().parents[2] / "datasets" / "retrieval" / "README.md").read_text()
    assert len(PUBLISHED_FILES) == 24
    for key, remote in PUBLISHED_FILES.items():
        assert remote.path == f"retrieval/{key}"
        assert remote.url.startswith("https://github.com/") and remote.url in card
        assert remote.sha256 in card and f"{remote.size:,}" in card
        local = shipped_file(key)
        assert local == get_data_home() / "retrieval" / key
        assert hashlib.sha256(local.read_bytes()).hexdigest() == remote.sha256


def test_missing_published_file_gives_the_fix(tmp_path):
    import pytest

    from retrieval.data import DataNotFoundError, PUBLISHED_FILES

    with pytest.raises(DataNotFoundError) as info:
        shipped_file("f30k/test_ids.txt", data_home=tmp_path, download_if_missing=False)
    message = str(info.value)
    assert PUBLISHED_FILES["f30k/test_ids.txt"].url in message
    assert str(tmp_path / "retrieval" / "f30k" / "test_ids.txt") in message
    assert "MVLEARN_PLUS_DATA" in message
    with pytest.raises(KeyError, match="not a published retrieval file"):
        shipped_file("f30k/train_caps.txt")


def test_corrupted_published_file_is_refused(tmp_path):
    import pytest

    from retrieval.data import ChecksumError

    target = tmp_path / "retrieval" / "f30k" / "test_ids.txt"
    target.parent.mkdir(parents=True)
    data = bytearray(shipped_file("f30k/test_ids.txt").read_bytes())
    data[0] = ord("9") if data[0] != ord("9") else ord("8")
    target.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="not used"):
        shipped_file("f30k/test_ids.txt", data_home=tmp_path)


def test_strict_order_needs_the_published_file(tmp_path, monkeypatch):
    import pytest

    from retrieval.data import DataNotFoundError

    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": [
        {"filename": "a.jpg", "imgid": 0, "split": "test", "sentences": [{"raw": f"a cat, caption {k}"} for k in range(5)]}]}))
    (tmp_path / "a.jpg").touch()
    monkeypatch.setenv("MVLEARN_PLUS_DATA", str(tmp_path / "empty_home"))
    monkeypatch.setattr("retrieval.data._fetch._downloader", _offline)
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    with pytest.raises(DataNotFoundError, match="could not be downloaded"):
        load_split(tmp_path, "test", ids_file="strict")
    # "auto" keeps the JSON's own order when the published one cannot be had.
    assert load_split(tmp_path, "test").image_keys == ["a.jpg"]


def _offline(progress):
    def download(url, output_file, pooch):
        import requests

        raise requests.exceptions.ConnectionError("no network (simulated)")

    return download


def test_command_line_takes_published_names_for_data_root_and_noise_file(tmp_path):
    import argparse
    from pathlib import Path

    from retrieval.cli import _resolve_published_paths

    own = tmp_path / "noise.npy"
    own.touch()
    args = argparse.Namespace(data_root=Path("fdrd/pets_test.json"),
                              noise_file="noise/rcl/f30k_precomp/noise_inx_0.2.npy")
    _resolve_published_paths(args)
    assert args.data_root == shipped_file("fdrd/pets_test.json")
    assert args.noise_file == str(shipped_file("noise/rcl/f30k_precomp/noise_inx_0.2.npy"))
    args = argparse.Namespace(data_root=tmp_path / "absent", noise_file=str(own))
    _resolve_published_paths(args)  # paths stay paths (an absent one fails later, by name)
    assert args.data_root == tmp_path / "absent" and args.noise_file == str(own)
