"""Project-wide rules about files: no committed data, one download mechanism in two copies."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Files that hold data (published by others) rather than code or our own text.
DATA_SUFFIXES = {".mat", ".npz", ".npy", ".json", ".jsonl", ".txt", ".csv", ".tsv", ".pkl",
                 ".pickle", ".h5", ".hdf5", ".pt", ".pth", ".safetensors", ".zip", ".gz",
                 ".tar", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
# The project's own files that carry such a suffix.
OWN_FILES = {"retrieval/model_configs"}


def _is_data_file(path: Path) -> bool:
    if path.suffix.lower() in DATA_SUFFIXES:
        return True
    # Planetoid's pickles have no suffix of their own: ind.cora.allx, ind.cora.test.index
    return path.name.startswith("ind.")


def test_no_data_file_under_datasets_or_inside_the_packages():
    offenders = []
    for folder in ("datasets", "mvlearn_plus", "retrieval"):
        for path in (ROOT / folder).rglob("*"):
            relative = path.relative_to(ROOT)
            if not path.is_file() or "__pycache__" in relative.parts:
                continue
            if any(str(relative).startswith(own) for own in OWN_FILES):
                continue
            if _is_data_file(path):
                offenders.append(str(relative))
    assert offenders == [], (
        "data files must be downloaded into the data home, never committed: "
        f"{offenders}")


def test_datasets_folder_holds_cards_only():
    files = [p for p in (ROOT / "datasets").rglob("*") if p.is_file()]
    assert files, "the dataset cards are missing"
    assert {p.suffix for p in files} == {".md"}


def test_the_two_copies_of_the_download_module_are_identical():
    # The wings never import each other (architecture.md), so the small download-and-cache
    # module exists in each; it must not drift.
    first = (ROOT / "mvlearn_plus" / "datasets" / "_fetch.py").read_bytes()
    second = (ROOT / "retrieval" / "data" / "_fetch.py").read_bytes()
    assert first == second
