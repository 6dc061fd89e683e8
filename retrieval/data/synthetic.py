"""The synthetic compositional image-caption set: the offline default (spec 4.5).

Each image holds 1-4 flat objects on a grey background (plain or noisy). An object has a
shape (7), a colour (8), a size (2) and a cell of a 3x3 grid (9 named positions). Every
image gets five differently worded captions, all true, drawn from five families:

1. all objects, usually with positions ("A big red circle in the top left and ...");
2. all objects without positions, often with the count ("Three shapes: ...");
3. a subset of the objects ("... among other shapes") -- deliberately ambiguous;
4. a spatial relation between two objects ("A star to the left of a blue square");
5. a count plus one object singled out by its position.

Synonyms (disc/circle, big/large, violet/purple, "in the middle"/"in the center" ...),
random object order and optional attributes make the captions varied, so retrieval is
not a string match. A dense caption lists every object with all four attributes (D2S),
and the object records in ``objects.jsonl`` let :func:`swap_caption` build attribute-
and category-swapped hard negatives (DCAR). The result is written in the folder format
of :mod:`retrieval.data.folder`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .folder import IMAGES_DIR, write_folder

logger = logging.getLogger(__name__)

__all__ = [
    "SHAPES",
    "COLOURS",
    "SIZES",
    "POSITIONS",
    "make_synthetic",
    "render_image",
    "sample_objects",
    "make_captions",
    "dense_caption",
    "describe_objects",
    "swap_caption",
]

GENERATOR_VERSION = 1

#: Shape name -> words that may name it in a caption.
SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
    "star": ("star", "five-pointed star"),
    "hexagon": ("hexagon", "six-sided shape"),
}

#: Colour name -> (RGB, words that may name it).
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((215, 35, 35), ("red",)),
    "green": ((35, 165, 55), ("green",)),
    "blue": ((35, 75, 215), ("blue",)),
    "yellow": ((240, 215, 35), ("yellow",)),
    "purple": ((135, 50, 185), ("purple", "violet")),
    "orange": ((245, 135, 25), ("orange",)),
    "white": ((245, 245, 245), ("white",)),
    "black": ((20, 20, 20), ("black",)),
}

#: Size name -> (radius as a fraction of a grid cell, words that may name it).
SIZES: dict[str, tuple[float, tuple[str, ...]]] = {
    "small": (0.25, ("small", "little", "tiny")),
    "large": (0.40, ("large", "big")),
}

#: Grid position name, in reading order (row-major); index = 3 * row + col.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip

# Phrases placing an object in a cell; the first is the canonical one.
_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left", "in the upper left corner", "at the top left"),
    "top": ("at the top", "at the top center", "in the upper middle"),
    "top right": ("in the top right", "in the upper right corner", "at the top right"),
    "left": ("on the left", "at the left side", "in the middle of the left side"),
    "center": ("in the center", "in the middle", "at the center of the image"),
    "right": ("on the right", "at the right side", "in the middle of the right side"),
    "bottom left": ("in the bottom left", "in the lower left corner", "at the bottom left"),
    "bottom": ("at the bottom", "at the bottom center", "in the lower middle"),
    "bottom right": ("in the bottom right", "in the lower right corner", "at the bottom right"),
}

_COUNT_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_N_OBJECTS_P = (0.2, 0.3, 0.3, 0.2)  # probabilities of 1, 2, 3, 4 objects


# ---------------------------------------------------------------------------------------
# sampling and rendering
# ---------------------------------------------------------------------------------------


def sample_objects(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Draw the object records of one image.

    Parameters
    ----------
    rng : numpy.random.Generator

    Returns
    -------
    list of dict
        1-4 records in reading order with keys ``shape``, ``colour``, ``size``,
        ``position`` (a name of :data:`POSITIONS`), ``row``, ``col``, ``angle``
        (degrees) and ``bbox`` (``[x0, y0, x1, y1]`` as fractions of the image side).
    """
    n = int(rng.choice(4, p=_N_OBJECTS_P)) + 1
    cells = np.sort(rng.choice(9, size=n, replace=False))
    shapes, colours, sizes = list(SHAPES), list(COLOURS), list(SIZES)
    objects = []
    for cell in cells:
        row, col = divmod(int(cell), 3)
        size = sizes[int(rng.integers(len(sizes)))]
        r = SIZES[size][0]  # in cell units
        # Jitter keeps the object inside its cell, so its position name stays true.
        slack = 0.5 - r
        cx = (col + 0.5 + rng.uniform(-0.6, 0.6) * slack) / 3
        cy = (row + 0.5 + rng.uniform(-0.6, 0.6) * slack) / 3
        rad = r / 3
        objects.append(
            {
                "shape": shapes[int(rng.integers(len(shapes)))],
                "colour": colours[int(rng.integers(len(colours)))],
                "size": size,
                "position": POSITIONS[int(cell)],
                "row": row,
                "col": col,
                "angle": round(float(rng.uniform(-12, 12)), 2),
                "bbox": [round(cx - rad, 4), round(cy - rad, 4), round(cx + rad, 4), round(cy + rad, 4)],
            }
        )
    return objects


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    elif shape == "diamond":
        pts = [(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)]
    elif shape == "triangle":
        # Lowered a little so the visual centre sits at (cx, cy).
        pts = [(math.cos(a), math.sin(a) + 0.12) for a in np.deg2rad([-90, 30, 150])]
    elif shape == "hexagon":
        pts = [(0.95 * math.cos(a), 0.95 * math.sin(a)) for a in np.deg2rad(np.arange(0, 360, 60))]
    elif shape == "star":
        radii = np.tile([1.0, 0.42], 5)
        angles = np.deg2rad(-90 + 36 * np.arange(10))
        pts = [(rr * math.cos(a), rr * math.sin(a)) for rr, a in zip(radii, angles)]
    elif shape == "cross":
        w = 0.3
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w),
               (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]  # fmt: skip
    else:
        raise ValueError(f"unknown shape {shape!r}")
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + r * (c * x - s * y), cy + r * (s * x + c * y)) for x, y in pts]


