"""Synthetic testbeds, one per mechanism: ``make-synthetic --scenario NAME`` (issue 26, item 4).

Each scenario is the synthetic compositional set (:mod:`retrieval.data.synthetic`) with one
property pushed to where a method's mechanism should matter, written in the same folder format
(``captions.tsv``, ``dense_captions.jsonl``, ``objects.jsonl``, ``metadata.json``, a card):

``default``
    Today's set, byte for byte: :func:`~retrieval.data.make_synthetic`.
``sparse-captions`` (D2S-VSE)
    2-4 objects per image, exactly one of them large. Every *training* caption names one
    object, the large one, so training text never mentions the small ones; validation and test
    captions also name one object each, cycling through all of the image's objects (mostly the
    small ones). The dense caption names every object with all its attributes, so only a method
    that learns from dense captions is told about the small objects during training.
``small-objects`` (AVSE)
    5-8 small objects on a 6x6 grid of a larger canvas (128 px by default): every object's
    bounding box is at most :data:`SMALL_OBJECT_MAX_FRACTION` of the canvas side. Positions are
    named by the 3x3 region holding the object. Captions name one or two objects (a single
    object with its place, a spatial relation, the count with one object), as real captions of
    busy scenes do, so a caption is matched by a detail of a small part of the image.
``twins`` (DCAR)
    Images come in pairs that differ in exactly one thing: one object's colour (attribute
    twins) or one object's shape (category twins), alternately; both images of a pair fall into
    the same split, so each is the other's hard negative at training and test time. Objects are
    large (1-2 per image, one per quadrant; bounding box 26-40 % of the image side) and a
    category twin only swaps shapes whose silhouettes differ visibly at 64 px
    (:data:`CONFUSABLE_SHAPES` are never swapped for each other). ``twins.jsonl`` names each
    image's twin and what differs. Every caption names every object's colour and shape, so
    each caption tells its image from its twin.

Why the default set cannot measure category twins: its small objects are about 11 px wide at
64 px, and three of its seven shapes (circle, hexagon, square) differ by 8-19 % of their pixels
at any size (same area, nearly the same outline), so at a tiny ViT's 8-px patches a category
swap among them changes almost nothing the model sees; the twins scenario makes objects large
and swaps only shapes that differ by at least a third of their pixels. Measured at 64 px (600
images, seed 11): a category twin changes a median of 154 pixels (at least 69), a random shape
swap in the default set 62 (at least 19).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .dense import write_jsonl
from .synthetic import (
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    _POSITION_PHRASES,
    _cap,
    _count_phrase,
    _family_attributes,
    _family_full,
    _family_relation,
    _noun_phrase,
    _pick,
    assign_splits,
    dense_caption,
    describe_objects,
    make_captions,
    make_synthetic,
    progress,
    render_image,
    save_image,
    write_set,
)

logger = logging.getLogger(__name__)

__all__ = ["SCENARIOS", "SCENARIO_DEFAULT_IMAGE_SIZE", "CONFUSABLE_SHAPES",
           "SMALL_OBJECT_MAX_FRACTION", "TWINS_FILE", "make_scenario"]

SCENARIO_VERSION = 1
TWINS_FILE = "twins.jsonl"

#: Shape pairs whose filled silhouettes differ by less than a fifth of their pixels at every
#: size the generators draw (measured at 64 px: circle/hexagon 8-10 %, circle/square and
#: square/hexagon 16-19 %; every other pair 36 % or more). Category twins never swap them.
CONFUSABLE_SHAPES: frozenset[frozenset[str]] = frozenset(
    {frozenset({"circle", "hexagon"}), frozenset({"circle", "square"}),
     frozenset({"square", "hexagon"})})

_SMALL_GRID = 6  # cells per side in ``small-objects``
#: Largest bounding-box side of a ``small-objects`` object, as a fraction of the canvas side.
SMALL_OBJECT_MAX_FRACTION = 2 * SIZES["large"][0] / _SMALL_GRID

# ``twins`` object radii in quadrant units (a quadrant is half the image side).
_TWIN_RADII = {"small": 0.26, "large": 0.40}

#: Image side each scenario draws unless told otherwise.
SCENARIO_DEFAULT_IMAGE_SIZE = {"default": 64, "sparse-captions": 64, "small-objects": 128,
                               "twins": 64}


# ---------------------------------------------------------------------------------------
# objects
# ---------------------------------------------------------------------------------------


def _place(rng: np.random.Generator, *, size: str, radius: float, row: int, col: int,
           grid: int, position: str, grid_row: int | None = None,
           grid_col: int | None = None) -> dict[str, Any]:
    """One object record in cell ``(row, col)`` of a ``grid`` x ``grid`` layout; ``radius`` in
    cell units. ``grid_row`` / ``grid_col`` are the row and column stored in the record (the
    3x3 ones where the layout is coarser, so that relations read as in the default set)."""
    # Jitter keeps the object inside its cell, so its position name stays true.
    slack = 0.5 - radius
    cx = (col + 0.5 + rng.uniform(-0.6, 0.6) * slack) / grid
    cy = (row + 0.5 + rng.uniform(-0.6, 0.6) * slack) / grid
    rad = radius / grid
    return {
        "shape": _pick(rng, list(SHAPES)),
        "colour": _pick(rng, list(COLOURS)),
        "size": size,
        "position": position,
        "row": row if grid_row is None else grid_row,
        "col": col if grid_col is None else grid_col,
        "angle": round(float(rng.uniform(-12, 12)), 2),
        "bbox": [round(cx - rad, 4), round(cy - rad, 4), round(cx + rad, 4), round(cy + rad, 4)],
    }


def _sparse_objects(rng: np.random.Generator) -> list[dict[str, Any]]:
    n = int(rng.choice([2, 3, 4], p=(0.35, 0.35, 0.30)))
    cells = np.sort(rng.choice(9, size=n, replace=False))
    salient = int(rng.integers(n))
    objects = []
    for k, cell in enumerate(cells):
        row, col = divmod(int(cell), 3)
        size = "large" if k == salient else "small"
        obj = _place(rng, size=size, radius=SIZES[size][0], row=row, col=col, grid=3,
                     position=POSITIONS[int(cell)])
        obj["salient"] = k == salient
        objects.append(obj)
    return objects


def _small_objects(rng: np.random.Generator) -> list[dict[str, Any]]:
    n = int(rng.integers(5, 9))
    cells = np.sort(rng.choice(_SMALL_GRID ** 2, size=n, replace=False))
    objects = []
    for cell in cells:
        row, col = divmod(int(cell), _SMALL_GRID)
        size = _pick(rng, list(SIZES))
        region = 3 * (row * 3 // _SMALL_GRID) + col * 3 // _SMALL_GRID
        objects.append(_place(rng, size=size, radius=SIZES[size][0], row=row, col=col,
                              grid=_SMALL_GRID, position=POSITIONS[region]))
    return objects


def _twin_objects(rng: np.random.Generator) -> list[dict[str, Any]]:
    n = int(rng.choice([1, 2], p=(0.4, 0.6)))
    quadrants = np.sort(rng.choice(4, size=n, replace=False))
    objects = []
    for quadrant in quadrants:
        row, col = divmod(int(quadrant), 2)
        size = _pick(rng, list(_TWIN_RADII))
        objects.append(_place(rng, size=size, radius=_TWIN_RADII[size], row=row, col=col,
                              grid=2, position=POSITIONS[6 * row + 2 * col],
                              grid_row=2 * row, grid_col=2 * col))
    return objects


def visible_shape_swaps(shape: str) -> list[str]:
    """The shapes a category twin may turn ``shape`` into (all others but the confusable)."""
    return [s for s in SHAPES if s != shape and frozenset({s, shape}) not in CONFUSABLE_SHAPES]


def _make_twin(objects: list[dict[str, Any]], kind: str, rng: np.random.Generator
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The twin of an image: one object's colour (attribute) or shape (category) changed."""
    index = int(rng.integers(len(objects)))
    key = "colour" if kind == "attribute" else "shape"
    old = objects[index][key]
    choices = [c for c in COLOURS if c != old] if kind == "attribute" else visible_shape_swaps(old)
    new = _pick(rng, choices)
    twin = [dict(o) for o in objects]
    twin[index][key] = new
    return twin, {"kind": kind, "object": index, "key": key, "value": old, "twin_value": new}


