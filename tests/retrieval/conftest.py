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


def free_port() -> int:
    """A TCP port nobody listens on now (the system picks it for a socket bound to port 0)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def launch():
    """``launch(script, *args, processes=1)``: runs a script in one process, or under
    ``torch.distributed.run`` with that many gloo processes on a free port, and asserts that
    it succeeded."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]

    def run(script: Path, *args: str, processes: int = 1) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": str(root)}
        env.pop("WORLD_SIZE", None)
        command = [sys.executable, str(script), *args]
        if processes > 1:
            command[1:1] = ["-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                            f"--master_port={free_port()}"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    return run


@pytest.fixture
def one_and_two_processes(tmp_path, launch):
    """``run(script_text, *args)``: runs a training script once in one process and once
    under ``torch.distributed.run`` with two gloo processes; each gets its output folder as
    the last argument (``tmp_path / "one"`` and ``tmp_path / "two"``, returned)."""

    def run(script_text: str, *args: str) -> tuple[Path, Path]:
        script = tmp_path / "ddp_script.py"
        script.write_text(script_text)
        one, two = tmp_path / "one", tmp_path / "two"
        launch(script, *args, str(one))
        launch(script, *args, str(two), processes=2)
        return one, two

    return run


@pytest.fixture
def host_syncs(monkeypatch):
    """``with host_syncs() as calls:`` lists every tensor operation inside the block that
    would make the host wait for a GPU: reading a value (``item``, ``bool``, ``int``,
    ``float``, ``tolist``, ``numpy``), copying to the CPU, and indexing with a boolean mask
    (its size is only known on the device). Counted on CPU tensors too, so a CPU test catches
    what would stall a GPU run."""
    import contextlib

    calls: list[str] = []
    active = [False]

    def counted(name, original):
        def wrapper(self, *args, **kwargs):
            if active[0]:
                calls.append(name)
            return original(self, *args, **kwargs)
        return wrapper

    for name in ("item", "__bool__", "__int__", "__float__", "__index__", "tolist", "numpy",
                 "cpu", "nonzero", "masked_select"):
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    original_getitem = torch.Tensor.__getitem__

    def getitem(self, index):
        if active[0]:
            parts = index if isinstance(index, tuple) else (index,)
            if any(torch.is_tensor(p) and p.dtype == torch.bool for p in parts):
                calls.append("boolean mask index")
        return original_getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)

    @contextlib.contextmanager
    def block():
        active[0] = True
        try:
            yield calls
        finally:
            active[0] = False

    return block