def render_image(
    objects: Sequence[dict[str, Any]],
    image_size: int = 64,
    background: int = 128,
    noise_sigma: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Image.Image:
    """Draw object records on a grey background.

    Parameters
    ----------
    objects : sequence of dict
        Records as returned by :func:`sample_objects`.
    image_size : int, default=64
        Side of the square RGB image.
    background : int, default=128
        Grey level of the background.
    noise_sigma : float, default=0
        Standard deviation of additive Gaussian pixel noise (needs ``rng``).
    rng : numpy.random.Generator, optional

    Returns
    -------
    PIL.Image.Image
        An RGB image.
    """
    # Supersampling then box-downsampling gives anti-aliased edges cheaply.
    ss = 4 if image_size <= 96 else (2 if image_size <= 320 else 1)
    side = image_size * ss
    canvas = Image.new("RGB", (side, side), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        x0, y0, x1, y1 = obj["bbox"]
        cx, cy, r = (x0 + x1) / 2 * side, (y0 + y1) / 2 * side, (x1 - x0) / 2 * side
        fill = COLOURS[obj["colour"]][0]
        if obj["shape"] == "circle":
            draw.ellipse([cx - 0.9 * r, cy - 0.9 * r, cx + 0.9 * r, cy + 0.9 * r], fill=fill)
        else:
            draw.polygon(_polygon(obj["shape"], cx, cy, r, obj.get("angle", 0.0)), fill=fill)
    img = canvas.resize((image_size, image_size), Image.Resampling.BOX) if ss > 1 else canvas
    if noise_sigma > 0:
        if rng is None:
            raise ValueError("noise_sigma > 0 needs an rng")
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, noise_sigma, (image_size, image_size, 1))
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    return img


# ---------------------------------------------------------------------------------------
# captions
# ---------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _with_article(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def _join(items: Sequence[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _noun_phrase(
    obj: dict[str, Any],
    rng: np.random.Generator,
    p_size: float = 0.7,
    p_colour: float = 1.0,
    p_position: float = 0.0,
) -> str:
    words = []
    if rng.random() < p_size:
        words.append(_pick(rng, SIZES[obj["size"]][1]))
    if rng.random() < p_colour:
        words.append(_pick(rng, COLOURS[obj["colour"]][1]))
    words.append(_pick(rng, SHAPES[obj["shape"]]))
    phrase = _with_article(" ".join(words))
    if rng.random() < p_position:
        phrase += " " + _pick(rng, _POSITION_PHRASES[obj["position"]])
    return phrase


