"""Catalogue of the multi-view feature data sets that :func:`load_dataset` downloads.

Each record names the published file (pinned URL, size, SHA-256; see :mod:`._fetch`), what the
loader should find in it (used to warn when a file has been replaced by a different version)
and what the file itself does not say: the view names and the preprocessing kind of spec
section 0.2. The dataset cards (``datasets/clustering/<name>.md``) carry the provenance, the
citation and the caveats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._fetch import RemoteFile, github_file

__all__ = ["DatasetInfo", "SHIPPED", "normalise_name"]


@dataclass(frozen=True)
class DatasetInfo:
    """Description of one catalogued data set (downloaded on first use).

    Attributes
    ----------
    name : str
        Canonical lowercase key (``load_dataset(name)``).
    remote : RemoteFile
        The published ``.mat`` file: its place in the data home, URL, size and SHA-256.
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
    remote: RemoteFile
    title: str
    n_samples: int
    n_features: tuple[int, ...]
    n_classes: int
    kind: str
    view_names: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        """Path of the ``.mat`` file inside the data home."""
        return self.remote.path

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


# Pinned commits of the repositories that published the files. Where only an abbreviated commit
# is known, GitHub resolves it; the SHA-256 pins the bytes either way.
_CZ = ("ChuanbinZhang/Multi-view-datasets", "03ead31e6538322e4e0701c3c28a01595c1a015d")
_UE = ("UeharaSetsuYu/Multi-view-Datasets", "03e5a826bd06")

_RECORDS = (
    DatasetInfo(
        "3sources",
        github_file("clustering/3Sources.mat", *_CZ, "3Sources.mat",
                    "8a94f0e554c5782bc87561314f1bad8ca206910125734f4dbe2492956528c9ae", 114521),
        "3Sources (BBC, Reuters, Guardian news)",
        169, (3560, 3631, 3068), 6, "text", ("bbc", "reuters", "guardian"),
    ),
    DatasetInfo(
        "bbcsport",
        github_file("clustering/bbcsport_2view.mat", "kunzhan/SDSNE", "8566a0f4fa5d",
                    "data/bbcsport_2view.mat",
                    "b0a09b60a3a81ad430ff49b2dfcc2abbd5c8969b33444cc05ee3f82e2f126fc7", 596677),
        "BBCSport, 2 views (article segments)",
        544, (3183, 3203), 5, "text", ("segment1", "segment2"), ("bbcsport2view",),
    ),
    DatasetInfo(
        "reuters1200",
        github_file("clustering/Reuters-1200.mat", *_CZ, "Reuters-1200.mat",
                    "cf549b72a66d7418a639a940899993c052bab9ec868fd493451cf85cd0d81d14", 2611831),
        "Reuters multilingual, 1200-document subset",
        1200, (2000,) * 5, 6, "text", ("en", "fr", "de", "it", "es"), ("reuters",),
    ),
    DatasetInfo(
        "handwritten",
        github_file("clustering/Handwritten.mat", *_CZ, "Handwritten.mat",
                    "6092a69891afa22785bffd5a4348f52d49a764aa5d40751ec2c4dc0f6ed48a44", 3483654),
        "UCI Handwritten digits (mfeat)",
        2000, (216, 76, 64, 6, 240, 47), 10, "dense", ("fac", "fou", "kar", "mor", "pix", "zer"),
        ("mfeat",),
    ),
    DatasetInfo(
        "100leaves",
        github_file("clustering/100Leaves.mat", *_CZ, "100Leaves.mat",
                    "4af6d9f6588a720df763580d273dc08014476ac5f64570b0bada8b63b9952f45", 1048799),
        "One-hundred plant species leaves",
        1600, (64, 64, 64), 100, "dense",
    ),
    DatasetInfo(
        "webkb",
        github_file("clustering/webkb.mat", "zskong/Multi-view-data", "7e06a445cc68",
                    "data/webkb.mat",
                    "ea1ac7954dd74ba7be9a7786666db26a9f34f84dce8f0bf267e1e952d28559c6", 21111),
        "WebKB, 203-page subset",
        203, (1703, 230, 230), 4, "text", ("content", "anchor", "title"),
    ),
    DatasetInfo(
        "mnist_usps",
        github_file("clustering/MNIST_USPS.mat", "myliu2048/DSE-FDMC", "b78d8506cad4",
                    "data/MNIST_USPS.mat",
                    "0130ae9ce7d395543df841d25e84d99354dcb77993006d390d3c42d4c2e3f056", 3823896),
        "MNIST-USPS paired digits",
        5000, (784, 784), 10, "dense", ("mnist", "usps"),
    ),
    DatasetInfo(
        "movies",
        github_file("clustering/Movies.mat", *_CZ, "Movies.mat",
                    "7922e27da06361c0d74b5dd6477e6485d1f73a96cf0164e280e5b38864ffcbad", 54712),
        "Movies (keywords, actors)",
        617, (1878, 1398), 17, "text", ("keywords", "actors"),
    ),
    DatasetInfo(
        "prokaryotic",
        github_file("clustering/Prokaryotic.mat", *_CZ, "Prokaryotic.mat",
                    "20471598a8c819fb35e94f102cda4300a3b4f2cd185d3cbe0ea06e0349a7ed7c", 3105301),
        "Prokaryotic phyla",
        551, (393, 3, 438), 4, "dense",
    ),
    DatasetInfo(
        "proteinfold",
        github_file("clustering/ProteinFold.mat", *_CZ, "ProteinFold.mat",
                    "07522212f7fab626684ab07b030b47902a5ae75d1b4215ec947e919dcfe05dcf", 1717660),
        "Protein fold",
        694, (27,) * 12, 27, "dense",
    ),
    DatasetInfo(
        "wikipedia",
        github_file("clustering/Wikipedia.mat", *_CZ, "Wikipedia.mat",
                    "6eed8527704611dff921243d86dbec5621312b8c6636086ae3677508b5d3cb03", 1075054),
        "Wikipedia articles (image SIFT-BoW, text LDA)",
        2866, (128, 10), 10, "dense", ("image", "text"),
    ),
    DatasetInfo(
        "mnist4",
        github_file("clustering/MNIST-4.mat", *_CZ, "MNIST-4.mat",
                    "7dbb45040d6ecd41f68f6076efeabe78b466721894dde382b9a258ce10b22502", 2133127),
        "MNIST 4-class, 3 feature extractors",
        4000, (30, 9, 30), 4, "dense",
    ),
    DatasetInfo(
        "ccv",
        github_file("clustering/CCV.mat", *_UE, "CCV.mat",
                    "1a18848a34c5d6d6f054c24cfbda7a9936ff1ca5060e2b9cc7022a9a8c6a415a", 3114425),
        "Columbia Consumer Video (3 x 20-d)",
        6773, (20, 20, 20), 20, "dense",
    ),
    DatasetInfo(
        "synthetic3d",
        github_file("clustering/synthetic3d.mat", *_UE, "synthetic3d.mat",
                    "f5ebb44be9d98550877622b2f6eb4b70ff3dc9a1de3c3797bf3fad9ebb40ba9b", 53768),
        "Synthetic 3-view toy data",
        600, (3, 3, 3), 3, "dense",
    ),
)

SHIPPED: dict[str, DatasetInfo] = {record.name: record for record in _RECORDS}