# ---------------------------------------------------------------------------------------
# captions
# ---------------------------------------------------------------------------------------

_ONE_OBJECT_TEMPLATES = ("{NP}.", "There is {np}.", "A picture of {np}.", "An image showing {np}.",
                         "{NP} on a {bg} background.")


def _one_object(obj: dict[str, Any], rng: np.random.Generator) -> str:
    phrase = _noun_phrase(obj, rng, p_size=0.6, p_position=0.6)
    template = _pick(rng, _ONE_OBJECT_TEMPLATES)
    return template.format(NP=_cap(phrase), np=phrase, bg=_pick(rng, ("gray", "grey")))


def _one_object_captions(targets: Sequence[dict[str, Any]], rng: np.random.Generator) -> list[str]:
    """One distinct caption per target object, each naming that object only."""
    captions: list[str] = []
    for obj in targets:
        text = _one_object(obj, rng)
        for _ in range(30):
            if text not in captions:
                break
            text = _one_object(obj, rng)
        captions.append(text)
    return captions


def _family_one_placed(objects: Sequence[dict], rng: np.random.Generator) -> str:
    obj = objects[int(rng.integers(len(objects)))]
    phrase = _noun_phrase(obj, rng, p_size=0.7)
    where = _pick(rng, _POSITION_PHRASES[obj["position"]])
    return _cap(_pick(rng, (f"{phrase} {where}.", f"there is {phrase} {where}.",
                            f"among many shapes, {phrase} {where}.")))


