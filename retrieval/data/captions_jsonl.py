"""A folder with ``captions.jsonl``: one line per image with all its captions and its split.

Layout::

    root/
      captions.jsonl     {"image": relative_path, "captions": [str, ...], "split": str, ...}
      images/...         the image files (paths in captions.jsonl are relative to root)

Other fields of a line (an id, a licence) are ignored. This is the form of the local Flickr8k
sample (``flickr8k_1k``, 1,000 photos with 5 captions each and the official split) described in
``datasets/retrieval/flickr8k_1k.md``; it suits any set that keeps an image's captions together.
Flickr8k names its validation split ``dev``, so ``split="val"`` reads ``dev`` where a file has
no ``val`` line: the trainer's validation split is found under either name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ._split import RetrievalSplit, check_images_exist
from .dense import read_jsonl

logger = logging.getLogger(__name__)

__all__ = ["CAPTIONS_JSONL", "SPLIT_ALIASES", "load_captions_jsonl"]

CAPTIONS_JSONL = "captions.jsonl"

#: Split name asked for -> the names it may have in a file, in order of preference.
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {"val": ("val", "dev")}


def load_captions_jsonl(root: str | os.PathLike[str], split: str | None = None,
                        image_root: str | os.PathLike[str] | None = None,
                        check_images: bool = True) -> RetrievalSplit:
    """Load a folder described by ``captions.jsonl`` (one line per image).

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding ``captions.jsonl``.
    split : str, optional
        Keep the lines whose ``split`` field equals it (``"val"`` also matches ``"dev"``, see
        :data:`SPLIT_ALIASES`). ``None`` keeps every line.
    image_root : str or os.PathLike, optional
        Folder the image paths are relative to; default ``root``.
    check_images : bool, default=True
        Raise :class:`FileNotFoundError` if image files are missing.

    Returns
    -------
    RetrievalSplit
        Images in file order; ``image_keys`` are the relative paths; captions image by image.

    Raises
    ------
    FileNotFoundError
        If ``captions.jsonl`` or image files are missing.
    ValueError
        On a line without ``image`` or a non-empty ``captions`` list, an image listed twice, or
        a split that no line has (the message lists the splits present).

    References
    ----------
    .. [1] M. Hodosh, P. Young, J. Hockenmaier, "Framing Image Description as a Ranking Task:
       Data, Models and Evaluation Metrics", JAIR 47, 2013 (Flickr8k).
    """
    root = Path(root)
    path = root / CAPTIONS_JSONL
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    records = read_jsonl(path)
    for lineno, record in enumerate(records, 1):
        captions = record.get("captions")
        if "image" not in record or not isinstance(captions, list) or not captions:
            raise ValueError(f"{path}: record {lineno} needs 'image' and a non-empty "
                             "'captions' list")
    if split is not None:
        present = sorted({str(r.get("split")) for r in records})
        name = next((n for n in SPLIT_ALIASES.get(split, (split,)) if n in present), None)
        if name is None:
            raise ValueError(f"{path}: no line of split {split!r}; splits present: {present}")
        if name != split:
            logger.info("%s: split %r read from the lines marked %r", path, split, name)
        records = [r for r in records if r.get("split") == name]

    base = (Path(image_root) if image_root is not None else root).resolve()
    keys, captions, ids = [], [], []
    seen: set[str] = set()
    for record in records:
        key = str(record["image"])
        if Path(key).is_absolute():
            raise ValueError(f"{path}: image paths must be relative to {base}, got {key!r}")
        if key in seen:
            raise ValueError(f"{path}: image {key!r} appears twice")
        seen.add(key)
        for text in record["captions"]:
            captions.append(str(text).strip())
            ids.append(len(keys))
        keys.append(key)
    paths = [str(base / k) for k in keys]
    if check_images:
        check_images_exist(paths, str(path))
    logger.info("captions.jsonl %s split %s: %d images, %d captions", root, split, len(keys),
                len(captions))
    return RetrievalSplit(name=split if split is not None else "all", image_paths=paths,
                          image_keys=keys, captions=captions,
                          text_image_ids=np.asarray(ids, dtype=np.int64))
