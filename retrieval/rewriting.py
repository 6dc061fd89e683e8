"""Hard-negative captions: attribute and category swaps (DCAR, spec 5.4).

A *swapped twin* of a true caption changes one thing, so that it no longer describes the
image: an **attribute** swap changes a colour or another attribute word and keeps the object
category; a **category** swap replaces the object noun by another of the same domain. Twins
train DCAR's category-aware loss and measure fine-grained discrimination for any method
(:mod:`retrieval.fine_grained`).

Two sources:

* the synthetic set's object records (exact: the ground truth says what is in the image),
  through :func:`twins_from_objects`;
* a small built-in lexicon for real captions (:class:`CaptionRewriter`): colour and common
  attribute words, and category nouns grouped by domain (people, animals, vehicles, food,
  furniture...). A caption with nothing to swap is left alone and flagged (``None``).

References
----------
.. [1] Wang et al., "Dual Prompt Learning with Joint Category-Attribute Reweighting for
   Fine-grained Cross-modal Retrieval" (DCAR), ACM MM 2025.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["ATTRIBUTE_GROUPS", "CATEGORY_DOMAINS", "CaptionRewriter", "twins_from_objects",
           "positive_from_objects", "TWIN_KINDS"]

TWIN_KINDS = ("attribute", "category")

#: Attribute words that may replace each other (one group = one attribute type).
ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "colour": ("red", "green", "blue", "yellow", "purple", "orange", "white", "black", "brown",
               "pink", "grey", "gray"),
    "size": ("small", "large", "big", "little", "tiny", "huge", "tall", "short"),
    "age": ("young", "old", "elderly"),
    "material": ("wooden", "metal", "plastic", "glass", "stone"),
}

#: Category nouns that may replace each other (one group = one domain), singular and plural.
CATEGORY_DOMAINS: dict[str, tuple[str, ...]] = {
    "person": ("man", "woman", "boy", "girl", "child", "person", "lady", "guy"),
    "people": ("men", "women", "boys", "girls", "children", "people", "kids"),
    "animal": ("dog", "cat", "horse", "cow", "sheep", "bird", "elephant", "bear", "zebra",
               "giraffe"),
    "animals": ("dogs", "cats", "horses", "cows", "birds", "elephants", "bears", "zebras",
                "giraffes"),
    "vehicle": ("car", "bus", "truck", "bicycle", "motorcycle", "train", "boat", "airplane",
                "bike"),
    "food": ("pizza", "sandwich", "cake", "banana", "apple", "donut", "hot dog",
             "broccoli"),
    "furniture": ("chair", "table", "bench", "couch", "bed", "desk"),
    "shape": ("circle", "square", "triangle", "cross", "star", "hexagon"),
}


def _word_pattern(words: Sequence[str]) -> re.Pattern:
    # Longest first, so "hot dog" wins over "dog"; whole words only.
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b({alternatives})\b", re.IGNORECASE)


def _draw_distinct(draw, count: int, exclude: str | None = None) -> list[str]:
    """Up to ``count`` distinct results of ``draw()`` (``None`` stops: nothing to swap), with
    a few tries per slot, since random swaps may repeat."""
    found: list[str] = []
    for _ in range(4 * count):
        if len(found) == count:
            break
        twin = draw()
        if twin is None:
            break
        if twin != exclude and twin not in found:
            found.append(twin)
    return found


def _match_case(replacement: str, original: str) -> str:
    return replacement.capitalize() if original[:1].isupper() else replacement


@dataclass
class CaptionRewriter:
    """Swap one attribute word or one category noun of a caption (lexicon-based).

    Parameters
    ----------
    attribute_groups : dict of str to tuple of str, optional
        Default :data:`ATTRIBUTE_GROUPS`.
    category_domains : dict of str to tuple of str, optional
        Default :data:`CATEGORY_DOMAINS`.

    Examples
    --------
    >>> rewriter = CaptionRewriter()
    >>> rewriter.swap("A red car parked by a tree.", "attribute", rng=0) != "A red car parked by a tree."
    True
    >>> rewriter.swap("Nothing to change here.", "category") is None
    True
    """

    attribute_groups: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(ATTRIBUTE_GROUPS))
    category_domains: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(CATEGORY_DOMAINS))

    def __post_init__(self) -> None:
        self._tables = {"attribute": self.attribute_groups, "category": self.category_domains}
        self._patterns = {kind: _word_pattern([w for words in table.values() for w in words])
                          for kind, table in self._tables.items()}

    def _group_of(self, kind: str, word: str) -> tuple[str, ...]:
        lowered = word.lower()
        for words in self._tables[kind].values():
            if lowered in words:
                return words
        return ()

    def swappable(self, caption: str, kind: str) -> bool:
        """Whether ``caption`` has a word of this kind to swap."""
        return self._check_kind(kind).search(caption) is not None

    def _check_kind(self, kind: str) -> re.Pattern:
        if kind not in self._patterns:
            raise ValueError(f"kind must be one of {TWIN_KINDS}, got {kind!r}")
        return self._patterns[kind]

    def swap(self, caption: str, kind: str, rng: np.random.Generator | int | None = None
             ) -> str | None:
        """``caption`` with one word of ``kind`` replaced by another of its group, or
        ``None`` when there is nothing to swap (the caption is left alone, flagged)."""
        matches = list(self._check_kind(kind).finditer(caption))
        if not matches:
            return None
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        match = matches[int(rng.integers(len(matches)))]
        word = match.group(0)
        choices = [w for w in self._group_of(kind, word) if w != word.lower()]
        # "gray"/"grey" and similar spellings name the same thing.
        choices = [w for w in choices if {w, word.lower()} != {"grey", "gray"}]
        if not choices:
            return None
        new = _match_case(choices[int(rng.integers(len(choices)))], word)
        return caption[:match.start()] + new + caption[match.end():]

    def twins(self, caption: str, counts: dict[str, int], rng: np.random.Generator | int |
              None = None) -> dict[str, list[str]]:
        """Up to ``counts[kind]`` distinct swapped twins of each kind (fewer when the caption
        offers fewer; an empty list flags a caption with nothing to swap)."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return {kind: _draw_distinct(lambda: self.swap(caption, kind, rng), count, caption)
                for kind, count in counts.items()}


def positive_from_objects(objects: Sequence[dict[str, Any]]) -> str:
    """The canonical true caption of a synthetic image (the wording its twins share)."""
    from retrieval.data.synthetic import describe_objects

    return describe_objects(objects)


def twins_from_objects(objects: Sequence[dict[str, Any]], counts: dict[str, int],
                       rng: np.random.Generator | int | None = None) -> dict[str, list[str]]:
    """Swapped twins of a synthetic image from its object records (ground truth).

    Attribute twins change one object's colour, category twins one object's shape; both use
    the canonical wording of :func:`positive_from_objects`, so only the swapped word differs.
    """
    from retrieval.data.synthetic import swap_caption

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    result: dict[str, list[str]] = {}
    for kind, count in counts.items():
        if kind not in TWIN_KINDS:
            raise ValueError(f"kind must be one of {TWIN_KINDS}, got {kind!r}")
        result[kind] = _draw_distinct(lambda: swap_caption(objects, kind, rng), count) \
            if objects else []
    return result