def _order(objects: Sequence[dict], rng: np.random.Generator) -> list[dict]:
    # Half the captions list objects in reading order, half in random order.
    if rng.random() < 0.5:
        return list(objects)
    return [objects[i] for i in rng.permutation(len(objects))]


def _count_phrase(n: int, rng: np.random.Generator) -> str:
    noun = _pick(rng, ("shape", "object", "figure")) + ("s" if n > 1 else "")
    return f"{_COUNT_WORDS[n]} {noun}"


def _family_full(objects: Sequence[dict], rng: np.random.Generator) -> str:
    items = [_noun_phrase(o, rng, p_size=0.75, p_position=0.85) for o in _order(objects, rng)]
    listing = _join(items)
    template = int(rng.integers(4))
    if template == 0:
        return _cap(listing) + "."
    if template == 1:
        return f"There is {listing}."
    if template == 2:
        return f"An image showing {listing}."
    return f"{_cap(_count_phrase(len(objects), rng))}: {listing}."


def _family_attributes(objects: Sequence[dict], rng: np.random.Generator) -> str:
    items = [_noun_phrase(o, rng, p_size=0.6) for o in _order(objects, rng)]
    listing = _join(items)
    template = int(rng.integers(4))
    bg = _pick(rng, ("gray", "grey"))
    if template == 0:
        return f"{_cap(_count_phrase(len(objects), rng))} on a {bg} background: {listing}."
    if template == 1:
        return f"A picture of {listing}."
    if template == 2:
        return f"{_cap(listing)} on a {bg} background."
    return f"Simple shapes: {listing}."


def _family_partial(objects: Sequence[dict], rng: np.random.Generator) -> str:
    n = len(objects)
    if n == 1:
        phrase = _noun_phrase(objects[0], rng, p_size=0.8, p_position=0.6)
        return _cap(_pick(rng, (f"a single {phrase[phrase.index(' ') + 1:]}.", f"just one shape: {phrase}.")))
    k = int(rng.integers(1, n))  # a strict subset: the caption alone cannot pin the image down
    chosen = [objects[i] for i in np.sort(rng.choice(n, size=k, replace=False))]
    listing = _join([_noun_phrase(o, rng, p_size=0.5, p_position=0.5) for o in chosen])
    template = int(rng.integers(3))
    if template == 0:
        return f"{_cap(listing)} among other shapes."
    if template == 1:
        return f"The picture includes {listing}."
    return f"Among the shapes there is {listing}."


def _relation(a: dict, b: dict) -> str | None:
    if a["col"] < b["col"]:
        return "to the left of"
    if a["col"] > b["col"]:
        return "to the right of"
    if a["row"] < b["row"]:
        return "above"
    if a["row"] > b["row"]:
        return "below"
    return None


def _family_relation(objects: Sequence[dict], rng: np.random.Generator) -> str:
    if len(objects) < 2:
        obj = objects[0]
        phrase = _noun_phrase(obj, rng, p_size=0.8)
        where = _pick(rng, _POSITION_PHRASES[obj["position"]])
        return _cap(f"{phrase} alone {where}.")
    i, j = rng.choice(len(objects), size=2, replace=False)
    a, b = objects[int(i)], objects[int(j)]
    # Objects sit in distinct cells, so some relation always holds.
    rel = _relation(a, b)
    first = _noun_phrase(a, rng, p_size=0.5, p_colour=0.85)
    second = _noun_phrase(b, rng, p_size=0.5, p_colour=0.85)
    if rng.random() < 0.5:
        return _cap(f"{first} {rel} {second}.")
    return _cap(f"{first} is {rel} {second}.") if rel in ("above", "below") else _cap(f"{first} sits {rel} {second}.")


