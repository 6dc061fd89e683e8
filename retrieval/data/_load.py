"""One entry point that recognises the data format of a folder: :func:`load_split`."""

from __future__ import annotations

import os
from pathlib import Path

from ._split import RetrievalSplit
from .features import MANIFEST_FILE, FeatureSplit, load_features
from .folder import CAPTIONS_FILE, load_folder
from .karpathy import load_karpathy

__all__ = ["load_split"]


def load_split(
    root: str | os.PathLike[str],
    split: str = "test",
    format: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
    json_name: str | None = None,
) -> RetrievalSplit | FeatureSplit:
    """Load one split from a folder, recognising its format.

    Detection order: ``manifest.json`` -> precomputed features
    (:func:`~retrieval.data.load_features`); ``captions.tsv`` -> folder + captions
    (:func:`~retrieval.data.load_folder`); ``dataset_*.json`` -> Karpathy JSON
    (:func:`~retrieval.data.load_karpathy`, images under ``image_root`` or ``root``).
    ``root`` may also be the Karpathy JSON file itself.

    Parameters
    ----------
    root : str or os.PathLike
        The data folder (or a Karpathy JSON file).
    split : str, default="test"
    format : {"features", "folder", "karpathy"} or None
        Skip detection.
    image_root : str or os.PathLike, optional
        Image folder for the Karpathy format (default: ``root``), or for the folder
        format (default: ``root/images``).
    json_name : str, optional
        Which JSON file of ``root`` to read when several ``dataset_*.json`` exist.

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
            raise ValueError(f"{root}: a file must be a Karpathy JSON; pass its folder for other formats")
        return load_karpathy(root, image_root if image_root is not None else root.parent, split=split)
    if format not in (None, "features", "folder", "karpathy"):
        raise ValueError(f"unknown format {format!r}; expected 'features', 'folder' or 'karpathy'")
    if format == "features" or (format is None and (root / MANIFEST_FILE).is_file()):
        return load_features(root, split=split)
    if format == "folder" or (format is None and (root / CAPTIONS_FILE).is_file()):
        return load_folder(root, split=split, image_root=image_root)
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
                f"{root}: no known data format (expected {MANIFEST_FILE}, {CAPTIONS_FILE} or "
                f"dataset_*.json); found: {shown or 'nothing'}"
            )
        json_path = candidates[0]
    return load_karpathy(json_path, image_root if image_root is not None else root, split=split)
