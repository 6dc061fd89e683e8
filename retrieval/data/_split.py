"""The in-memory form every image-caption loader returns: :class:`RetrievalSplit`.

A split is a list of unique images in a canonical order and a list of captions, each
caption carrying the index of the image it is paired with. Retrieval ground truth and
training pairs are both read from ``text_image_ids``; when noisy correspondence is
simulated (spec section 3) the clean labels are kept aside in ``clean_text_image_ids``
for analysis only.
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from .dense import load_dense_captions

__all__ = ["RetrievalSplit", "as_id_array", "check_images_exist", "without_ground_truth",
           "training_set_fingerprint"]


def as_id_array(ids: Any, name: str = "text_image_ids") -> np.ndarray:
    """Return ``ids`` as a new 1-D int64 array, refusing floats and other non-integers.

    Parameters
    ----------
    ids : array-like of int
        Image indices.
    name : str, default="text_image_ids"
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        A 1-D ``int64`` copy.

    Raises
    ------
    ValueError
        If the array is not 1-D or not of an integer dtype.
    """
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    # An empty list comes back as float64; that is still a valid (empty) id array.
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=True)


@dataclass(eq=False)
class RetrievalSplit:
    """Images, captions and the caption-to-image pairing of one split.

    Parameters
    ----------
    name : str
        Split name (``"train"``, ``"val"``, ``"test"`` ...).
    image_paths : list of str
        Absolute path of each unique image, in the canonical order of the split.
    image_keys : list of str
        Identifier of each image as written in the source (Karpathy relative path,
        ``captions.tsv`` relative path ...), aligned with ``image_paths``.
    captions : list of str
        All captions of the split.
    text_image_ids : numpy.ndarray of int64, shape (n_captions,)
        Index into ``image_paths`` of the image each caption is paired with. These are
        the training pairs and may be noisy (see :meth:`with_noise`).
    clean_text_image_ids : numpy.ndarray of int64 or None, default=None
        The clean pairing, kept when noise has been applied. For logging and analysis
        only; training and model selection must never read it.
    dense_captions : list of str or None, default=None
        One long description per image (D2S teacher input), aligned with the images.
    objects : list or None, default=None
        Per-image object records (synthetic set only), aligned with the images.
    negatives : list of list of str or None, default=None
        Per-image hard-negative captions published with the data (FDRD: four category
        swaps of the image's caption), aligned with the images; used by swapped-twin
        evaluation (:mod:`retrieval.fine_grained`).

    Attributes
    ----------
    n_images : int
        Number of unique images.
    n_captions : int
        Number of captions.
    image_captions : list of list of int
        Caption indices of each image, built from the clean pairing when present.

    Raises
    ------
    ValueError
        On inconsistent lengths, image indices out of range, or an image without any
        caption.
    """

    name: str
    image_paths: list[str]
    image_keys: list[str]
    captions: list[str]
    text_image_ids: np.ndarray
    clean_text_image_ids: np.ndarray | None = None
    dense_captions: list[str] | None = None
    objects: list | None = field(default=None, repr=False)
    negatives: list | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.image_paths = [str(p) for p in self.image_paths]
        self.image_keys = [str(k) for k in self.image_keys]
        self.captions = list(self.captions)
        self.text_image_ids = as_id_array(self.text_image_ids, "text_image_ids")
        if self.clean_text_image_ids is not None:
            self.clean_text_image_ids = as_id_array(
                self.clean_text_image_ids, "clean_text_image_ids"
            )
        n_img, n_cap = len(self.image_paths), len(self.captions)
        where = f"split {self.name!r}"
        if len(self.image_keys) != n_img:
            raise ValueError(
                f"{where}: {len(self.image_keys)} image_keys for {n_img} image_paths"
            )
        if self.text_image_ids.shape[0] != n_cap:
            raise ValueError(
                f"{where}: {self.text_image_ids.shape[0]} text_image_ids for {n_cap} captions"
            )
        for label, ids in (
            ("text_image_ids", self.text_image_ids),
            ("clean_text_image_ids", self.clean_text_image_ids),
        ):
            if ids is None:
                continue
            if ids.shape[0] != n_cap:
                raise ValueError(f"{where}: {label} has {ids.shape[0]} entries for {n_cap} captions")
            if n_cap and (ids.min() < 0 or ids.max() >= n_img):
                raise ValueError(
                    f"{where}: {label} must lie in [0, {n_img}), "
                    f"got range [{ids.min()}, {ids.max()}]"
                )
        bad = [i for i, c in enumerate(self.captions) if not isinstance(c, str)]
        if bad:
            raise ValueError(f"{where}: captions must be str; caption {bad[0]} is {type(self.captions[bad[0]])}")
        counts = np.bincount(self._ground_truth_ids(), minlength=n_img)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(
                f"{where}: {empty.size} image(s) have no caption, e.g. image {int(empty[0])} "
                f"({self.image_keys[int(empty[0])]!r})"
            )
        for label, per_image in (("dense_captions", self.dense_captions), ("objects", self.objects),
                                 ("negatives", self.negatives)):
            if per_image is not None and len(per_image) != n_img:
                raise ValueError(f"{where}: {len(per_image)} {label} for {n_img} images")
        if self.dense_captions is not None:
            self.dense_captions = list(self.dense_captions)
        if self.objects is not None:
            self.objects = list(self.objects)
        if self.negatives is not None:
            self.negatives = [[str(text) for text in per_image] for per_image in self.negatives]

    def _ground_truth_ids(self) -> np.ndarray:
        return self.text_image_ids if self.clean_text_image_ids is None else self.clean_text_image_ids

    @property
    def n_images(self) -> int:
        """Number of unique images."""
        return len(self.image_paths)

    @property
    def n_captions(self) -> int:
        """Number of captions."""
        return len(self.captions)

    @property
    def image_captions(self) -> list[list[int]]:
        """Caption indices of each image (clean pairing when noise was applied)."""
        ids = self._ground_truth_ids()
        order = np.argsort(ids, kind="stable")
        bounds = np.searchsorted(ids[order], np.arange(self.n_images + 1))
        return [order[bounds[i] : bounds[i + 1]].tolist() for i in range(self.n_images)]

    @property
    def is_noisy(self) -> bool:
        """Whether the pairing differs from the clean one somewhere."""
        return self.clean_text_image_ids is not None and bool(
            np.any(self.clean_text_image_ids != self.text_image_ids)
        )

    def with_noise(self, text_image_ids: np.ndarray) -> RetrievalSplit:
        """Return a copy whose training pairs are ``text_image_ids``.

        The current clean pairing (``clean_text_image_ids`` if set, else the current
        ``text_image_ids``) is kept so that the noise can be analysed later.

        Parameters
        ----------
        text_image_ids : array-like of int, shape (n_captions,)
            The (noisy) image index of each caption, e.g. from
            :func:`~retrieval.data.shuffle_captions` or
            :func:`~retrieval.data.load_noise_file`.

        Returns
        -------
        RetrievalSplit
            A new split sharing the image and caption lists' contents.
        """
        clean = self._ground_truth_ids().copy()
        return replace(
            self,
            image_paths=list(self.image_paths),
            image_keys=list(self.image_keys),
            captions=list(self.captions),
            text_image_ids=as_id_array(text_image_ids),
            clean_text_image_ids=clean,
        )

    def with_dense_captions(self, source: str | os.PathLike[str] | Sequence[str]) -> RetrievalSplit:
        """Return a copy with one dense caption per image attached (D2S's teacher input).

        Parameters
        ----------
        source : path or sequence of str
            A dense-caption ``.jsonl`` file in either form accepted by
            :func:`~retrieval.data.load_dense_captions`, or the captions themselves in image
            order.
        """
        if isinstance(source, (str, os.PathLike)):
            texts = load_dense_captions(source, self)
        else:
            texts = list(source)
        return replace(self, dense_captions=texts)

    def without_images(self, drop: Sequence[int]) -> RetrievalSplit:
        """Return the split without the images at positions ``drop``, and without their
        captions (and any noisy training pair pointing at them), reindexed.

        Raises
        ------
        ValueError
            If every image would be dropped.
        """
        return _without_images(self, drop)

    def subset(self, n_images: int) -> RetrievalSplit:
        """Return the first ``n_images`` images and their captions, reindexed.

        Captions are selected by their clean image and keep their relative order.

        Parameters
        ----------
        n_images : int
            Number of leading images to keep (``1 <= n_images <= self.n_images``).

        Returns
        -------
        RetrievalSplit

        Raises
        ------
        ValueError
            If ``n_images`` is out of range, or a kept caption is paired (noisily) with
            a dropped image; apply the noise after subsetting in that case.
        """
        if not 1 <= n_images <= self.n_images:
            raise ValueError(f"n_images must be in [1, {self.n_images}], got {n_images}")
        keep = np.flatnonzero(self._ground_truth_ids() < n_images)
        ids = self.text_image_ids[keep]
        if ids.size and ids.max() >= n_images:
            raise ValueError(
                "a kept caption is paired with a dropped image; subset the clean split "
                "first and apply the noise afterwards"
            )
        clean = None if self.clean_text_image_ids is None else self.clean_text_image_ids[keep]
        return RetrievalSplit(
            name=self.name,
            image_paths=self.image_paths[:n_images],
            image_keys=self.image_keys[:n_images],
            captions=[self.captions[i] for i in keep],
            text_image_ids=ids,
            clean_text_image_ids=clean,
            dense_captions=None if self.dense_captions is None else self.dense_captions[:n_images],
            objects=None if self.objects is None else self.objects[:n_images],
            negatives=None if self.negatives is None else self.negatives[:n_images],
        )


def _without_images(split: "RetrievalSplit", drop: Sequence[int]) -> "RetrievalSplit":
    drop_mask = np.zeros(split.n_images, dtype=bool)
    drop_mask[np.asarray(list(drop), dtype=np.int64)] = True
    if drop_mask.all():
        raise ValueError(f"split {split.name!r}: every image would be dropped")
    new_index = np.cumsum(~drop_mask) - 1
    truth = split._ground_truth_ids()
    # A caption goes with its image; a (noisy) training pair whose image is dropped goes too.
    keep = ~drop_mask[truth] & ~drop_mask[split.text_image_ids]
    kept_images = np.flatnonzero(~drop_mask)

    def per_image(values):
        return None if values is None else [values[i] for i in kept_images]

    clean = None if split.clean_text_image_ids is None else \
        new_index[split.clean_text_image_ids[keep]]
    return RetrievalSplit(
        name=split.name,
        image_paths=per_image(split.image_paths),
        image_keys=per_image(split.image_keys),
        captions=[split.captions[i] for i in np.flatnonzero(keep)],
        text_image_ids=new_index[split.text_image_ids[keep]],
        clean_text_image_ids=clean,
        dense_captions=per_image(split.dense_captions),
        objects=per_image(split.objects),
        negatives=per_image(split.negatives),
    )


def check_images_exist(paths: list[str], where: str) -> None:
    """Raise :class:`FileNotFoundError` naming how many of ``paths`` are missing.

    Parameters
    ----------
    paths : list of str
        Image files that must exist.
    where : str
        What the paths belong to, for the message (e.g. the JSON file).
    """
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        first = ", ".join(missing[:3])
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} images of {where} are missing, e.g. {first}"
        )


def without_ground_truth(split: Any) -> Any:
    """The split as a method may see it: its (possibly noisy) training pairs, without the
    clean pairing kept for analysis.

    A shallow copy with ``clean_text_image_ids`` set to None (images, captions and arrays are
    shared, not copied); a split without a clean pairing comes back as is. The trainer hands
    this view to methods, so the ground truth of simulated or published noise cannot reach
    training by accident; the analysis (:func:`retrieval.analysis.correspondence_analysis`)
    reads it from the split as loaded.
    """
    if getattr(split, "clean_text_image_ids", None) is None:
        return split
    view = copy.copy(split)
    view.clean_text_image_ids = None
    return view


def training_set_fingerprint(split: Any) -> dict[str, Any]:
    """Size and SHA-256 of what a training split pairs: its image identifiers, captions and
    caption -> image ids (noisy ones included).

    A run records it; resuming on another training set (an image left out by
    ``--skip-bad-images`` after a crash, other noise) would no longer be exact, and is refused.
    """
    digest = hashlib.sha256()
    keys = getattr(split, "image_keys", None)
    n_images = int(split.n_images)
    ids = np.ascontiguousarray(split.text_image_ids, dtype=np.int64)
    for text in list(keys or []) + list(getattr(split, "captions", None) or []):
        digest.update(str(text).encode("utf-8") + b"\0")
    digest.update(ids.tobytes())
    return {"n_images": n_images, "n_captions": int(ids.shape[0]), "sha256": digest.hexdigest()}
