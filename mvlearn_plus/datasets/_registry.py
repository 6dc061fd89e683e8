"""Catalogue of the multi-view data sets shipped in the top-level ``datasets/`` folder.

Each record names the file, what the loader should find in it (used to warn when a file has
been replaced by a different version) and what the file itself does not say: the view names
and the preprocessing kind of spec section 0.2. The dataset cards
(``datasets/clustering/<name>.md``) carry the provenance and the caveats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DatasetInfo", "SHIPPED", "normalise_name"]


@dataclass(frozen=True)
class DatasetInfo:
    """Description of one shipped data set.

    Attributes
    ----------
    name : str
        Canonical lowercase key (``load_dataset(name)``).
    filename : str
        Path of the ``.mat`` file relative to the data root (``datasets/``).
    title : str
        Human-readable name.
    n_samples, n_features, n_classes : int, tuple of int, int
        What the file holds: samples, per-view dimensions in stored order, classes.
    kind : {"text", "dense"}
        Preprocessing kind of spec section 0.2 ("text": count-like or tf-idf views).
    view_names : tuple of str or None
        Meaningful view names in stored order; None means ``view0``, ``view1``, ...
    aliases : tuple of str
        Further accepted names (normalised like user input).
    """

    name: str
    filename: str
    title: str
    n_samples: int
    n_features: tuple[int, ...]
    n_classes: int
    kind: str
    view_names: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def card(self) -> str:
        """Path of the dataset card, relative to the data root."""
        return f"clustering/{self.name}.md"


def normalise_name(name: str) -> str:
    """Canonical form for name lookups: lowercase, without ``.mat``, ``-``, ``_`` or spaces."""
    key = name.strip().lower()
    if key.endswith(".mat"):
        key = key[: -len(".mat")]
    return re.sub(r"[-_\s]+", "", key)


_RECORDS = (
    DatasetInfo(
        "3sources", "clustering/3Sources.mat", "3Sources (BBC, Reuters, Guardian news)",
        169, (3560, 3631, 3068), 6, "text", ("bbc", "reuters", "guardian"),
    ),
    DatasetInfo(
        "bbcsport", "clustering/bbcsport_2view.mat", "BBCSport, 2 views (article segments)",
        544, (3183, 3203), 5, "text", ("segment1", "segment2"), ("bbcsport2view",),
    ),
    DatasetInfo(
        "reuters1200", "clustering/Reuters-1200.mat", "Reuters multilingual, 1200-document subset",
        1200, (2000,) * 5, 6, "text", ("en", "fr", "de", "it", "es"), ("reuters",),
    ),
    DatasetInfo(
        "handwritten", "clustering/Handwritten.mat", "UCI Handwritten digits (mfeat)",
        2000, (216, 76, 64, 6, 240, 47), 10, "dense", ("fac", "fou", "kar", "mor", "pix", "zer"),
        ("mfeat",),
    ),
    DatasetInfo(
        "100leaves", "clustering/100Leaves.mat", "One-hundred plant species leaves",
        1600, (64, 64, 64), 100, "dense",
    ),
    DatasetInfo(
        "webkb", "clustering/webkb.mat", "WebKB, 203-page subset",
        203, (1703, 230, 230), 4, "text", ("content", "anchor", "title"),
    ),
    DatasetInfo(
        "mnist_usps", "clustering/MNIST_USPS.mat", "MNIST-USPS paired digits",
        5000, (784, 784), 10, "dense", ("mnist", "usps"),
    ),
    DatasetInfo(
        "movies", "clustering/Movies.mat", "Movies (keywords, actors)",
        617, (1878, 1398), 17, "text", ("keywords", "actors"),
    ),
    DatasetInfo(
        "prokaryotic", "clustering/Prokaryotic.mat", "Prokaryotic phyla",
        551, (393, 3, 438), 4, "dense",
    ),
    DatasetInfo(
        "proteinfold", "clustering/ProteinFold.mat", "Protein fold",
        694, (27,) * 12, 27, "dense",
    ),
    DatasetInfo(
        "wikipedia", "clustering/Wikipedia.mat", "Wikipedia articles (image SIFT-BoW, text LDA)",
        2866, (128, 10), 10, "dense", ("image", "text"),
    ),
    DatasetInfo(
        "mnist4", "clustering/MNIST-4.mat", "MNIST 4-class, 3 feature extractors",
        4000, (30, 9, 30), 4, "dense",
    ),
    DatasetInfo(
        "ccv", "clustering/CCV.mat", "Columbia Consumer Video (3 x 20-d)",
        6773, (20, 20, 20), 20, "dense",
    ),
    DatasetInfo(
        "synthetic3d", "clustering/synthetic3d.mat", "Synthetic 3-view toy data",
        600, (3, 3, 3), 3, "dense",
    ),
)

SHIPPED: dict[str, DatasetInfo] = {record.name: record for record in _RECORDS}
