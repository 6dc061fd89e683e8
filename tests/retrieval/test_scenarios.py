"""The synthetic testbeds of ``make-synthetic --scenario``: deterministic, and their captions and
objects say what each scenario claims."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval.cli import main
from retrieval.data import load_split, make_scenario, make_synthetic
from retrieval.data.dense import read_jsonl
from retrieval.data.scenarios import (
    CONFUSABLE_SHAPES,
    SCENARIO_DEFAULT_IMAGE_SIZE,
    SMALL_OBJECT_MAX_FRACTION,
    TWINS_FILE,
)
from retrieval.data.synthetic import COLOURS, POSITIONS, SHAPES, describe_objects

SPLITS = ("train", "val", "test")


def _words(table: dict) -> dict[str, re.Pattern]:
    return {name: re.compile(r"\b(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True))
                             + r")\b", re.IGNORECASE) for name, words in table.items()}


SHAPE_WORDS = _words(SHAPES)
COLOUR_WORDS = _words({name: words for name, (_, words) in COLOURS.items()})
ANY_SHAPE = re.compile(r"\b(" + "|".join(sorted({re.escape(w) for ws in SHAPES.values() for w in ws},
                                                key=len, reverse=True)) + r")\b", re.IGNORECASE)


def _names(obj: dict, caption: str) -> bool:
    """The caption names this object's shape and colour."""
    return bool(SHAPE_WORDS[obj["shape"]].search(caption)
                and COLOUR_WORDS[obj["colour"]].search(caption))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scenario_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("scenarios")
    return {name: make_scenario(base / name, name, n_images=40, seed=5)
            for name in ("sparse-captions", "small-objects", "twins")}


def test_default_scenario_is_todays_set(tmp_path):
    by_scenario = _files(make_scenario(tmp_path / "a", "default", n_images=12, seed=2))
    assert by_scenario == _files(make_synthetic(tmp_path / "b", n_images=12, seed=2))


@pytest.mark.parametrize("name", ["sparse-captions", "small-objects", "twins"])
def test_scenarios_are_deterministic_per_seed(name, scenario_roots, tmp_path):
    first = _files(scenario_roots[name])
    assert first == _files(make_scenario(tmp_path / "again", name, n_images=40, seed=5))
    other = _files(make_scenario(tmp_path / "other", name, n_images=40, seed=6))
    assert other["captions.tsv"] != first["captions.tsv"]
    size = SCENARIO_DEFAULT_IMAGE_SIZE[name]
    split = load_split(scenario_roots[name], "train")
    assert Image.open(split.image_paths[0]).size == (size, size)
    assert split.objects is not None and split.dense_captions is not None


def test_sparse_captions_name_one_object_dense_all(scenario_roots):
    for split_name in SPLITS:
        split = load_split(scenario_roots["sparse-captions"], split_name)
        named_per_image: dict[int, set[int]] = {}
        for caption, image in zip(split.captions, split.text_image_ids):
            objects = split.objects[image]
            assert len(ANY_SHAPE.findall(caption)) == 1, caption
            matches = [k for k, obj in enumerate(objects) if _names(obj, caption)]
            assert matches, (caption, objects)
            if split_name == "train":
                # Training text only ever names the large object.
                assert any(objects[k]["salient"] for k in matches), (caption, objects)
            named_per_image.setdefault(int(image), set()).update(matches)
        for image, objects in enumerate(split.objects):
            assert 2 <= len(objects) <= 4 and sum(o["salient"] for o in objects) == 1
            assert all((o["size"] == "large") == o["salient"] for o in objects)
            dense = split.dense_captions[image]
            assert len(ANY_SHAPE.findall(dense)) == len(objects)
            for obj in objects:
                assert f"{obj['size']} {obj['colour']} {obj['shape']}" in dense
            if split_name != "train":
                # Evaluation captions cycle through every object of the image.
                assert len(named_per_image[image]) == len(objects)