def _family_count_including(objects: Sequence[dict], rng: np.random.Generator) -> str:
    obj = objects[int(rng.integers(len(objects)))]
    phrase = _noun_phrase(obj, rng, p_size=0.6)
    where = _pick(rng, _POSITION_PHRASES[obj["position"]])
    return f"{_cap(_count_phrase(len(objects), rng))} including {phrase} {where}."


_SMALL_FAMILIES: tuple[Callable[[Sequence[dict], np.random.Generator], str], ...] = (
    _family_one_placed, _family_relation, _family_count_including)
_TWIN_FAMILIES: tuple[Callable[[Sequence[dict], np.random.Generator], str], ...] = (
    _family_full, _family_attributes)


# ---------------------------------------------------------------------------------------
# the sets
# ---------------------------------------------------------------------------------------


def _background(rng: np.random.Generator) -> tuple[int, float]:
    return int(rng.integers(85, 171)), float(rng.choice([0.0, 0.0, 6.0, 12.0]))


def _image_by_image(root: Path, n_images: int, seed: int, image_size: int, splits, verbose,
                    *, sample: Callable[[np.random.Generator], list[dict[str, Any]]],
                    captions: Callable[[list[dict[str, Any]], str, np.random.Generator], list[str]],
                    desc: str):
    """Images drawn one by one from ``(seed, index)``: ``sample`` places the objects,
    ``captions(objects, split, rng)`` writes the image's captions."""
    split_of = assign_splits(n_images, seed, splits)
    rows, dense, records = [], {}, {}
    for i in progress(range(n_images), verbose, desc):
        rng = np.random.default_rng([seed, i])
        objects = sample(rng)
        background, sigma = _background(rng)
        rel = save_image(root, render_image(objects, image_size, background, sigma, rng),
                         split_of[i], i)
        rows += [(rel, text, split_of[i]) for text in captions(objects, split_of[i], rng)]
        dense[rel] = dense_caption(objects, noisy_background=sigma > 0)
        records[rel] = objects
    return rows, dense, records


def _sparse_captions(objects: list[dict[str, Any]], split: str, rng: np.random.Generator
                     ) -> list[str]:
    if split == "train":
        targets = [next(o for o in objects if o["salient"])] * 5
    else:
        order = rng.permutation(len(objects))
        targets = [objects[int(order[k % len(objects)])] for k in range(5)]
    return _one_object_captions(targets, rng)


def _sparse_set(root: Path, n_images: int, seed: int, image_size: int, splits, verbose):
    return (*_image_by_image(root, n_images, seed, image_size, splits, verbose,
                             sample=_sparse_objects, captions=_sparse_captions,
                             desc="sparse-captions images"), {})


def _small_set(root: Path, n_images: int, seed: int, image_size: int, splits, verbose):
    parts = _image_by_image(
        root, n_images, seed, image_size, splits, verbose, sample=_small_objects,
        captions=lambda objects, _, rng: make_captions(objects, rng, families=_SMALL_FAMILIES),
        desc="small-objects images")
    return (*parts, {"grid": _SMALL_GRID,
                     "max_object_fraction": round(SMALL_OBJECT_MAX_FRACTION, 4)})