def _family_count(objects: Sequence[dict], rng: np.random.Generator) -> str:
    n = len(objects)
    obj = objects[int(rng.integers(n))]
    where = _pick(rng, _POSITION_PHRASES[obj["position"]])
    phrase = _noun_phrase(obj, rng, p_size=0.6)
    if n == 1:
        return _cap(f"only one shape, {phrase}, {where}.")
    template = int(rng.integers(2))
    if template == 0:
        return f"{_cap(_count_phrase(n, rng))}; the one {where} is {phrase}."
    return f"{_cap(_count_phrase(n, rng))} including {phrase} {where}."


_FAMILIES = (_family_full, _family_attributes, _family_partial, _family_relation, _family_count)


def make_captions(objects: Sequence[dict[str, Any]], rng: np.random.Generator, n_captions: int = 5,
                  families: Sequence[Callable[[Sequence[dict], np.random.Generator], str]] = _FAMILIES,
                  ) -> list[str]:
    """Write ``n_captions`` distinct, true captions of one image.

    Parameters
    ----------
    objects : sequence of dict
        The image's object records.
    rng : numpy.random.Generator
    n_captions : int, default=5
    families : sequence of callables, default: the five families of the module docstring
        Each writes one caption from ``(objects, rng)``; caption ``i`` comes from family
        ``i % len(families)``.

    Returns
    -------
    list of str
        One caption per family (cycling through the families), in random order.
    """
    captions: list[str] = []
    for i in range(n_captions):
        family = families[i % len(families)]
        text = family(objects, rng)
        # Rewording is cheap; a few tries almost always give a caption not yet used.
        for attempt in range(20):
            if text not in captions:
                break
            text = (family if attempt < 10 else _family_full)(objects, rng)
        captions.append(text)
    return [captions[i] for i in rng.permutation(len(captions))]


def dense_caption(objects: Sequence[dict[str, Any]], noisy_background: bool = False) -> str:
    """Describe every object with all its attributes (the D2S dense caption).

    Parameters
    ----------
    objects : sequence of dict
    noisy_background : bool, default=False

    Returns
    -------
    str
        E.g. ``"An image of two objects on a plain gray background. In the top left there
        is a large red circle. In the center there is a small blue star."``
    """
    n = len(objects)
    noun = "object" if n == 1 else "objects"
    bg = "noisy" if noisy_background else "plain"
    parts = [f"An image of {_COUNT_WORDS[n]} {noun} on a {bg} gray background."]
    for o in sorted(objects, key=lambda o: (o["row"], o["col"])):
        where = _POSITION_PHRASES[o["position"]][0]
        parts.append(f"{_cap(where)} there is {_with_article(o['size'] + ' ' + o['colour'] + ' ' + o['shape'])}.")
    return " ".join(parts)


def describe_objects(objects: Sequence[dict[str, Any]], positions: bool = True) -> str:
    """Canonical caption naming every object's size, colour, shape (and position).

    This is the positive twin of :func:`swap_caption`: both use the same wording.

    Parameters
    ----------
    objects : sequence of dict
    positions : bool, default=True

    Returns
    -------
    str
    """
    items = []
    for o in sorted(objects, key=lambda o: (o["row"], o["col"])):
        phrase = _with_article(f"{o['size']} {o['colour']} {o['shape']}")
        if positions:
            phrase += " " + _POSITION_PHRASES[o["position"]][0]
        items.append(phrase)
    return _cap(_join(items)) + "."


