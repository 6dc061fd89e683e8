"""Shared set-up of the retrieval tests: never touch the network, keep torch on few threads."""

import os
from pathlib import Path

# A test that downloads is a bug (spec 7): make any hub access fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# The CI machine has 2 cores; more threads than cores only slows the tiny models down (and
# an explicit OMP_NUM_THREADS wins, e.g. 1 while a benchmark runs beside the tests).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", min(2, os.cpu_count() or 1))))


@pytest.fixture(scope="session")
def wheel_photos() -> list[Path]:
    """Three real photos shipped inside installed wheels (no download, no repository copy).

    sklearn's ``china.jpg`` and ``flower.jpg`` and matplotlib's ``grace_hopper.jpg``.
    """
    import matplotlib
    import sklearn.datasets

    sk_images = Path(sklearn.datasets.__file__).parent / "images"
    mpl = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photos = [sk_images / "china.jpg", sk_images / "flower.jpg", mpl]
    missing = [str(p) for p in photos if not p.is_file()]
    if missing:
        pytest.skip(f"sample photos not installed: {missing}")
    return photos
