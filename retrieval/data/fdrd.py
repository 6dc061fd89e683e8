"""FDRD, the fine-grained retrieval test files of DCAR (spec 5.4): :func:`load_fdrd`.

A FDRD file (``flower_test.json``, ``pets_test.json``, ``plane_test.json``; downloaded with
``shipped_file("fdrd/pets_test.json")``) is a dict keyed by image key. Each entry has ``file_name``,
``file_path`` (an absolute path on the authors' machine), ``positive`` (the true caption, which
names the class) and ``negative`` (four captions with the class name swapped for another
class). The images are not published with them: they come from the user's copy of Oxford Flowers-102,
Oxford-IIIT Pets and FGVC-Aircraft (CoOp layout or any other), and each entry is remapped to
it **by file name**.

The result is a test :class:`~retrieval.data.RetrievalSplit` with one caption per image and
the negatives attached (``split.negatives``), so ``evaluate`` reports Recall@K and the
swapped-twin (category) accuracy.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ._split import RetrievalSplit

logger = logging.getLogger(__name__)

__all__ = ["load_fdrd", "is_fdrd_file"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def is_fdrd_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a FDRD JSON (a dict of entries with ``positive`` and ``negative``)."""
    path = Path(path)
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or not data:
        return False
    entry = next(iter(data.values()))
    return isinstance(entry, dict) and "positive" in entry and "negative" in entry


def _class_of(key: str, entry: dict) -> str:
    # Flowers carry their class; pets and planes encode it in the key before the last "_".
    return str(entry.get("class_name") or key.rsplit("_", 1)[0])


def load_fdrd(path: str | os.PathLike[str], image_root: str | os.PathLike[str] | None,
              split: str = "test", *, check_images: bool = True) -> RetrievalSplit:
    """Read a FDRD test file, with its images found by file name under ``image_root``.

    Parameters
    ----------
    path : str or os.PathLike
        A FDRD JSON file.
    image_root : str or os.PathLike
        A folder holding the images anywhere below it (searched recursively once); an entry's
        image is the file whose name is the base name of its ``file_path``.
    split : str, default="test"
        FDRD files hold one test split; any other name is "no split" (absent).
    check_images : bool, default=True
        Refuse entries whose image is not found (the message counts them and names one).

    Returns
    -------
    RetrievalSplit
        One image per entry (file order), its positive caption, ``negatives`` per image and
        ``image_keys`` the FDRD keys. ``categories`` of the entries are logged, not stored.

    Raises
    ------
    FileNotFoundError
        Missing file, missing image root, or images not found under it.
    ValueError
        Not a FDRD file, an entry without its fields, or another split.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FDRD file not found: {path}")
    if split != "test":
        raise ValueError(f"{path.name}: no split {split!r} (FDRD files hold the test split)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: a FDRD file is a non-empty dict of entries")
    keys, names, positives, negatives, classes = [], [], [], [], []
    for key, entry in data.items():
        missing = [f for f in ("positive", "negative") if f not in entry]
        if missing or not isinstance(entry.get("negative"), list):
            raise ValueError(f"{path}: entry {key!r} lacks {missing or ['a negative list']}")
        source = entry.get("file_path") or entry.get("file_name") or key
        name = Path(str(source).replace("\\", "/")).name
        if Path(name).suffix.lower() not in _IMAGE_SUFFIXES:
            name += ".jpg"
        keys.append(str(key))
        names.append(name)
        positives.append(str(entry["positive"]))
        negatives.append([str(text) for text in entry["negative"]])
        classes.append(_class_of(str(key), entry))
    if image_root is None:
        raise FileNotFoundError(f"{path.name}: FDRD images are not published with the captions; give the folder "
                                "holding them (--image-root)")
    root = Path(image_root)
    if not root.is_dir():
        raise FileNotFoundError(f"image root not found: {root}")
    found: dict[str, Path] = {}
    for candidate in root.rglob("*"):
        if candidate.suffix.lower() in _IMAGE_SUFFIXES:
            found.setdefault(candidate.name, candidate)
    absent = [name for name in names if name not in found]
    if absent and check_images:
        raise FileNotFoundError(f"{len(absent)} of {len(names)} FDRD images not found under "
                                f"{root} (by file name), e.g. {absent[0]!r}")
    paths = [str(found.get(name, root / name)) for name in names]
    logger.info("FDRD %s: %d images of %d classes, %d negatives each", path.name, len(keys),
                len(set(classes)), len(negatives[0]) if negatives else 0)
    return RetrievalSplit(name="test", image_paths=paths, image_keys=keys, captions=positives,
                          text_image_ids=np.arange(len(keys), dtype=np.int64),
                          negatives=negatives)
