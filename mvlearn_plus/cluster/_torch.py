"""Torch mechanics shared by the deep estimators (MGBCC, VGMGC).

Written once for both: importing torch with a helpful error, choosing the device, seeding without
touching the caller's global random state, the epoch loop with its progress bar and loss history,
and ``n_init`` restarts chosen by the lowest final training loss (the label-free protocol of
DeepMVC [1]_). Nothing here imports torch at module import time, so ``import mvlearn_plus`` and
the spectral estimators work without it.

References
----------
.. [1] D. J. Trosten, S. Løkse, R. Jenssen, M. C. Kampffmeyer. "On the effects of
   self-supervision and contrastive alignment in deep multi-view clustering." CVPR 2023.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Sequence

import numpy as np
from sklearn.utils import check_random_state

logger = logging.getLogger(__name__)

__all__ = [
    "import_torch",
    "resolve_device",
    "restart_seeds",
    "torch_seed",
    "run_epochs",
    "RestartResult",
    "fit_restarts",
    "final_loss",
    "kmeans_seed",
    "to_tensor",
    "TorchEstimatorMixin",
]


class TorchEstimatorMixin:
    """scikit-learn tags shared by the torch estimators (put it left of ``BaseEstimator``)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        # Bit-identical results are promised on the CPU only (CUDA kernels may reorder sums).
        tags.non_deterministic = self.device != "cpu"
        return tags


def import_torch(owner: str):
    """Import torch, or explain how to install it (the ``deep`` extra)."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(
            f"{owner} needs PyTorch, which is not installed. Install the deep-learning extra: "
            "pip install 'mvlearn-plus[deep]' (or pip install torch)."
        ) from exc
    return torch


def resolve_device(device: str, owner: str):
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a ``torch.device``.

    ``"auto"`` picks the first CUDA device when one is available and the CPU otherwise; asking
    for CUDA on a machine without it is a ``ValueError`` rather than a crash inside torch.
    """
    torch = import_torch(owner)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{owner}: device={device!r} is not a valid torch device.") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{owner}: device={device!r} was requested but CUDA is not available on this "
                "machine; use device='cpu' or device='auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"{owner}: device={device!r} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type != "cpu":
        raise ValueError(f"{owner}: device={device!r} is not supported; use 'cpu' or 'cuda'.")
    return resolved


def restart_seeds(random_state: Any, n_init: int) -> List[int]:
    """One torch seed per restart, drawn from ``random_state`` (int, RandomState or None)."""
    rng = check_random_state(random_state)
    return [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(n_init)]


@contextlib.contextmanager
def torch_seed(seed: int, device) -> Iterator[None]:
    """Seed torch's global generators inside the block and restore them afterwards.

    Dropout and parameter initialisation draw from torch's global generators; forking them
    keeps a fit reproducible without changing the random state seen by the caller's own code.
    """
    torch = import_torch("mvlearn_plus")
    cuda = getattr(device, "type", "cpu") == "cuda"
    devices = [device] if cuda else []
    with torch.random.fork_rng(devices=devices):
        # torch.manual_seed would also reseed every CUDA device, which fork_rng restores only
        # for ``devices``: seed exactly the generators this fit uses.
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def to_tensor(array: np.ndarray, device, dtype=None):
    """Copy a numpy array into a new float32 (or ``dtype``) tensor on ``device``.

    Copying (rather than ``torch.from_numpy``) also accepts read-only and memory-mapped arrays.
    """
    torch = import_torch("mvlearn_plus")
    dtype = torch.float32 if dtype is None else dtype
    return torch.tensor(np.ascontiguousarray(array), dtype=dtype, device=device)


#: :func:`run_epochs` reads the scalars of this many epochs at once: a record may hold tensors
#: still on the device, and reading each epoch's would wait for the device every epoch.
LOG_INTERVAL = 10


