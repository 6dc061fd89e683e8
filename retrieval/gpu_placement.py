"""Which GPUs a FAISS index goes to.

One rule for every index the project builds: ``use_gpu=False`` keeps it on the CPU; ``True``
requires a GPU; ``"auto"`` uses GPUs when FAISS sees one; an int or a list of ints names the
devices. Inside a multi-process run (``torchrun``: ``WORLD_SIZE`` > 1) ``"auto"`` and ``True``
mean **this process's own GPU** (``LOCAL_RANK``), never all of them: eight ranks each spreading
an index over eight GPUs would put 64 replicas on the node and fight over memory.

References
----------
.. [1] J. Johnson, M. Douze and H. Jegou, "Billion-scale similarity search with GPUs", IEEE Trans.
   Big Data 2019 (FAISS).
"""

from __future__ import annotations

import logging
import os
from typing import List, Sequence, Union

import faiss

logger = logging.getLogger(__name__)

__all__ = ["GpuChoice", "faiss_gpu_count", "process_gpu", "resolve_faiss_gpus",
           "move_index_to_gpus"]

#: ``"auto"``, ``True``, ``False``, a GPU id or a list of GPU ids.
GpuChoice = Union[str, bool, int, Sequence[int]]


def faiss_gpu_count() -> int:
    """Number of GPUs FAISS can use (0 with faiss-cpu)."""
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def process_gpu(n_gpus: int | None = None) -> int | None:
    """The GPU of this process in a multi-process run, or None in a single process.

    ``LOCAL_RANK`` (set by ``torchrun``) names it; where each process sees fewer devices than
    there are local ranks (``CUDA_VISIBLE_DEVICES`` set per process), the rank wraps around.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "LOCAL_RANK" not in os.environ:
        return None
    n_gpus = faiss_gpu_count() if n_gpus is None else n_gpus
    if n_gpus == 0:
        return None
    return int(os.environ["LOCAL_RANK"]) % n_gpus


def resolve_faiss_gpus(use_gpu: GpuChoice) -> List[int]:
    """The GPU ids an index should use under ``use_gpu`` (an empty list: the CPU).

    Raises
    ------
    ValueError
        For a value that is none of the accepted forms, or a GPU id FAISS does not see.
    RuntimeError
        For ``use_gpu=True`` (or named GPUs) when FAISS sees no GPU.
    """
    n_gpus = faiss_gpu_count()
    if use_gpu is False:
        return []
    if isinstance(use_gpu, str):
        if use_gpu != "auto":
            raise ValueError(f"use_gpu must be 'auto', True, False or GPU ids, got {use_gpu!r}.")
        if n_gpus == 0:
            return []
        own = process_gpu(n_gpus)
        return [own] if own is not None else list(range(n_gpus))
    if use_gpu is True:
        if n_gpus == 0:
            raise RuntimeError(
                "use_gpu=True but FAISS sees no GPU (faiss-cpu is installed, or no CUDA device): "
                "install faiss-gpu (the optional faiss-gpu-cu12 extra) or pass "
                "use_gpu='auto'/False.")
        own = process_gpu(n_gpus)
        return [own] if own is not None else list(range(n_gpus))
    ids = [use_gpu] if isinstance(use_gpu, int) else list(use_gpu)
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"use_gpu must be 'auto', True, False or GPU ids, got {use_gpu!r}.")
    if n_gpus == 0:
        raise RuntimeError(f"use_gpu={use_gpu!r} names GPUs but FAISS sees none (faiss-cpu is "
                           "installed, or no CUDA device).")
    bad = [i for i in ids if not 0 <= i < n_gpus]
    if bad:
        raise ValueError(f"use_gpu names GPU {bad[0]}, but FAISS sees GPUs 0..{n_gpus - 1}.")
    return ids


def move_index_to_gpus(index: "faiss.Index", gpus: Sequence[int]) -> "faiss.Index":
    """A GPU copy of a CPU index on ``gpus`` (replicated over several; unchanged for ``[]``)."""
    if not gpus:
        return index
    moved = faiss.index_cpu_to_gpus_list(index, gpus=list(gpus))
    logger.info("FAISS index moved to GPU(s) %s.", list(gpus))
    return moved
