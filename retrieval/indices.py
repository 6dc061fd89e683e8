"""FAISS indices for retrieval: exact and approximate (HNSW, IVF, IVF-PQ) building and search.

Which GPUs an index goes to is decided in :mod:`retrieval.gpu_placement`; what an approximate
index costs in task recall is measured by :func:`retrieval.metrics.compare_to_exact`.

References
----------
.. [1] J. Johnson, M. Douze and H. Jegou, "Billion-scale similarity search with GPUs", IEEE Trans.
   Big Data 2019 (FAISS).
.. [2] Y. A. Malkov and D. A. Yashunin, "Efficient and robust approximate nearest neighbor search
   using hierarchical navigable small world graphs", IEEE TPAMI 2020 (HNSW).
.. [3] H. Jegou, M. Douze and C. Schmid, "Product quantization for nearest neighbor search", IEEE
   TPAMI 2011 (IVF, PQ).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Tuple

import faiss
import numpy as np

from retrieval._inputs import _to_numpy
from retrieval.gpu_placement import GpuChoice, move_index_to_gpus, resolve_faiss_gpus

logger = logging.getLogger(__name__)

__all__ = ["INDEX_KINDS", "build_index", "search"]

INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfpq")


def _default_pq_m(d: int) -> int:
    # 8 dimensions per sub-quantiser is the usual accuracy/memory compromise (64 bytes at d=512).
    for m in (d // 8, 64, 48, 32, 16, 8, 4, 2, 1):
        if m >= 1 and d % m == 0:
            return m
    return 1


def build_index(
    vectors: Any,
    kind: str = "flat",
    *,
    metric: str = "ip",
    use_gpu: GpuChoice = "auto",
    **params: Any,
) -> "faiss.Index":
    """Build a FAISS index over ``vectors`` (used as given: normalise first for cosine scores).

    Parameters
    ----------
    vectors : array-like of shape (n, d)
        Gallery vectors; converted to contiguous float32.
    kind : {"flat", "hnsw", "ivf", "ivfpq"}, default="flat"
        ``"flat"``: exact ``IndexFlatIP``. ``"hnsw"``: ``IndexHNSWFlat(d, M)``. ``"ivf"``:
        ``IndexIVFFlat`` with a flat quantiser. ``"ivfpq"``: ``IndexIVFPQ`` (``m`` codes of ``nbits``).
    metric : {"ip", "l2"}, default="ip"
        Inner product (cosine on unit vectors) or squared Euclidean distance.
    use_gpu : {"auto", True, False}, int or list of int, default="auto"
        ``"auto"`` moves flat/IVF indices to the GPUs FAISS sees (in a multi-process run: only
        this process's own GPU, see :mod:`retrieval.gpu_placement`); ``True`` requires a GPU
        (RuntimeError otherwise); ints name the GPUs. HNSW has no GPU version and stays on the
        CPU.
    **params
        ``M`` (HNSW degree, 32), ``efConstruction`` (40), ``efSearch`` (128); ``nlist`` (IVF lists,
        about ``4 * sqrt(n)`` capped at ``n // 39`` so that k-means gets >= 39 vectors per list),
        ``nprobe`` (16), ``max_train_per_list`` (50: training subsample size per list), ``seed`` (0),
        ``niter`` (k-means iterations of the coarse quantiser; FAISS's default otherwise);
        ``m`` (PQ sub-quantisers, ``d // 8``) and ``nbits`` (8) for ``"ivfpq"``.

    Returns
    -------
    index : faiss.Index
        The trained index with every vector added (ids = row numbers).

    Notes
    -----
    An IVF index on fewer than 39 vectors cannot be trained sensibly; it falls back to the exact
    flat index (with a warning). IVF-PQ lowers ``nbits`` when there are too few vectors to train
    ``2**nbits`` centroids per sub-quantiser.

    References
    ----------
    .. [1] J. Johnson, M. Douze and H. Jegou, "Billion-scale similarity search with GPUs", 2019.
    .. [2] Y. A. Malkov and D. A. Yashunin, "Efficient and robust approximate nearest neighbor
       search using hierarchical navigable small world graphs", IEEE TPAMI 2020.
    .. [3] H. Jegou, M. Douze and C. Schmid, "Product quantization for nearest neighbor search",
       IEEE TPAMI 2011.
    """
    x = np.ascontiguousarray(_to_numpy(vectors), dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"vectors must be a non-empty 2-D array, got shape {x.shape}.")
    if kind not in INDEX_KINDS:
        raise ValueError(f"Unknown index kind {kind!r}; expected one of {INDEX_KINDS}.")
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}.")
    n, d = x.shape
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    gpus = resolve_faiss_gpus(use_gpu)
    known = {
        "flat": set(),
        "hnsw": {"M", "efConstruction", "efSearch"},
        "ivf": {"nlist", "nprobe", "max_train_per_list", "seed", "niter"},
        "ivfpq": {"nlist", "nprobe", "max_train_per_list", "seed", "niter", "m", "nbits"},
    }[kind]
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"Unknown parameter(s) {sorted(unknown)} for index kind {kind!r}.")

    def flat() -> "faiss.Index":
        return faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)

    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(params.get("M", 32)), faiss_metric)
        index.hnsw.efConstruction = int(params.get("efConstruction", 40))
        index.hnsw.efSearch = int(params.get("efSearch", 128))
        if gpus:
            logger.info("HNSW has no GPU implementation in FAISS; building it on the CPU.")
        index.add(x)
        return index

    if kind == "flat":
        index = flat()
    else:
        nlist = params.get("nlist")
        if nlist is None:
            # FAISS k-means wants >= 39 training points per centroid (it warns below that), which
            # also satisfies the spec's >= 30 per list.
            nlist = min(max(1, int(round(4 * math.sqrt(n)))), n // 39)
        nlist = int(nlist)
        if nlist < 1:
            logger.warning(
                "%d vectors are too few to train an IVF index (>= 30 per list); using the exact "
                "flat index instead.", n,
            )
            kind, index = "flat", flat()
        else:
            quantiser = flat()
            if kind == "ivf":
                index = faiss.IndexIVFFlat(quantiser, d, nlist, faiss_metric)
            else:
                m = int(params.get("m", _default_pq_m(d)))
                if d % m:
                    raise ValueError(f"PQ m={m} must divide the dimension d={d}.")
                nbits = int(params.get("nbits", 8))
                # FAISS wants ~39 training vectors per PQ centroid; shrink the codebook, not the data.
                while nbits > 1 and n < 39 * (1 << nbits):
                    nbits -= 1
                if nbits != int(params.get("nbits", 8)):
                    logger.warning("IVF-PQ on %d vectors: nbits lowered to %d.", n, nbits)
                index = faiss.IndexIVFPQ(quantiser, d, nlist, m, nbits, faiss_metric)
            index.nprobe = min(int(params.get("nprobe", 16)), nlist)
            if "niter" in params:  # fewer k-means iterations: the IVF build cost at 1M scale
                index.cp.niter = int(params["niter"])

    index = move_index_to_gpus(index, gpus)

    if kind in ("ivf", "ivfpq"):
        n_train = min(n, max(39, int(params.get("max_train_per_list", 50))) * nlist)
        if n_train < n:
            rng = np.random.default_rng(int(params.get("seed", 0)))
            train = x[np.sort(rng.choice(n, size=n_train, replace=False))]
        else:
            train = x
        index.train(train)
    index.add(x)
    return index


def search(
    index: "faiss.Index", queries: Any, k: int, batch_size: int = 4096
) -> Tuple[np.ndarray, np.ndarray]:
    """Search ``index`` for the ``k`` best gallery items of every query, in query batches.

    Parameters
    ----------
    index : faiss.Index
        A built index (see :func:`build_index`).
    queries : array-like of shape (n_queries, d)
        Query vectors (float32 contiguous copies are made per batch).
    k : int
        Results per query. Where the index returns fewer (``k`` > gallery size, or an approximate
        search that visits too few items) the rest is padded with index ``-1``.
    batch_size : int, default=4096
        Queries per FAISS call; bounds the memory of GPU and temporary buffers.

    Returns
    -------
    scores : ndarray of shape (n_queries, k), float32
        Similarities (inner product) or distances, best first.
    indices : ndarray of shape (n_queries, k), int64
        Gallery row numbers, ``-1`` for missing results.
    """
    q = _to_numpy(queries)
    if q.ndim != 2:
        raise ValueError(f"queries must be 2-D, got shape {q.shape}.")
    if q.shape[1] != index.d:
        raise ValueError(f"queries have dimension {q.shape[1]}, the index {index.d}.")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    n = q.shape[0]
    scores = np.empty((n, k), dtype=np.float32)
    indices = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        block = np.ascontiguousarray(q[start:stop], dtype=np.float32)
        scores[start:stop], indices[start:stop] = index.search(block, k)
    return scores, indices

