"""One entry point that recognises the data format of a folder: :func:`load_split`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ._split import RetrievalSplit
from .captions_jsonl import CAPTIONS_JSONL, load_captions_jsonl
from .fdrd import is_fdrd_file, load_fdrd
from .features import MANIFEST_FILE, FeatureSplit, load_features
from .folder import CAPTIONS_FILE, load_folder
from .karpathy import IdOrderMismatch, load_karpathy
from .shipped import canonical_ids_file

logger = logging.getLogger(__name__)

__all__ = ["load_split"]


def load_split(
    root: str | os.PathLike[str],
    split: str = "test",
    format: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
    json_name: str | None = None,
    ids_file: str | os.PathLike[str] | None = "auto",
) -> RetrievalSplit | FeatureSplit:
    """Load one split from a folder, recognising its format.

    Detection order: ``manifest.json`` -> precomputed features
    (:func:`~retrieval.data.load_features`); ``captions.tsv`` -> folder + captions
    (:func:`~retrieval.data.load_folder`); ``captions.jsonl`` -> one line per image
    (:func:`~retrieval.data.load_captions_jsonl`); ``dataset_*.json`` -> Karpathy JSON
    (:func:`~retrieval.data.load_karpathy`, images under ``image_root`` or ``root``).
    ``root`` may also be the Karpathy JSON file itself, or a FDRD test file
    (:func:`~retrieval.data.load_fdrd`, images found by name under ``image_root``).

    Parameters
    ----------
    root : str or os.PathLike
        The data folder (or a Karpathy JSON file).
    split : str, default="test"
    format : {"features", "folder", "jsonl", "karpathy"} or None
        Skip detection.
    image_root : str or os.PathLike, optional
        Image folder for the Karpathy and ``captions.jsonl`` formats (default: ``root``), or
        for the folder format (default: ``root/images``).
    json_name : str, optional
        Which JSON file of ``root`` to read when several ``dataset_*.json`` exist.
    ids_file : path, "auto", "strict" or None, default="auto"
        Karpathy format only: an id file giving the image order. ``"auto"`` uses the published
        canonical order (downloaded into the data home on first use) for ``dataset_flickr30k.json`` / ``dataset_coco.json`` (test: the
        evaluation order of spec 2.1; train: the order the published noise files index,
        spec 3) and the JSON order otherwise; ``"strict"`` requires the published order (an
        error when the images do not match it); None always keeps the JSON order.

    Returns
    -------
    RetrievalSplit or FeatureSplit

    Raises
    ------
    FileNotFoundError
        If ``root`` (or the named JSON) does not exist.
    ValueError
        If no format is recognised (the message lists what was found) or the choice
        of Karpathy JSON is ambiguous.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data path not found: {root}")
    if root.is_file():
        if root.suffix != ".json":
            raise ValueError(f"{root}: a file must be a Karpathy or FDRD JSON; pass its folder for other formats")
        if is_fdrd_file(root):
            return load_fdrd(root, image_root, split)
        return _load_karpathy_ordered(root, image_root if image_root is not None else root.parent,
                                      split, ids_file)
    if format not in (None, "features", "folder", "jsonl", "karpathy"):
        raise ValueError(f"unknown format {format!r}; expected 'features', 'folder', 'jsonl' or "
                         "'karpathy'")
    if format == "features" or (format is None and (root / MANIFEST_FILE).is_file()):
        return load_features(root, split=split)
    if format == "folder" or (format is None and (root / CAPTIONS_FILE).is_file()):
        return load_folder(root, split=split, image_root=image_root)
    if format == "jsonl" or (format is None and (root / CAPTIONS_JSONL).is_file()):
        return load_captions_jsonl(root, split=split, image_root=image_root)
    if json_name is not None:
        json_path = root / json_name
        if not json_path.is_file():
            raise FileNotFoundError(f"Karpathy JSON not found: {json_path}")
    else:
        candidates = sorted(root.glob("dataset_*.json"))
        if len(candidates) > 1:
            names = [p.name for p in candidates]
            raise ValueError(f"{root} holds several Karpathy files {names}; choose one with json_name=")
        if not candidates:
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
            shown = ", ".join(found[:20]) + (" ..." if len(found) > 20 else "")
            raise ValueError(
                f"{root}: no known data format (expected {MANIFEST_FILE}, {CAPTIONS_FILE}, "
                f"{CAPTIONS_JSONL} or dataset_*.json); found: {shown or 'nothing'}"
            )
        json_path = candidates[0]
    return _load_karpathy_ordered(json_path, image_root if image_root is not None else root,
                                  split, ids_file)


def _load_karpathy_ordered(json_path: Path, image_root, split: str, ids_file) -> RetrievalSplit:
    if ids_file is None or not (isinstance(ids_file, str) and ids_file in ("auto", "strict")):
        return load_karpathy(json_path, image_root, split=split, ids_file=ids_file)
    found = canonical_ids_file(json_path.name, split, required=ids_file == "strict")
    if ids_file == "strict":
        if found is None:
            raise ValueError(f"{json_path.name}: no published canonical order for split {split!r} "
                             "(needed to apply a published noise file)")
        return load_karpathy(json_path, image_root, split=split, ids_file=found)
    if found is None:
        return load_karpathy(json_path, image_root, split=split)
    try:
        loaded = load_karpathy(json_path, image_root, split=split, ids_file=found)
    except IdOrderMismatch as exc:
        # A file named like the public one but holding other images (a subset, a miniature):
        # its own order is the only one that exists.
        logger.warning("%s: the %s images do not match the published canonical order %s (%s); "
                       "keeping the JSON order", json_path.name, split, found.name, exc)
        return load_karpathy(json_path, image_root, split=split)
    logger.info("ordered the %s images of %s by the published %s", split, json_path.name,
                found.name)
    return loaded
