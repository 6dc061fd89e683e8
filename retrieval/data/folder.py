"""A folder of images with a ``captions.tsv`` file (spec 4.2), and dense captions (spec 4.3).

Layout::

    root/
      images/...                 image files; paths below are relative to this folder
      captions.tsv               relative_path<TAB>caption[<TAB>split], one line per caption
      dense_captions.jsonl       optional: {"image": relative_path, "text": ...} per line
      objects.jsonl              optional: {"image": relative_path, "objects": [...]} per line

Images are numbered in order of first appearance in ``captions.tsv``; each image needs
at least one caption. The synthetic set (:func:`~retrieval.data.make_synthetic`) is
written in this format by :func:`write_folder`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ._split import RetrievalSplit, check_images_exist
from .dense import keyed_records, load_dense_captions, read_jsonl, write_jsonl

logger = logging.getLogger(__name__)

__all__ = [
    "CAPTIONS_FILE",
    "DENSE_FILE",
    "OBJECTS_FILE",
    "IMAGES_DIR",
    "load_folder",
    "write_folder",
    "load_dense_captions",
    "read_jsonl",
]

CAPTIONS_FILE = "captions.tsv"
DENSE_FILE = "dense_captions.jsonl"
OBJECTS_FILE = "objects.jsonl"
IMAGES_DIR = "images"


def _read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; a byte-order mark (Windows editors write one) is dropped,
    and a file in another encoding is refused naming the file, the line and the fix."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{lineno}: not UTF-8 text (byte {data[exc.start]:#04x}; "
                         "Latin-1 or another legacy encoding?); save the file as UTF-8") from None


def _read_captions_tsv(path: Path) -> list[tuple[str, str, str | None]]:
    rows = []
    for lineno, line in enumerate(_read_text(path).split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise ValueError(
                f"{path}:{lineno}: expected 'relative_path<TAB>caption[<TAB>split]', "
                f"got {len(fields)} tab-separated fields"
            )
        rel, caption = fields[0].strip(), fields[1].strip()
        if not rel:
            raise ValueError(f"{path}:{lineno}: empty image path")
        rows.append((rel, caption, fields[2].strip() if len(fields) == 3 else None))
    return rows


def load_folder(
    root: str | os.PathLike[str],
    split: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
    check_images: bool = True,
) -> RetrievalSplit:
    """Load a folder of images described by ``captions.tsv``.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding ``captions.tsv`` (and optionally ``dense_captions.jsonl``,
        ``objects.jsonl``).
    split : str, optional
        Keep only the lines whose third column equals ``split``. ``None`` keeps every
        line (the third column is then optional).
    image_root : str or os.PathLike, optional
        Folder the relative paths refer to; default ``root/images``.
    check_images : bool, default=True
        Raise :class:`FileNotFoundError` if image files are missing.

    Returns
    -------
    RetrievalSplit
        Images in order of first appearance; ``image_keys`` are the relative paths.
        ``dense_captions`` / ``objects`` are filled when their files exist.

    Raises
    ------
    FileNotFoundError
        If ``captions.tsv`` or image files are missing.
    ValueError
        On malformed lines, an unknown split, or a split column missing while
        ``split`` is given.
    """
    root = Path(root)
    tsv = root / CAPTIONS_FILE
    if not tsv.is_file():
        raise FileNotFoundError(f"captions file not found: {tsv}")
    rows = _read_captions_tsv(tsv)
    if split is not None:
        unsplit = sum(r[2] is None for r in rows)
        if unsplit:
            raise ValueError(
                f"{tsv}: split={split!r} requested but {unsplit} lines have no split column"
            )
        present = sorted({r[2] for r in rows})
        rows = [r for r in rows if r[2] == split]
        if not rows:
            raise ValueError(f"{tsv}: no line of split {split!r}; splits present: {present}")
    if not rows:
        raise ValueError(f"{tsv} holds no caption")

    image_root = Path(image_root) if image_root is not None else root / IMAGES_DIR
    index: dict[str, int] = {}
    captions, ids = [], []
    for rel, caption, _ in rows:
        if Path(rel).is_absolute():
            raise ValueError(f"{tsv}: image paths must be relative to {image_root}, got {rel!r}")
        captions.append(caption)
        ids.append(index.setdefault(rel, len(index)))
    keys = list(index)
    # Resolving the root once is enough and avoids a realpath call per image on big sets.
    base = image_root.resolve()
    paths = [str(base / k) for k in keys]
    if check_images:
        check_images_exist(paths, str(tsv))

    dense = objects = None
    if (root / DENSE_FILE).is_file():
        dense = load_dense_captions(root / DENSE_FILE, keys)
    if (root / OBJECTS_FILE).is_file():
        table = keyed_records(read_jsonl(root / OBJECTS_FILE), "objects", root / OBJECTS_FILE)
        missing = [k for k in keys if k not in table]
        if missing:
            raise ValueError(f"{root / OBJECTS_FILE}: no record for {len(missing)} images, e.g. {missing[:3]}")
        objects = [table[k] for k in keys]
    logger.info("folder %s split %s: %d images, %d captions", root, split, len(keys), len(captions))
    return RetrievalSplit(
        name=split if split is not None else "all",
        image_paths=paths,
        image_keys=keys,
        captions=captions,
        text_image_ids=np.asarray(ids, dtype=np.int64),
        dense_captions=dense,
        objects=objects,
    )


def _check_field(value: str, what: str) -> str:
    value = str(value)
    if "\t" in value or "\n" in value or "\r" in value:
        raise ValueError(f"{what} must not contain tabs or newlines: {value!r}")
    return value


def write_folder(
    root: str | os.PathLike[str],
    captions: Iterable[tuple[str, str] | tuple[str, str, str | None]],
    dense_captions: Mapping[str, str] | None = None,
    objects: Mapping[str, list] | None = None,
) -> Path:
    """Write the text files of the folder format; the images are written by the caller.

    Parameters
    ----------
    root : str or os.PathLike
        Output folder (created). Images belong under ``root/images``.
    captions : iterable of (relative_path, caption) or (relative_path, caption, split)
        One entry per caption, written in the given order (which fixes the image order
        on loading).
    dense_captions : mapping of str to str, optional
        Dense caption per relative path, written as keyed ``dense_captions.jsonl``.
    objects : mapping of str to list, optional
        Object records per relative path, written as ``objects.jsonl``.

    Returns
    -------
    pathlib.Path
        ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for row in captions:
        if len(row) not in (2, 3):
            raise ValueError(f"caption rows must be (path, caption[, split]), got {row!r}")
        fields = [_check_field(row[0], "image path"), _check_field(row[1], "caption")]
        if len(row) == 3 and row[2] is not None:
            fields.append(_check_field(row[2], "split"))
        lines.append("\t".join(fields) + "\n")
    with open(root / CAPTIONS_FILE, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(lines)
    for name, table, field in ((DENSE_FILE, dense_captions, "text"), (OBJECTS_FILE, objects, "objects")):
        if table is None:
            continue
        write_jsonl(root / name, [{"image": str(key), field: value} for key, value in table.items()])
    return root