def _twin_set(root: Path, n_images: int, seed: int, image_size: int, splits, verbose):
    if n_images < 2 or n_images % 2:
        raise ValueError(f"the twins scenario draws images in pairs: n_images must be even and "
                         f">= 2, got {n_images}")
    n_pairs = n_images // 2
    split_of = assign_splits(n_pairs, seed, splits)
    rows, dense, records, twins = [], {}, {}, []
    for pair in progress(range(n_pairs), verbose, "twin pairs"):
        rng = np.random.default_rng([seed, pair])
        objects = _twin_objects(rng)
        kind = ("attribute", "category")[pair % 2]
        twin, change = _make_twin(objects, kind, rng)
        background = int(rng.integers(85, 171))
        rels = []
        for member, members_objects in enumerate((objects, twin)):
            index = 2 * pair + member
            rel = save_image(root, render_image(members_objects, image_size, background),
                             split_of[pair], index)
            rels.append(rel)
            rows += [(rel, text, split_of[pair])
                     for text in make_captions(members_objects, rng, families=_TWIN_FAMILIES)]
            dense[rel] = dense_caption(members_objects)
            records[rel] = members_objects
        for member in (0, 1):
            mine, other = ("value", "twin_value") if member == 0 else ("twin_value", "value")
            twins.append({"image": rels[member], "twin": rels[1 - member], "kind": kind,
                          "object": change["object"], "key": change["key"],
                          "value": change[mine], "twin_value": change[other],
                          "twin_caption": describe_objects((twin, objects)[member])})
    return rows, dense, records, {"pairs": n_pairs, "twins": twins}


_CARD = """# Synthetic scenario `{scenario}` (mvlearn-plus retrieval)

Generated by `python -m retrieval make-synthetic --scenario {scenario} --seed {seed}`
(`retrieval.data.scenarios`, version {version}): {n_images} images of {image_size}x{image_size}
pixels, {n_captions} captions. Splits: train {n_train}, val {n_val}, test {n_test} images. Every
image and caption is procedurally generated; there is no third-party content.

## What it tests
{purpose}

## Content
{content}

## Layout
```
images/<split>/<index>.png      RGB PNG
captions.tsv                    relative_path<TAB>caption<TAB>split (paths relative to images/)
dense_captions.jsonl            {{"image": relative_path, "text": ...}}: every object, all attributes
objects.jsonl                   {{"image": relative_path, "objects": [...]}}
metadata.json                   generator parameters and counts{extra_layout}
```
Load with `retrieval.data.load_split(root, "train")`. Numbers on this set say nothing about
natural images.
"""

_TEXT = {
    "sparse-captions": (
        "D2S-VSE (dense-to-sparse distillation): training captions leave out what only the dense "
        "captions say.",
        "* 2-4 objects per image on a 3x3 grid, exactly one large (`\"salient\": true` in "
        "`objects.jsonl`), the others small; backgrounds as in the default set.\n"
        "* Training captions (5 per image) each name exactly one object, always the large one, "
        "with optional size and position.\n"
        "* Validation and test captions (5 per image) each name exactly one object, cycling "
        "through all of the image's objects in random order.\n"
        "* The dense caption lists every object with size, colour, shape and position.",
        ""),
    "small-objects": (
        "AVSE (local views): many small objects, each caption about one or two of them.",
        "* 5-8 objects per image, each in its own cell of a 6x6 grid (`row`, `col` in "
        "`objects.jsonl` are 6x6 indices; `position` names the 3x3 region holding the object). "
        "Bounding-box side at most {max_fraction:.3f} of the canvas side.\n"
        "* Captions name one object with its region, a spatial relation between two objects, or "
        "the count with one object.",
        ""),
    "twins": (
        "DCAR (category- and attribute-aware alignment): twin images that differ in one colour "
        "or one shape, visible at 64 px.",
        "* Pairs of images; pair *p* is images 2*p* and 2*p*+1, in the same split. Even pairs "
        "are attribute twins (one object's colour differs), odd pairs category twins (one "
        "object's shape differs, never between circle, hexagon and square, whose silhouettes "
        "differ by under a fifth of their pixels).\n"
        "* 1-2 large objects per image, one per quadrant (positions top left, top right, bottom "
        "left, bottom right), plain grey background shared by both twins.\n"
        "* Every caption names every object's colour and shape.",
        "\ntwins.jsonl                     {\"image\", \"twin\", \"kind\", \"object\", \"key\", "
        "\"value\", \"twin_value\", \"twin_caption\"}"),
}