def test_small_objects_are_small_and_placed(scenario_roots):
    assert SMALL_OBJECT_MAX_FRACTION < 0.14
    for split_name in SPLITS:
        split = load_split(scenario_roots["small-objects"], split_name)
        for objects in split.objects:
            assert 5 <= len(objects) <= 8
            for obj in objects:
                x0, y0, x1, y1 = obj["bbox"]
                assert max(x1 - x0, y1 - y0) <= SMALL_OBJECT_MAX_FRACTION + 1e-3
                assert 0 <= x0 and x1 <= 1 and 0 <= y0 and y1 <= 1
                # The named position is the 3x3 region holding the object's centre.
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                assert obj["position"] == POSITIONS[3 * int(cy * 3) + int(cx * 3)]
        for caption in split.captions:
            assert 1 <= len(ANY_SHAPE.findall(caption)) <= 2, caption


def test_twins_differ_in_exactly_the_documented_thing(scenario_roots):
    root = scenario_roots["twins"]
    records = {r["image"]: r for r in read_jsonl(root / TWINS_FILE)}
    splits = {name: load_split(root, name) for name in SPLITS}
    where = {key: (name, i) for name, split in splits.items()
             for i, key in enumerate(split.image_keys)}
    assert set(records) == set(where)
    kinds = set()
    for key, record in records.items():
        twin = record["twin"]
        assert records[twin]["twin"] == key
        (split_name, i), (twin_split, j) = where[key], where[twin]
        assert split_name == twin_split  # each twin is the other's hard negative
        split = splits[split_name]
        mine, theirs = split.objects[i], split.objects[j]
        k, field = record["object"], record["key"]
        assert field == {"attribute": "colour", "category": "shape"}[record["kind"]]
        kinds.add(record["kind"])
        assert len(mine) == len(theirs)
        for m, (a, b) in enumerate(zip(mine, theirs)):
            differing = {f for f in a if a[f] != b[f]}
            assert differing == ({field} if m == k else set()), (a, b)
        assert (mine[k][field], theirs[k][field]) == (record["value"], record["twin_value"])
        if field == "shape":
            assert frozenset({record["value"], record["twin_value"]}) not in CONFUSABLE_SHAPES
        assert record["twin_caption"] == describe_objects(theirs) != describe_objects(mine)
        # The pixels differ, and only where the changed object lies.
        a = np.asarray(Image.open(split.image_paths[i]), dtype=np.int16)
        b = np.asarray(Image.open(split.image_paths[j]), dtype=np.int16)
        changed = np.argwhere(np.abs(a - b).sum(-1) > 0)
        assert changed.size
        side = a.shape[0]
        x0, y0, x1, y1 = (np.asarray(mine[k]["bbox"]) * side)
        # (2 px of margin: a rotated cross or square reaches 4 % past its box, plus antialiasing)
        assert changed[:, 1].min() >= x0 - 2 and changed[:, 1].max() <= x1 + 2
        assert changed[:, 0].min() >= y0 - 2 and changed[:, 0].max() <= y1 + 2
        # Large enough to see at 64 px, and every caption tells the twins apart.
        assert all(o["bbox"][2] - o["bbox"][0] >= 0.25 for o in mine)
        value_words = (SHAPE_WORDS if field == "shape" else COLOUR_WORDS)[record["value"]]
        for c in np.flatnonzero(split.text_image_ids == i):
            assert value_words.search(split.captions[c]), split.captions[c]
    assert kinds == {"attribute", "category"}


def test_make_synthetic_command_takes_a_scenario(tmp_path, capsys):
    root = tmp_path / "twins"
    assert main(["make-synthetic", "--output", str(root), "--scenario", "twins",
                 "--n-images", "12", "--seed", "1"]) == 0
    assert (root / TWINS_FILE).is_file()
    assert main(["make-synthetic", "--output", str(tmp_path / "odd"), "--scenario", "twins",
                 "--n-images", "7"]) == 2
    assert "must be even" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown scenario"):
        make_scenario(tmp_path / "x", "busy")
