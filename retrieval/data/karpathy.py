"""Karpathy-split JSON files (``dataset_flickr30k.json``, ``dataset_coco.json``) and the
published caption/id text files (:func:`retrieval.data.shipped_file`).

The Karpathy JSON holds an ``images`` list; each entry has ``filename``, ``filepath``
(COCO only: ``train2014`` / ``val2014``), ``split`` (``train``, ``restval``, ``val``,
``test``), ``sentences`` (each with ``raw``), ``imgid`` (the position in the list) and,
for COCO, ``cocoid``. The ``train`` split of the retrieval literature is ``train`` plus
``restval`` (COCO: 82,783 + 30,504 = 113,287 images).

References
----------
.. [1] Karpathy, A. and Fei-Fei, L. "Deep Visual-Semantic Alignments for Generating Image
   Descriptions." CVPR 2015.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._split import RetrievalSplit, check_images_exist

logger = logging.getLogger(__name__)

__all__ = ["load_karpathy", "load_caption_file", "read_id_file", "KARPATHY_SPLITS",
           "IdOrderMismatch"]


class IdOrderMismatch(ValueError):
    """An id file does not list the images of a Karpathy split (another set, a miniature).

    Raised apart from a malformed file, so that a caller falling back to the JSON order on a
    mismatch never hides a broken file behind that fallback.
    """

#: Karpathy ``split`` values making up each split name.
KARPATHY_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train", "restval"),
    "restval": ("restval",),
    "val": ("val",),
    "test": ("test",),
}


def read_id_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a text file of one integer per line (blank lines ignored).

    Parameters
    ----------
    path : str or os.PathLike
        E.g. the published ``test_ids.txt`` / ``testall_ids.txt`` / ``train_ids.txt``.

    Returns
    -------
    numpy.ndarray of int64
        The integers in file order (repeats kept).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"id file not found: {path}")
    values = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                values.append(int(line))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected an integer id, got {line!r}") from None
    return np.asarray(values, dtype=np.int64)


def _unique_in_order(values: np.ndarray) -> np.ndarray:
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


def load_caption_file(
    caps_txt: str | os.PathLike[str], ids_txt: str | os.PathLike[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read a published ``*_caps.txt`` / ``*_ids.txt`` pair (no images involved).

    Line *i* of the caption file belongs to the image id on line *i* of the id file.

    Parameters
    ----------
    caps_txt : str or os.PathLike
        One caption per line.
    ids_txt : str or os.PathLike
        One image id per line (F30K: index into the Karpathy image list; COCO: COCO
        image id), same number of lines as ``caps_txt``.

    Returns
    -------
    captions : list of str
        Stripped captions in file order.
    text_image_ids : numpy.ndarray of int64
        For each caption, the index of its image in ``image_ids``.
    image_ids : numpy.ndarray of int64
        The distinct image ids in order of first appearance (the canonical image order).
    """
    caps_txt = Path(caps_txt)
    if not caps_txt.is_file():
        raise FileNotFoundError(f"caption file not found: {caps_txt}")
    with open(caps_txt, encoding="utf-8") as fh:
        # Only the line terminator is dropped first so that an empty caption still
        # occupies its line and stays aligned with the id file.
        captions = [line.rstrip("\r\n").strip() for line in fh]
    ids = read_id_file(ids_txt)
    if len(ids) != len(captions):
        raise ValueError(
            f"{caps_txt} has {len(captions)} captions but {ids_txt} has {len(ids)} ids"
        )
    image_ids = _unique_in_order(ids)
    position = {int(v): i for i, v in enumerate(image_ids)}
    text_image_ids = np.fromiter((position[int(v)] for v in ids), dtype=np.int64, count=len(ids))
    return captions, text_image_ids, image_ids


def _read_json(path: Path) -> Any:
    """The JSON document of ``path``; a syntax or encoding error names the file and where."""
    try:
        # utf-8-sig: a byte-order mark written by some editors is not part of the document.
        with open(path, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column "
                         f"{exc.colno}; fix or re-download the file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save "
                         "it as UTF-8") from None


def _check_entry(path: Path, position: int, entry: Any) -> None:
    """Refuse an image entry outside the Karpathy schema, naming it and the fix."""
    where = f"{path}: images[{position}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is a {type(entry).__name__}, not an object with 'filename' "
                         "and 'sentences'")
    if "filename" not in entry:
        other = next((key for key in ("file_name", "image", "path") if key in entry), None)
        hint = (f"it has {other!r}: the Karpathy schema names the file 'filename' (rename the "
                "key)") if other else "the Karpathy schema names each image's file there"
        raise ValueError(f"{where} has no 'filename'; {hint}")
    sentences = entry.get("sentences", [])
    if not isinstance(sentences, list):
        raise ValueError(f"{where} ({entry['filename']!r}): 'sentences' must be a list")
    for k, sentence in enumerate(sentences):
        if isinstance(sentence, str):
            raise ValueError(f"{where} ({entry['filename']!r}): sentences[{k}] is a plain "
                             "string; the Karpathy schema wants objects, write "
                             '{"raw": "the caption"}')
        if not isinstance(sentence, dict) or "raw" not in sentence:
            raise ValueError(f"{where} ({entry['filename']!r}): sentences[{k}] has no 'raw' "
                             "caption text; add it (the Karpathy files keep the caption as "
                             "written under 'raw')")