_BUILDERS = {"sparse-captions": _sparse_set, "small-objects": _small_set, "twins": _twin_set}

#: Scenario name -> the method it is built for.
SCENARIOS: dict[str, str] = {"default": "all (today's set)", "sparse-captions": "d2s",
                             "small-objects": "avse", "twins": "dcar"}


def make_scenario(
    output_dir: str | os.PathLike[str], scenario: str = "default", n_images: int = 1000,
    seed: int = 0, image_size: int | None = None,
    splits: Sequence[float] = (0.8, 0.1, 0.1), verbose: bool = False,
) -> Path:
    """Generate one synthetic scenario in the folder format.

    Parameters
    ----------
    output_dir : str or os.PathLike
        The set's folder (created; files of an earlier set there are overwritten).
    scenario : {"default", "sparse-captions", "small-objects", "twins"}, default="default"
        See the module docstring; ``"default"`` is :func:`~retrieval.data.make_synthetic`.
    n_images : int, default=1000
        Must be even for ``"twins"`` (images come in pairs).
    seed : int, default=0
        Same seed and options, same files.
    image_size : int, optional
        Image side; default :data:`SCENARIO_DEFAULT_IMAGE_SIZE` of the scenario.
    splits : sequence of three floats, default=(0.8, 0.1, 0.1)
        Train / val / test fractions (of image pairs for ``"twins"``).
    verbose : bool, default=False
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``output_dir``, ready for :func:`~retrieval.data.load_split`.

    References
    ----------
    .. [1] Z. Liu et al., "Aligning Information Capacity Between Vision and Language via
       Dense-to-Sparse Feature Distillation for Image-Text Matching", ICCV 2025 (D2S-VSE).
    .. [2] Y. Liu et al., "Asymmetric Visual Semantic Embedding Framework for Efficient
       Vision-Language Alignment", AAAI 2025 (AVSE).
    .. [3] Wang et al., "Dual Prompt Learning with Joint Category-Attribute Reweighting for
       Fine-grained Cross-modal Retrieval", ACM MM 2025 (DCAR).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {sorted(SCENARIOS)}")
    size = SCENARIO_DEFAULT_IMAGE_SIZE[scenario] if image_size is None else int(image_size)
    if scenario == "default":
        return make_synthetic(output_dir, n_images=n_images, seed=seed, image_size=size,
                              splits=splits, verbose=verbose)
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if size < 8:
        raise ValueError(f"image_size must be >= 8, got {size}")
    root = Path(output_dir)
    rows, dense, records, extra = _BUILDERS[scenario](root, n_images, seed, size, splits, verbose)
    counts = {name: len({r[0] for r in rows if r[2] == name}) for name in ("train", "val", "test")}
    twins = extra.pop("twins", None)
    meta = {"generator": "retrieval.data.scenarios", "version": SCENARIO_VERSION,
            "scenario": scenario, "built_for": SCENARIOS[scenario], "seed": seed,
            "n_images": n_images, "image_size": size, "captions_per_image": 5,
            "splits": counts, "shapes": list(SHAPES), "colours": list(COLOURS),
            "sizes": list(SIZES), "positions": list(POSITIONS), **extra}
    purpose, content, extra_layout = _TEXT[scenario]
    card = _CARD.format(scenario=scenario, seed=seed, version=SCENARIO_VERSION,
                        n_images=n_images, image_size=size, n_captions=len(rows),
                        n_train=counts["train"], n_val=counts["val"], n_test=counts["test"],
                        purpose=purpose,
                        content=content.format(max_fraction=SMALL_OBJECT_MAX_FRACTION),
                        extra_layout=extra_layout)
    write_set(root, rows, dense, records, meta, card)
    if twins is not None:
        write_jsonl(root / TWINS_FILE, twins)
    logger.info("synthetic scenario %s: %d images (%d/%d/%d) in %s", scenario, n_images,
                counts["train"], counts["val"], counts["test"], root)
    return root