def swap_caption(
    objects: Sequence[dict[str, Any]],
    kind: str = "attribute",
    rng: np.random.Generator | int | None = None,
    positions: bool = True,
) -> str:
    """Hard-negative caption: one object's colour (``"attribute"``) or shape
    (``"category"``) replaced by another value.

    The result is false for the image: the multiset of (size, colour, shape) triples
    changes, and with ``positions`` the changed object is also pinned to its cell.

    Parameters
    ----------
    objects : sequence of dict
        The image's object records.
    kind : {"attribute", "category"}, default="attribute"
    rng : numpy.random.Generator, int or None
        Chooses the object and the new value.
    positions : bool, default=True
        Mention positions, as in :func:`describe_objects`.

    Returns
    -------
    str
    """
    if kind not in ("attribute", "category"):
        raise ValueError(f"kind must be 'attribute' or 'category', got {kind!r}")
    if not objects:
        raise ValueError("no object to swap")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    swapped = [dict(o) for o in objects]
    i = int(rng.integers(len(swapped)))
    key, vocab = ("colour", list(COLOURS)) if kind == "attribute" else ("shape", list(SHAPES))
    choices = [v for v in vocab if v != swapped[i][key]]
    swapped[i][key] = choices[int(rng.integers(len(choices)))]
    return describe_objects(swapped, positions=positions)


# ---------------------------------------------------------------------------------------
# the data set
# ---------------------------------------------------------------------------------------


def _split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"splits must be three non-negative fractions summing to 1, got {fractions}")
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    return n - n_val - n_test, n_val, n_test


_CARD = """# Synthetic compositional shapes (mvlearn-plus retrieval)

Generated by `retrieval.data.make_synthetic` (generator version {version}) with seed {seed}:
{n_images} images of {image_size}x{image_size} pixels, {n_captions} captions.
Splits: train {n_train}, val {n_val}, test {n_test} images. Every image and caption is
procedurally generated; there is no third-party content.

## Content
* 1-4 objects per image (probabilities 0.2/0.3/0.3/0.2), each in its own cell of a 3x3
  grid, on a plain or noisy grey background.
* Shapes: {shapes}. Colours: {colours}. Sizes: small, large.
  Positions: {positions}.
* Five captions per image, all true, one from each family: every object (mostly with
  positions); every object without positions; a strict subset of the objects
  ("... among other shapes", deliberately ambiguous); a spatial relation between two
  objects; the count plus one object singled out by its position. Synonyms, random
  object order and optional attributes vary the wording.
* `dense_captions.jsonl`: one dense caption per image listing every object with size,
  colour, shape and position (D2S teacher input).
* `objects.jsonl`: the object records (shape, colour, size, position, row, col, angle,
  bbox as fractions of the image side); `retrieval.data.swap_caption` turns them into
  attribute- or category-swapped hard negatives (DCAR).

## Layout
```
images/<split>/<index>.png      RGB PNG
captions.tsv                    relative_path<TAB>caption<TAB>split (paths relative to images/)
dense_captions.jsonl            {{"image": relative_path, "text": ...}}
objects.jsonl                   {{"image": relative_path, "objects": [...]}}
metadata.json                   generator parameters and counts
```
Load with `retrieval.data.load_folder(root, split="train")` or `load_split(root, "test")`.

## Intended use and caveats
Offline tests and method sanity checks (does a method learn compositional
attribute-object binding, does noise hurt, does a hard negative get ranked lower).
Numbers on this set say nothing about natural images. Partial captions can be true of
several images, so recall below 100% is expected even for a perfect model.
"""


