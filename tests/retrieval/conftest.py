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


@pytest.fixture
def one_and_two_processes(tmp_path):
    """``run(script_text, *args, port=N)``: runs a training script once in one process and
    once under ``torch.distributed.run`` with two gloo processes; each gets its output folder
    as the last argument (``tmp_path / "one"`` and ``tmp_path / "two"``, returned)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]

    def run(script_text: str, *args: str, port: int) -> tuple[Path, Path]:
        script = tmp_path / "ddp_script.py"
        script.write_text(script_text)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": str(root)}
        env.pop("WORLD_SIZE", None)
        one, two = tmp_path / "one", tmp_path / "two"
        single = subprocess.run([sys.executable, str(script), *args, str(one)], env=env,
                                capture_output=True, text=True, timeout=300)
        assert single.returncode == 0, single.stderr[-3000:]
        ddp = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
             f"--master_port={port}", str(script), *args, str(two)],
            env=env, capture_output=True, text=True, timeout=300)
        assert ddp.returncode == 0, ddp.stderr[-3000:]
        return one, two

    return run
