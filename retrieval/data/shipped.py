"""Files the project ships for retrieval: Karpathy id orders, test captions, noise indices.

They live in the top-level ``datasets/retrieval`` folder of a source checkout and in
``retrieval/_datasets`` inside an installed wheel; the card is ``datasets/retrieval/README.md``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["shipped_data_dir", "shipped_file", "canonical_ids_file"]

_PACKAGE = Path(__file__).resolve().parents[1]

# Karpathy JSON file name -> {split: shipped id file} giving the canonical image order (spec
# 2.1); the training order is the "precomp" order the published noise files index (spec 3).
_CANONICAL_IDS = {
    "dataset_flickr30k.json": {"test": "f30k/test_ids.txt", "train": "f30k/train_ids.txt"},
    "dataset_coco.json": {"test": "coco/testall_ids.txt", "train": "coco/train_ids.txt"},
}


def shipped_data_dir() -> Path | None:
    """The folder of shipped retrieval files, or None when it is absent."""
    for candidate in (_PACKAGE.parent / "datasets" / "retrieval", _PACKAGE / "_datasets"):
        if (candidate / "f30k").is_dir():
            return candidate
    return None


def shipped_file(relative_path: str) -> Path:
    """Path of a shipped file such as ``"f30k/test_ids.txt"`` (FileNotFoundError if absent)."""
    root = shipped_data_dir()
    if root is None or not (root / relative_path).is_file():
        raise FileNotFoundError(
            f"shipped retrieval file {relative_path!r} not found (looked in datasets/retrieval of "
            "a source checkout and retrieval/_datasets of an installed wheel)")
    return root / relative_path


def canonical_ids_file(json_name: str, split: str) -> Path | None:
    """The shipped id file that orders ``split`` of a Karpathy JSON, if there is one."""
    relative = _CANONICAL_IDS.get(Path(json_name).name, {}).get(split)
    if relative is None:
        return None
    try:
        return shipped_file(relative)
    except FileNotFoundError:
        return None