def make_synthetic(
    output_dir: str | os.PathLike[str],
    n_images: int = 1000,
    seed: int = 0,
    image_size: int = 64,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    verbose: bool = False,
) -> Path:
    """Generate the synthetic compositional set in the folder format.

    Parameters
    ----------
    output_dir : str or os.PathLike
        Created if needed; existing files of the set are overwritten.
    n_images : int, default=1000
    seed : int, default=0
        Same seed, same files. Image ``i`` depends only on ``(seed, i)``, so a smaller
        set shares its images with a larger one (the split assignment differs).
    image_size : int, default=64
    splits : sequence of three floats, default=(0.8, 0.1, 0.1)
        Train / val / test fractions of the images.
    verbose : bool, default=False
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``output_dir``, ready for :func:`~retrieval.data.load_folder`.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    n_train, n_val, n_test = _split_sizes(n_images, splits)
    split_of = assign_splits(n_images, seed, splits)
    root = Path(output_dir)
    rows: list[tuple[str, str, str]] = []
    dense: dict[str, str] = {}
    records: dict[str, list] = {}
    for i in progress(range(n_images), verbose, "synthetic images"):
        rng = np.random.default_rng([seed, i])
        objects = sample_objects(rng)
        background = int(rng.integers(85, 171))
        sigma = float(rng.choice([0.0, 0.0, 6.0, 12.0]))
        img = render_image(objects, image_size, background, sigma, rng)
        rel = save_image(root, img, split_of[i], i)
        for caption in make_captions(objects, rng):
            rows.append((rel, caption, split_of[i]))
        dense[rel] = dense_caption(objects, noisy_background=sigma > 0)
        records[rel] = objects

    meta = {
        "generator": "retrieval.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n_images": n_images,
        "image_size": image_size,
        "captions_per_image": 5,
        "splits": {"train": n_train, "val": n_val, "test": n_test},
        "shapes": list(SHAPES),
        "colours": list(COLOURS),
        "sizes": list(SIZES),
        "positions": list(POSITIONS),
    }
    card = _CARD.format(
        version=GENERATOR_VERSION,
        seed=seed,
        n_images=n_images,
        image_size=image_size,
        n_captions=len(rows),
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        shapes=", ".join(SHAPES),
        colours=", ".join(COLOURS),
        positions=", ".join(POSITIONS),
    )
    write_set(root, rows, dense, records, meta, card)
    logger.info("synthetic set: %d images (%d/%d/%d) in %s", n_images, n_train, n_val, n_test, root)
    return root


def assign_splits(n_units: int, seed: int, splits: Sequence[float] = (0.8, 0.1, 0.1)) -> list[str]:
    """The split name of each of ``n_units`` images (or image groups), drawn from ``seed``.

    Parameters
    ----------
    n_units : int
    seed : int
    splits : sequence of three floats, default=(0.8, 0.1, 0.1)
        Train / val / test fractions.

    Returns
    -------
    list of str
        ``"train"``, ``"val"`` or ``"test"`` per unit, in unit order.
    """
    n_train, n_val, _ = _split_sizes(n_units, splits)
    split_of = np.empty(n_units, dtype=object)
    order = np.random.default_rng(seed).permutation(n_units)
    split_of[order[:n_train]] = "train"
    split_of[order[n_train : n_train + n_val]] = "val"
    split_of[order[n_train + n_val :]] = "test"
    return [str(name) for name in split_of]


def progress(iterable, verbose: bool, desc: str):
    """``iterable`` behind a tqdm progress bar when ``verbose``."""
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="img")


def save_image(root: Path, img: Image.Image, split: str, index: int) -> str:
    """Write image ``index`` of a generated set as ``images/<split>/<index>.png``; returns the
    path relative to ``images/``."""
    rel = f"{split}/{index:05d}.png"
    path = root / IMAGES_DIR / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, compress_level=1)
    return rel


def write_set(root: Path, rows: list[tuple[str, str, str]], dense: dict[str, str],
              records: dict[str, list], meta: dict[str, Any], card: str) -> None:
    """Write the text files of a generated set: the folder format, ``metadata.json`` and the
    card ``README.md``."""
    for name in ("train", "val", "test"):
        (root / IMAGES_DIR / name).mkdir(parents=True, exist_ok=True)
    write_folder(root, rows, dense_captions=dense, objects=records)
    with open(root / "metadata.json", "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
    (root / "README.md").write_text(card, encoding="utf-8")