def run_epochs(
    n_epochs: int,
    train_epoch: Callable[[int], Dict[str, Any]],
    *,
    desc: str,
    verbose: Any,
    log_interval: int = LOG_INTERVAL,
) -> List[Dict[str, float]]:
    """Run ``train_epoch(epoch)`` for ``epoch = 0 .. n_epochs - 1`` and return its records.

    ``train_epoch`` returns a dict with at least ``"loss"``; values are floats or 0-d tensors
    (detached, possibly on the device). Tensors are read to floats once every ``log_interval``
    epochs and after the last one, in one transfer, so the epoch loop never waits for the
    device. The progress bar (shown when ``verbose``) displays the latest read loss, and every
    record is also logged at DEBUG level. A non-finite loss stops training with a
    ``FloatingPointError`` that names the epoch, at the read that sees it (at most
    ``log_interval - 1`` epochs later).
    """
    from tqdm.auto import tqdm

    history: List[Dict[str, float]] = []
    pending: List[Dict[str, Any]] = []
    bar = tqdm(range(n_epochs), desc=desc, disable=not verbose, leave=False)

    def read_pending() -> None:
        records = _read_scalars(pending)
        for offset, record in enumerate(records):
            epoch = len(history)
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(
                    f"{desc}: the training loss became {record['loss']} at epoch {epoch}; "
                    "lower the learning rate or check the input scaling."
                )
            history.append(record)
            logger.debug("%s epoch %d: %s", desc, epoch, record)
        pending.clear()
        if history:
            bar.set_postfix(loss=f"{history[-1]['loss']:.4g}")

    for epoch in bar:
        pending.append(train_epoch(epoch))
        if len(pending) >= max(int(log_interval), 1) or epoch == n_epochs - 1:
            read_pending()
    bar.close()
    return history


def _read_scalars(records: List[Dict[str, Any]]) -> List[Dict[str, float]]:
    """The records with every value as a float; tensors are read in one transfer per device."""
    tensors = [value for record in records for value in record.values() if hasattr(value, "detach")]
    read: Dict[int, float] = {}
    if tensors:
        torch = import_torch("mvlearn_plus")
        by_device: Dict[Any, list] = {}
        for tensor in tensors:
            by_device.setdefault(tensor.device, []).append(tensor)
        for group in by_device.values():
            stacked = torch.stack([t.detach().reshape(()).to(torch.float64) for t in group])
            read.update(zip(map(id, group), stacked.cpu().tolist()))
    return [{key: (read[id(value)] if hasattr(value, "detach") else float(value))
             for key, value in record.items()} for record in records]


#: The restart rule compares the mean training loss over this many final epochs (a single
#: epoch's loss carries dropout, sampling and batch-order noise).
FINAL_LOSS_EPOCHS = 5


def final_loss(history: List[Dict[str, float]]) -> float:
    """Mean training loss of the last :data:`FINAL_LOSS_EPOCHS` epochs."""
    tail = history[-FINAL_LOSS_EPOCHS:]
    return float(np.mean([record["loss"] for record in tail]))


@dataclass
class RestartResult:
    """What one training run hands back to :func:`fit_restarts`."""

    final_loss: float
    payload: Any
    history: List[Dict[str, float]] = field(default_factory=list)
    seed: int = 0


def fit_restarts(
    fit_once: Callable[[int, int], RestartResult],
    seeds: Sequence[int],
    *,
    owner: str,
) -> tuple:
    """Train once per seed and keep the run with the lowest final training loss.

    The rule sees only the training objective (:func:`final_loss`), never labels (DeepMVC's
    label-free protocol). Ties keep the earliest restart. Only the best run so far is kept in
    memory.

    Returns
    -------
    best : RestartResult
        Its ``seed`` is the seed it was trained with.
    losses : ndarray of shape (n_restarts,)
        The final training loss of every restart, in order.
    """
    best, losses = None, []
    for index, seed in enumerate(seeds):
        result = fit_once(index, seed)
        result.seed = int(seed)
        logger.info("%s restart %d/%d: final training loss %.6g", owner, index + 1, len(seeds),
                    result.final_loss)
        losses.append(result.final_loss)
        if best is None or result.final_loss < best.final_loss:
            best = result
    return best, np.array(losses, dtype=np.float64)


def kmeans_seed(seed: int) -> int:
    """The scikit-learn seed of the final k-means of a run trained with ``seed``."""
    return int(seed % (2**31 - 1))