def _image_relpath(entry: dict) -> str:
    return os.path.join(entry["filepath"], entry["filename"]) if entry.get("filepath") else entry["filename"]


def _resolve_image(image_root: Path, entry: dict) -> str:
    rel = _image_relpath(entry)
    path = image_root / rel
    # COCO users often keep train2014/ and val2014/ files in one folder; accept that too.
    if not path.is_file() and entry.get("filepath") and (image_root / entry["filename"]).is_file():
        path = image_root / entry["filename"]
    return str(path)


def load_karpathy(
    json_path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    split: str = "test",
    ids_file: str | os.PathLike[str] | None = None,
    captions_per_image: int | None = 5,
    id_key: str | None = None,
    check_images: bool = True,
) -> RetrievalSplit:
    """Load one split of a Karpathy JSON file.

    Parameters
    ----------
    json_path : str or os.PathLike
        ``dataset_flickr30k.json`` / ``dataset_coco.json`` (or any file of that schema).
    image_root : str or os.PathLike
        Folder holding the images: ``image_root/filename`` (Flickr30K) or
        ``image_root/filepath/filename`` (COCO; ``image_root/filename`` is accepted too).
    split : {"test", "val", "train", "restval"}, default="test"
        ``"train"`` is ``train`` + ``restval``.
    ids_file : str or os.PathLike, optional
        A published id file (``test_ids.txt``, ``testall_ids.txt``, ``train_ids.txt``);
        its distinct ids, in order of first appearance, give the canonical image order
        (spec 2.1). It must list exactly the images of the split.
    captions_per_image : int or None, default=5
        Keep the first that many stripped ``raw`` sentences of each image (a few COCO
        images have 6-7). An image with fewer sentences is an error, since the
        Karpathy F30K/COCO files have at least 5 everywhere and a shortfall means a
        broken file. ``None`` keeps all sentences.
    id_key : {"imgid", "cocoid"} or None, default=None
        Which JSON field the ids of ``ids_file`` refer to. ``None``: ``"cocoid"`` when
        the images carry one (COCO), else ``"imgid"`` (Flickr30K, whose ids index the
        Karpathy image list).
    check_images : bool, default=True
        Raise :class:`FileNotFoundError` if image files are missing.

    Returns
    -------
    RetrievalSplit
        Captions grouped by image: the captions of image *j* are consecutive, in image
        order. ``image_keys`` are the relative paths (``filepath/filename``).

    Raises
    ------
    FileNotFoundError
        If the JSON or an id file is missing, or images are missing (with how many and
        the first few).
    ValueError
        On an unknown split, an image with too few captions, or an id file that does
        not match the split's images.
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"Karpathy JSON not found: {json_path}")
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(KARPATHY_SPLITS)}")
    if captions_per_image is not None and captions_per_image < 1:
        raise ValueError(f"captions_per_image must be >= 1 or None, got {captions_per_image}")
    data = _read_json(json_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{json_path} is not a Karpathy split file (no 'images' list)")
    for position, entry in enumerate(data["images"]):
        _check_entry(json_path, position, entry)
    wanted = KARPATHY_SPLITS[split]
    entries = [e for e in data["images"] if e.get("split") in wanted]
    if not entries:
        found = sorted({str(e.get("split")) for e in data["images"]})
        raise ValueError(f"{json_path}: no image in split {split!r}; splits present: {found}")

    if ids_file is not None:
        if id_key is None:
            id_key = "cocoid" if all("cocoid" in e for e in entries) else "imgid"
        order = _unique_in_order(read_id_file(ids_file))
        by_id = {}
        for e in entries:
            if id_key not in e:
                raise IdOrderMismatch(
                    f"{json_path}: image {e.get('filename')!r} has no {id_key!r}")
            by_id[int(e[id_key])] = e
        unknown = [int(v) for v in order if int(v) not in by_id]
        if unknown:
            raise IdOrderMismatch(
                f"{ids_file}: {len(unknown)} ids are not {id_key} values of split {split!r} "
                f"in {json_path}, e.g. {unknown[:5]}"
            )
        if len(order) != len(entries):
            raise IdOrderMismatch(
                f"{ids_file} lists {len(order)} distinct images but split {split!r} of "
                f"{json_path} has {len(entries)}"
            )
        entries = [by_id[int(v)] for v in order]

    image_root = Path(image_root).resolve()
    image_paths, image_keys, captions, ids = [], [], [], []
    for j, e in enumerate(entries):
        raw = [str(s["raw"]).strip() for s in e.get("sentences", [])]
        if captions_per_image is not None:
            if len(raw) < captions_per_image:
                raise ValueError(
                    f"{json_path}: image {_image_relpath(e)!r} has {len(raw)} captions, "
                    f"fewer than captions_per_image={captions_per_image}"
                )
            raw = raw[:captions_per_image]
        image_keys.append(_image_relpath(e))
        image_paths.append(_resolve_image(image_root, e))
        captions.extend(raw)
        ids.extend([j] * len(raw))
    if check_images:
        check_images_exist(image_paths, f"{json_path} (image root {image_root})")
    logger.info(
        "Karpathy %s split of %s: %d images, %d captions", split, json_path.name, len(entries), len(captions)
    )
    return RetrievalSplit(
        name=split,
        image_paths=image_paths,
        image_keys=image_keys,
        captions=captions,
        text_image_ids=np.asarray(ids, dtype=np.int64),
    )
