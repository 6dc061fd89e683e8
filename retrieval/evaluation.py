"""Image-text retrieval evaluation: recall, ranks, COCO folds, FAISS indices and short-list re-ranking.

Every retrieval number of the project goes through this module (spec ``retrieval.md`` sections 2.2-2.4
and 6), so that all methods are scored the same way:

* :func:`retrieval_metrics` -- R@K both directions, rSum, medR and meanR with **pessimistic ties**
  (a negative scoring equal to the positive ranks ahead of it). Recall comes from a FAISS search with
  the short-list rule of spec 2.3; ranks from a blocked matrix product (never a full score matrix).
* :func:`fold_metrics` and the dataset shortcuts :func:`coco_1k_metrics`, :func:`coco_5k_metrics`,
  :func:`flickr_1k_metrics`.
* :func:`build_index` / :func:`search` -- exact and approximate (HNSW, IVF, IVF-PQ) FAISS indices, on
  GPU when one is available; :func:`compare_to_exact` reports what an approximate index costs in
  task recall.
* :func:`shortlist_rerank`, :func:`rerank_metrics`, :func:`shortlist_recall_loss` -- the multi-vector
  path (spec 2.4): a pooled-vector FAISS short list, exact re-scoring of the candidates, and the recall
  lost against exhaustive scoring.

The module stands on numpy and faiss only; torch tensors are accepted (converted with
``.detach().cpu().numpy()``) but torch is never imported here.

References
----------
.. [1] A. Karpathy and L. Fei-Fei, "Deep visual-semantic alignments for generating image descriptions",
   CVPR 2015 (the Flickr30K / COCO test splits and the 1K/5K protocols).
.. [2] F. Faghri, D. J. Fleet, J. R. Kiros and S. Fidler, "VSE++: Improving visual-semantic embeddings
   with hard negatives", BMVC 2018 (R@K, rSum, medR as used by the VSE family).
.. [3] J. Johnson, M. Douze and H. Jegou, "Billion-scale similarity search with GPUs", IEEE Trans. Big
   Data 2019 (FAISS).
.. [4] Y. A. Malkov and D. A. Yashunin, "Efficient and robust approximate nearest neighbor search using
   hierarchical navigable small world graphs", IEEE TPAMI 2020 (HNSW).
.. [5] H. Jegou, M. Douze and C. Schmid, "Product quantization for nearest neighbor search", IEEE TPAMI
   2011 (IVF, PQ).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import faiss
import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "build_index",
    "search",
    "retrieval_metrics",
    "fold_metrics",
    "coco_1k_metrics",
    "coco_5k_metrics",
    "flickr_1k_metrics",
    "compare_to_exact",
    "shortlist_rerank",
    "rerank_metrics",
    "shortlist_recall_loss",
]

INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfpq")

# Score blocks of the rank computation stay below this many float32 entries (64 MB), whatever the
# gallery size: the full n_images x n_texts matrix is never materialised.
_MAX_BLOCK_ENTRIES = 1 << 24


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        try:
            x = x.numpy()
        except TypeError:
            # bfloat16 (and other dtypes numpy lacks) must be widened before the conversion.
            x = x.float().numpy()
    return np.asarray(x)


def _check_embeddings(x: Any, name: str) -> np.ndarray:
    """Validate a 2-D finite embedding matrix and return it L2-normalised in float32."""
    x = _to_numpy(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {x.shape}.")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}).")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}.")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise ValueError(f"{name} has non-finite values (first in row {int(np.argmin(finite))}).")
    norms = np.linalg.norm(x, axis=1)
    zero = norms == 0
    if zero.any():
        raise ValueError(
            f"{name} row {int(np.flatnonzero(zero)[0])} is a zero vector: it has no direction "
            "and cannot be L2-normalised."
        )
    return np.ascontiguousarray(x / norms[:, None], dtype=np.float32)


def _check_ids(text_image_ids: Any, n_images: int, n_texts: int) -> np.ndarray:
    """Validate the caption -> image map; every image needs at least one caption."""
    ids = _to_numpy(text_image_ids)
    if ids.ndim != 1:
        raise ValueError(f"text_image_ids must be 1-D, got shape {ids.shape}.")
    if ids.shape[0] != n_texts:
        raise ValueError(
            f"text_image_ids has {ids.shape[0]} entries but there are {n_texts} text embeddings."
        )
    if not (np.issubdtype(ids.dtype, np.integer) and ids.dtype != np.bool_):
        raise ValueError(f"text_image_ids must be integers, got dtype {ids.dtype}.")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_images):
        bad = int(np.flatnonzero((ids < 0) | (ids >= n_images))[0])
        raise ValueError(
            f"text_image_ids[{bad}] = {ids[bad]} is not an image index in [0, {n_images})."
        )
    counts = np.bincount(ids, minlength=n_images)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise ValueError(
            f"{missing.size} image(s) have no caption (first: image {int(missing[0])}); every image "
            "needs at least one caption for image-to-text recall."
        )
    return ids


def _check_ks(ks: Sequence[int]) -> Tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks}.")
    return ks


def _validate(
    image_embeddings: Any, text_embeddings: Any, text_image_ids: Any
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = _check_embeddings(image_embeddings, "image_embeddings")
    texts = _check_embeddings(text_embeddings, "text_embeddings")
    if images.shape[1] != texts.shape[1]:
        raise ValueError(
            f"image and text embeddings differ in dimension: {images.shape[1]} vs {texts.shape[1]}."
        )
    ids = _check_ids(text_image_ids, images.shape[0], texts.shape[0])
    return images, texts, ids


# --------------------------------------------------------------------------------------------------
# FAISS indices
# --------------------------------------------------------------------------------------------------
def _want_gpu(use_gpu: Union[str, bool]) -> bool:
    if use_gpu not in ("auto", True, False):
        raise ValueError(f"use_gpu must be 'auto', True or False, got {use_gpu!r}.")
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is True and n_gpus == 0:
        raise RuntimeError(
            "use_gpu=True but FAISS sees no GPU (faiss-cpu is installed, or no CUDA device): install "
            "faiss-gpu (the optional faiss-gpu-cu12 extra) or pass use_gpu='auto'/False."
        )
    return use_gpu is not False and n_gpus > 0


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
    use_gpu: Union[str, bool] = "auto",
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
    use_gpu : {"auto", True, False}, default="auto"
        ``"auto"`` moves flat/IVF indices to all GPUs when FAISS sees one; ``True`` requires a GPU
        (RuntimeError otherwise). HNSW has no GPU version and stays on the CPU.
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
    gpu = _want_gpu(use_gpu)
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
        if gpu:
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

    if gpu:
        index = faiss.index_cpu_to_all_gpus(index)
        logger.info("FAISS %s index moved to %d GPU(s).", kind, faiss.get_num_gpus())

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


# --------------------------------------------------------------------------------------------------
# Ranks
# --------------------------------------------------------------------------------------------------
def _ranks_from_lists(
    scores: np.ndarray, candidate_owner: np.ndarray, query_owner: np.ndarray
) -> np.ndarray:
    """0-based pessimistic ranks from per-query candidate lists (spec 2.3).

    A candidate is a positive when its owner (the image it belongs to) equals the query's owner;
    owner ``-1`` marks a missing result, neither positive nor negative. The rank is the number of
    listed negatives scoring >= the best listed positive; ``inf`` when no positive is listed.
    """
    valid = candidate_owner >= 0
    positive = valid & (candidate_owner == query_owner[:, None])
    s_pos = np.where(positive, scores, -np.inf).max(axis=1)
    ahead = valid & ~positive & (scores >= s_pos[:, None])
    ranks = ahead.sum(axis=1).astype(np.float64)
    ranks[~positive.any(axis=1)] = np.inf
    return ranks


def _full_ranks(
    images: np.ndarray, texts: np.ndarray, ids: np.ndarray, batch_size: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Exact 0-based pessimistic ranks of every image (i2t) and caption (t2i), by blocked matmul."""
    n_i, n_t = images.shape[0], texts.shape[0]

    # i2t: image blocks against all captions; the best positive comes from the same block product.
    order = np.argsort(ids, kind="stable")
    starts = np.searchsorted(ids[order], np.arange(n_i + 1))
    ranks_i2t = np.empty(n_i, dtype=np.float64)
    rows = max(1, min(batch_size, _MAX_BLOCK_ENTRIES // n_t))
    for a in range(0, n_i, rows):
        b = min(n_i, a + rows)
        s = images[a:b] @ texts.T
        caps = order[starts[a]:starts[b]]
        local = ids[caps] - a
        pos_scores = s[local, caps]
        s_pos = np.full(b - a, -np.inf, dtype=np.float32)
        np.maximum.at(s_pos, local, pos_scores)
        n_ge = np.count_nonzero(s >= s_pos[:, None], axis=1)
        pos_ge = np.bincount(local, weights=pos_scores >= s_pos[local], minlength=b - a)
        ranks_i2t[a:b] = n_ge - pos_ge

    # t2i: caption blocks against all images; subtract the positive itself from the >= count.
    ranks_t2i = np.empty(n_t, dtype=np.float64)
    rows = max(1, min(batch_size, _MAX_BLOCK_ENTRIES // n_i))
    for a in range(0, n_t, rows):
        b = min(n_t, a + rows)
        s = texts[a:b] @ images.T
        s_pos = s[np.arange(b - a), ids[a:b]]
        ranks_t2i[a:b] = np.count_nonzero(s >= s_pos[:, None], axis=1) - 1
    return ranks_i2t, ranks_t2i


def _recall(ranks: np.ndarray, k: int) -> float:
    return float(100.0 * np.mean(ranks < k))


def _assemble(
    ranks_i2t: np.ndarray,
    ranks_t2i: np.ndarray,
    ks: Tuple[int, ...],
    full_i2t: Optional[np.ndarray] = None,
    full_t2i: Optional[np.ndarray] = None,
) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = _recall(ranks_i2t, k)
    for k in ks:
        out[f"t2i_r{k}"] = _recall(ranks_t2i, k)
    out["rsum"] = float(sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks))
    for name, full in (("i2t", full_i2t), ("t2i", full_t2i)):
        if full is None:
            out[f"{name}_medr"] = float("nan")
            out[f"{name}_meanr"] = float("nan")
        else:
            out[f"{name}_medr"] = float(math.floor(np.median(full)) + 1)
            out[f"{name}_meanr"] = float(np.mean(full) + 1)
    return out


def _shortlist_run(
    images: np.ndarray,
    texts: np.ndarray,
    ids: np.ndarray,
    ks: Tuple[int, ...],
    index: str,
    index_params: Optional[dict],
    batch_size: int,
    use_gpu: Union[str, bool],
) -> Dict[str, Any]:
    """Both FAISS searches with the short-list rule; returns ranks, raw lists and timings."""
    params = dict(index_params or {})
    k_max = max(ks)
    p_max = int(np.bincount(ids, minlength=images.shape[0]).max())
    out: Dict[str, Any] = {"build_s": 0.0, "search_s": 0.0}

    # i2t: images query the caption gallery; up to p_max listed captions can be positives.
    t0 = time.perf_counter()
    text_index = build_index(texts, index, use_gpu=use_gpu, **params)
    t1 = time.perf_counter()
    k = min(k_max + p_max, texts.shape[0])
    scores, cand = search(text_index, images, k, batch_size)
    t2 = time.perf_counter()
    del text_index
    owner = np.where(cand >= 0, ids[np.clip(cand, 0, None)], -1)
    out["ranks_i2t"] = _ranks_from_lists(scores, owner, np.arange(images.shape[0]))
    out["lists_i2t"] = cand
    out["build_s"] += t1 - t0
    out["search_s"] += t2 - t1

    # t2i: captions query the image gallery; exactly one positive per caption.
    t0 = time.perf_counter()
    image_index = build_index(images, index, use_gpu=use_gpu, **params)
    t1 = time.perf_counter()
    k = min(k_max + 1, images.shape[0])
    scores, cand = search(image_index, texts, k, batch_size)
    t2 = time.perf_counter()
    del image_index
    out["ranks_t2i"] = _ranks_from_lists(scores, cand, ids)
    out["lists_t2i"] = cand
    out["build_s"] += t1 - t0
    out["search_s"] += t2 - t1
    return out


# --------------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------------
def retrieval_metrics(
    image_embeddings: Any,
    text_embeddings: Any,
    text_image_ids: Any,
    ks: Sequence[int] = (1, 5, 10),
    *,
    index: str = "flat",
    index_params: Optional[dict] = None,
    full_ranks: Union[str, bool] = "auto",
    max_rank_pairs: int = 10**10,
    batch_size: int = 4096,
    use_gpu: Union[str, bool] = "auto",
) -> Dict[str, float]:
    """Image-to-text and text-to-image retrieval metrics (R@K, rSum, medR, meanR).

    Scores are cosine similarities: both embedding sets are L2-normalised in float32. A query's
    0-based rank is the number of **negatives scoring >= its best positive** (pessimistic ties): a
    collapsed model whose embeddings are all equal scores about 0 recall, not 100.

    Parameters
    ----------
    image_embeddings : array-like of shape (n_images, d)
        One row per unique image (numpy array or torch tensor).
    text_embeddings : array-like of shape (n_texts, d)
        One row per caption, in any order.
    text_image_ids : array-like of int, shape (n_texts,)
        ``text_image_ids[c]`` is the row of caption ``c``'s image. Any number of captions per image,
        but at least one.
    ks : sequence of int, default=(1, 5, 10)
        The K of R@K; keys ``i2t_r{K}`` and ``t2i_r{K}``.
    index : {"flat", "hnsw", "ivf", "ivfpq"}, default="flat"
        FAISS index of the recall search; approximate indices may miss a positive (a miss).
    index_params : dict, optional
        Extra parameters of :func:`build_index` (``efSearch``, ``nprobe``, ``m``...).
    full_ranks : {"auto", True, False}, default="auto"
        Compute the exact ranks behind medR/meanR with a blocked matrix product: ``"auto"`` does so
        when ``n_images * n_texts <= max_rank_pairs``, else reports ``nan``.
    max_rank_pairs : int, default=10**10
        Size limit of the ``"auto"`` rank computation.
    batch_size : int, default=4096
        Queries per FAISS call and most rows per matmul block (blocks also stay under 2**24
        entries).
    use_gpu : {"auto", True, False}, default="auto"
        Passed to :func:`build_index`.

    Returns
    -------
    metrics : dict of str to float
        ``i2t_r{K}`` and ``t2i_r{K}`` in percent, ``rsum`` (their sum), ``i2t_medr``, ``i2t_meanr``,
        ``t2i_medr``, ``t2i_meanr`` (1-based; ``nan`` when not computed).

    Notes
    -----
    Recall uses the short-list rule of the spec (section 2.3): each query retrieves
    ``k = K_max + P_max`` items (``P_max``: most captions of an image for i2t, 1 for t2i; capped at
    the gallery size); the best positive score is read from the same search output and the rank is
    the number of returned negatives scoring >= it; no positive returned is a miss. Under exact
    search this equals full ranking for every ``K <= K_max``, ties included: if the positive ties
    with the last returned score, the list already holds >= ``K_max`` negatives ahead of it.

    medR is ``floor(median rank) + 1`` and meanR ``mean rank + 1``.

    References
    ----------
    .. [1] A. Karpathy and L. Fei-Fei, "Deep visual-semantic alignments for generating image
       descriptions", CVPR 2015.
    .. [2] F. Faghri, D. J. Fleet, J. R. Kiros and S. Fidler, "VSE++: Improving visual-semantic
       embeddings with hard negatives", BMVC 2018.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images = rng.normal(size=(20, 8))
    >>> ids = np.repeat(np.arange(20), 5)
    >>> texts = images[ids] + 0.1 * rng.normal(size=(100, 8))
    >>> m = retrieval_metrics(images, texts, ids)
    >>> m["i2t_r10"]
    100.0
    """
    ks = _check_ks(ks)
    if full_ranks not in ("auto", True, False):
        raise ValueError(f"full_ranks must be 'auto', True or False, got {full_ranks!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    images, texts, ids = _validate(image_embeddings, text_embeddings, text_image_ids)
    run = _shortlist_run(images, texts, ids, ks, index, index_params, batch_size, use_gpu)
    n_pairs = images.shape[0] * texts.shape[0]
    do_full = full_ranks is True or (full_ranks == "auto" and n_pairs <= max_rank_pairs)
    full_i2t = full_t2i = None
    if do_full:
        full_i2t, full_t2i = _full_ranks(images, texts, ids, batch_size)
    elif full_ranks == "auto":
        logger.info(
            "medR/meanR skipped: %d image-text pairs > max_rank_pairs=%d (pass full_ranks=True).",
            n_pairs, max_rank_pairs,
        )
    return _assemble(run["ranks_i2t"], run["ranks_t2i"], ks, full_i2t, full_t2i)


def fold_metrics(
    image_embeddings: Any,
    text_embeddings: Any,
    text_image_ids: Any,
    n_folds: int = 5,
    fold_size: int = 1000,
    metric_fn: Optional[Callable[..., Dict[str, float]]] = None,
    **kw: Any,
) -> Dict[str, Any]:
    """Metrics averaged over folds of consecutive images (the COCO 1K protocol).

    Fold ``f`` holds images ``f * fold_size ... (f + 1) * fold_size - 1`` (the canonical image order
    is the row order of ``image_embeddings``) and every caption pointing at them; each metric is
    computed per fold, then averaged.

    Parameters
    ----------
    image_embeddings, text_embeddings, text_image_ids
        As in :func:`retrieval_metrics`.
    n_folds : int, default=5
        Number of folds.
    fold_size : int, default=1000
        Images per fold. Images beyond ``n_folds * fold_size`` are ignored (with a warning).
    metric_fn : callable, optional
        ``metric_fn(fold_images, fold_texts, fold_ids, **kw) -> dict`` computing one fold's
        metrics (default :func:`retrieval_metrics`); a multi-vector method passes its own
        scoring. Embeddings may then have any row width.
    **kw
        Passed to ``metric_fn`` for every fold.

    Returns
    -------
    metrics : dict
        The fold means under the keys of :func:`retrieval_metrics`, and ``"folds"``: the list of
        per-fold metric dicts.

    References
    ----------
    .. [1] A. Karpathy and L. Fei-Fei, "Deep visual-semantic alignments for generating image
       descriptions", CVPR 2015.
    """
    if n_folds < 1 or fold_size < 1:
        raise ValueError(f"n_folds and fold_size must be >= 1, got {n_folds}, {fold_size}.")
    images = _to_numpy(image_embeddings)
    texts = _to_numpy(text_embeddings)
    if images.ndim != 2 or texts.ndim != 2:
        raise ValueError("image_embeddings and text_embeddings must be 2-D.")
    metric_fn = retrieval_metrics if metric_fn is None else metric_fn
    n_images = images.shape[0]
    ids = _check_ids(text_image_ids, n_images, texts.shape[0])
    needed = n_folds * fold_size
    if n_images < needed:
        raise ValueError(
            f"{n_folds} folds of {fold_size} images need {needed} images, got {n_images}."
        )
    if n_images > needed:
        logger.warning(
            "fold_metrics uses the first %d of %d images; the rest are ignored.", needed, n_images
        )
    folds: List[Dict[str, float]] = []
    for f in range(n_folds):
        lo, hi = f * fold_size, (f + 1) * fold_size
        caps = np.flatnonzero((ids >= lo) & (ids < hi))
        folds.append(metric_fn(images[lo:hi], texts[caps], ids[caps] - lo, **kw))
    out: Dict[str, Any] = {key: float(np.mean([m[key] for m in folds])) for key in folds[0]}
    out["folds"] = folds
    return out


def coco_1k_metrics(
    image_embeddings: Any, text_embeddings: Any, text_image_ids: Any, **kw: Any
) -> Dict[str, Any]:
    """COCO 1K: five folds of 1,000 consecutive test images, metrics averaged (see :func:`fold_metrics`).

    References
    ----------
    .. [1] A. Karpathy and L. Fei-Fei, "Deep visual-semantic alignments for generating image
       descriptions", CVPR 2015.
    """
    return fold_metrics(image_embeddings, text_embeddings, text_image_ids, 5, 1000, **kw)


def protocol_metrics(
    image_embeddings: Any,
    text_embeddings: Any,
    text_image_ids: Any,
    protocol: str = "full",
    metric_fn: Optional[Callable[..., Dict[str, float]]] = None,
    **kw: Any,
) -> Dict[str, float]:
    """Metrics of a gallery under an evaluation protocol.

    ``"full"``: the whole gallery; ``"1k-folds"``: :func:`fold_metrics` (five folds of 1,000
    images, means only). ``metric_fn`` scores one gallery (default :func:`retrieval_metrics`).
    """
    metric_fn = retrieval_metrics if metric_fn is None else metric_fn
    if protocol == "1k-folds":
        metrics = fold_metrics(image_embeddings, text_embeddings, text_image_ids,
                               metric_fn=metric_fn, **kw)
        metrics.pop("folds", None)
        return metrics
    if protocol != "full":
        raise ValueError(f"protocol must be 'full' or '1k-folds', got {protocol!r}")
    return metric_fn(image_embeddings, text_embeddings, text_image_ids, **kw)


def _check_count(image_embeddings: Any, expected: int, name: str) -> None:
    n = _to_numpy(image_embeddings).shape[0]
    if n != expected:
        raise ValueError(f"{name} expects {expected} test images, got {n}.")


def coco_5k_metrics(
    image_embeddings: Any, text_embeddings: Any, text_image_ids: Any, **kw: Any
) -> Dict[str, float]:
    """COCO 5K: :func:`retrieval_metrics` on all 5,000 Karpathy test images (count checked).

    References
    ----------
    .. [1] A. Karpathy and L. Fei-Fei, "Deep visual-semantic alignments for generating image
       descriptions", CVPR 2015.
    """
    _check_count(image_embeddings, 5000, "coco_5k_metrics")
    return retrieval_metrics(image_embeddings, text_embeddings, text_image_ids, **kw)


def flickr_1k_metrics(
    image_embeddings: Any, text_embeddings: Any, text_image_ids: Any, **kw: Any
) -> Dict[str, float]:
    """Flickr30K 1K: :func:`retrieval_metrics` on the 1,000 Karpathy test images (count checked).

    References
    ----------
    .. [1] A. Karpathy and L. Fei-Fei, "Deep visual-semantic alignments for generating image
       descriptions", CVPR 2015.
    """
    _check_count(image_embeddings, 1000, "flickr_1k_metrics")
    return retrieval_metrics(image_embeddings, text_embeddings, text_image_ids, **kw)


def _recall_keys(metrics: Dict[str, float]) -> List[str]:
    """The R@K keys and rsum of a metric dict (the ones a delta is reported for)."""
    return [k for k in metrics if not k.endswith(("medr", "meanr"))]


def _top_overlap(exact: np.ndarray, approx: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    k = min(k, exact.shape[1], approx.shape[1])
    a, b = exact[:, :k], approx[:, :k]
    try:
        from faiss.contrib.evaluation import knn_intersection_measure

        return float(knn_intersection_measure(a, b))
    except ImportError:  # older FAISS without contrib.evaluation
        inter = sum(np.intersect1d(x, y).size for x, y in zip(a, b))
        return float(inter / a.size)


def compare_to_exact(
    image_embeddings: Any,
    text_embeddings: Any,
    text_image_ids: Any,
    index: str,
    ks: Sequence[int] = (1, 5, 10),
    *,
    batch_size: int = 4096,
    use_gpu: Union[str, bool] = "auto",
    **params: Any,
) -> Dict[str, Any]:
    """What an approximate index costs in task recall and buys in time, against exact search.

    Parameters
    ----------
    image_embeddings, text_embeddings, text_image_ids
        As in :func:`retrieval_metrics`.
    index : {"flat", "hnsw", "ivf", "ivfpq"}
        The index to compare with the exact ``IndexFlatIP``.
    ks : sequence of int, default=(1, 5, 10)
        The K of R@K.
    batch_size : int, default=4096
        Queries per FAISS call.
    use_gpu : {"auto", True, False}, default="auto"
        Passed to :func:`build_index` (both indices).
    **params
        Index parameters (``efSearch``, ``nprobe``, ``nlist``, ``m``...).

    Returns
    -------
    report : dict
        ``"exact"`` and ``"approx"``: recall dicts (medR/meanR are ``nan``: ranks do not depend on
        the index); ``"delta"``: approx minus exact for every recall key and ``rsum`` (negative = loss);
        ``"build_s"`` / ``"search_s"``: ``{"exact": ..., "approx": ...}`` in seconds (both directions);
        ``"top10_overlap"``: ``{"i2t": ..., "t2i": ...}``, the fraction of the exact top-10 lists the
        approximate search returns; ``"index"`` and ``"params"``.

    References
    ----------
    .. [1] J. Johnson, M. Douze and H. Jegou, "Billion-scale similarity search with GPUs", 2019.
    """
    ks = _check_ks(ks)
    images, texts, ids = _validate(image_embeddings, text_embeddings, text_image_ids)
    # A top-10 overlap needs lists of >= 10 even when the recall short list would be shorter.
    ks_search = tuple(sorted(set(ks) | {10}))
    exact = _shortlist_run(images, texts, ids, ks_search, "flat", None, batch_size, use_gpu)
    approx = _shortlist_run(images, texts, ids, ks_search, index, params, batch_size, use_gpu)
    m_exact = _assemble(exact["ranks_i2t"], exact["ranks_t2i"], ks)
    m_approx = _assemble(approx["ranks_i2t"], approx["ranks_t2i"], ks)
    return {
        "exact": m_exact,
        "approx": m_approx,
        "delta": {k: m_approx[k] - m_exact[k] for k in _recall_keys(m_exact)},
        "build_s": {"exact": exact["build_s"], "approx": approx["build_s"]},
        "search_s": {"exact": exact["search_s"], "approx": approx["search_s"]},
        "top10_overlap": {
            d: _top_overlap(exact[f"lists_{d}"], approx[f"lists_{d}"], 10) for d in ("i2t", "t2i")
        },
        "index": index,
        "params": dict(params),
    }


# --------------------------------------------------------------------------------------------------
# Multi-vector path: pooled short list + exact re-scoring
# --------------------------------------------------------------------------------------------------
RescoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def shortlist_rerank(
    query_pooled: Any,
    gallery_pooled: Any,
    k_short: int,
    rescore_fn: RescoreFn,
    *,
    batch_size: int = 1024,
    normalize: bool = True,
    use_gpu: Union[str, bool] = "auto",
) -> Tuple[np.ndarray, np.ndarray]:
    """Short-list with FAISS on pooled vectors, then re-score the candidates exactly.

    For a model whose score is not an inner product of two fixed vectors (AVSE's MaxSim over
    chunks), an exact ``IndexFlatIP`` search on pooled vectors picks ``k_short`` candidates per
    query and ``rescore_fn`` computes their true scores. Anything outside the short list is never
    scored: a positive outside it is a miss (see :func:`rerank_metrics`).

    Parameters
    ----------
    query_pooled : array-like of shape (n_queries, d)
        Pooled query vectors (images for i2t, captions for t2i).
    gallery_pooled : array-like of shape (n_gallery, d)
        Pooled gallery vectors.
    k_short : int
        Candidates per query (capped at the gallery size).
    rescore_fn : callable
        ``rescore_fn(query_idx, candidate_idx) -> scores``: ``query_idx`` int64 of shape (q,),
        ``candidate_idx`` int64 of shape (q, k_short) (gallery rows), returns the exact scores of
        shape (q, k_short) (higher = better).
    batch_size : int, default=1024
        Queries per search and per ``rescore_fn`` call.
    normalize : bool, default=True
        L2-normalise the pooled vectors first (cosine short list).
    use_gpu : {"auto", True, False}, default="auto"
        Passed to :func:`build_index`.

    Returns
    -------
    scores : ndarray of shape (n_queries, k_short), float32
        Exact scores of the candidates, best first.
    indices : ndarray of shape (n_queries, k_short), int64
        Gallery rows of the candidates in the same order.

    References
    ----------
    .. [1] J. Johnson, M. Douze and H. Jegou, "Billion-scale similarity search with GPUs", 2019.
    .. [2] O. Khattab and M. Zaharia, "ColBERT: Efficient and effective passage search via
       contextualized late interaction over BERT", SIGIR 2020 (candidate generation + late
       interaction re-ranking).
    """
    if normalize:
        q = _check_embeddings(query_pooled, "query_pooled")
        g = _check_embeddings(gallery_pooled, "gallery_pooled")
    else:
        q = np.ascontiguousarray(_to_numpy(query_pooled), dtype=np.float32)
        g = np.ascontiguousarray(_to_numpy(gallery_pooled), dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"pooled vectors must be 2-D with equal dimension, got {q.shape}, {g.shape}.")
    if k_short < 1:
        raise ValueError(f"k_short must be >= 1, got {k_short}.")
    k = min(int(k_short), g.shape[0])
    index = build_index(g, "flat", use_gpu=use_gpu)
    n = q.shape[0]
    out_scores = np.empty((n, k), dtype=np.float32)
    out_idx = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, batch_size):
        b = min(n, a + batch_size)
        _, cand = index.search(np.ascontiguousarray(q[a:b]), k)
        query_idx = np.arange(a, b, dtype=np.int64)
        exact = np.asarray(_to_numpy(rescore_fn(query_idx, cand)), dtype=np.float32)
        if exact.shape != cand.shape:
            raise ValueError(
                f"rescore_fn returned shape {exact.shape}, expected {cand.shape} (queries x k_short)."
            )
        order = np.argsort(-exact, axis=1, kind="stable")
        out_scores[a:b] = np.take_along_axis(exact, order, axis=1)
        out_idx[a:b] = np.take_along_axis(cand, order, axis=1)
    return out_scores, out_idx


def rerank_metrics(
    i2t: Tuple[Any, Any],
    t2i: Tuple[Any, Any],
    text_image_ids: Any,
    ks: Sequence[int] = (1, 5, 10),
) -> Dict[str, float]:
    """Recall metrics from per-query candidate lists with scores (e.g. :func:`shortlist_rerank`).

    Within a list the rank rule is that of :func:`retrieval_metrics` (negatives scoring >= the best
    listed positive rank ahead); a query whose positives are all outside its list is a miss.

    Parameters
    ----------
    i2t : tuple (scores, indices)
        Arrays of shape (n_images, k): candidate captions per image and their scores.
    t2i : tuple (scores, indices)
        Arrays of shape (n_texts, k'): candidate images per caption and their scores.
    text_image_ids : array-like of int, shape (n_texts,)
        Image row of every caption.
    ks : sequence of int, default=(1, 5, 10)
        The K of R@K.

    Returns
    -------
    metrics : dict of str to float
        The keys of :func:`retrieval_metrics`; medR/meanR are ``nan`` (lists give no full ranks).
    """
    ks = _check_ks(ks)
    s_i2t, c_i2t = (_to_numpy(a) for a in i2t)
    s_t2i, c_t2i = (_to_numpy(a) for a in t2i)
    if s_i2t.shape != c_i2t.shape or s_t2i.shape != c_t2i.shape:
        raise ValueError("scores and indices of a direction must have the same shape.")
    if s_i2t.ndim != 2 or s_t2i.ndim != 2:
        raise ValueError("scores and indices must be 2-D (queries x candidates).")
    n_images, n_texts = s_i2t.shape[0], s_t2i.shape[0]
    ids = _check_ids(text_image_ids, n_images, n_texts)
    c_i2t = c_i2t.astype(np.int64)
    c_t2i = c_t2i.astype(np.int64)
    if c_i2t.max(initial=-1) >= n_texts or c_t2i.max(initial=-1) >= n_images:
        raise ValueError("candidate indices exceed the gallery size.")
    owner = np.where(c_i2t >= 0, ids[np.clip(c_i2t, 0, None)], -1)
    ranks_i2t = _ranks_from_lists(s_i2t, owner, np.arange(n_images))
    ranks_t2i = _ranks_from_lists(s_t2i, c_t2i, ids)
    return _assemble(ranks_i2t, ranks_t2i, ks)


def _exhaustive_ranks(
    score_fn: ScoreFn, ids: np.ndarray, n_images: int, k_keep: int, block_images: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Ranks under exhaustive scoring, one pass of image blocks x all captions.

    i2t ranks are exact (every row is complete in its block). For t2i a running top-``k_keep``
    per caption column is merged across blocks and the short-list rule applied, which is exact for
    R@K with K <= k_keep - 1; scores always come from the same ``score_fn`` outputs.
    """
    n_t = ids.shape[0]
    all_texts = np.arange(n_t, dtype=np.int64)
    ranks_i2t = np.empty(n_images, dtype=np.float64)
    top_s = np.full((n_t, k_keep), -np.inf, dtype=np.float32)
    top_i = np.full((n_t, k_keep), -1, dtype=np.int64)
    for a in range(0, n_images, block_images):
        b = min(n_images, a + block_images)
        img = np.arange(a, b, dtype=np.int64)
        s = np.asarray(_to_numpy(score_fn(img, all_texts)), dtype=np.float32)
        if s.shape != (b - a, n_t):
            raise ValueError(f"score_fn returned shape {s.shape}, expected {(b - a, n_t)}.")
        owner = np.broadcast_to(ids, s.shape)
        ranks_i2t[a:b] = _ranks_from_lists(s, owner, img)
        # Merge this block's images into every caption's running top list.
        merged_s = np.concatenate([top_s, s.T], axis=1)
        merged_i = np.concatenate([top_i, np.broadcast_to(img, (n_t, b - a))], axis=1)
        keep = np.argpartition(-merged_s, k_keep - 1, axis=1)[:, :k_keep]
        top_s = np.take_along_axis(merged_s, keep, axis=1)
        top_i = np.take_along_axis(merged_i, keep, axis=1)
    ranks_t2i = _ranks_from_lists(top_s, top_i, ids)
    return ranks_i2t, ranks_t2i


def exhaustive_metrics(
    score_fn: ScoreFn,
    text_image_ids: Any,
    n_images: int,
    ks: Sequence[int] = (1, 5, 10),
    *,
    block_images: Optional[int] = None,
) -> Dict[str, float]:
    """Recall metrics of a model scored on every (image, caption) pair by ``score_fn``.

    For scores that are not inner products of two fixed vectors (AVSE's MaxSim): one pass of
    image blocks against all captions. The rank rule is that of :func:`retrieval_metrics`
    (pessimistic ties); i2t ranks are exact, t2i ranks exact up to ``max(ks)``; medR/meanR are
    ``nan``.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(image_idx, text_idx) -> (len(image_idx), len(text_idx))`` scores of a block.
    text_image_ids : array-like of int, shape (n_texts,)
    n_images : int
    ks : sequence of int, default=(1, 5, 10)
    block_images : int, optional
        Images per ``score_fn`` call (default: blocks of about 2**24 scores).

    Returns
    -------
    metrics : dict of str to float
    """
    ks = _check_ks(ks)
    ids = np.asarray(_to_numpy(text_image_ids))
    ids = _check_ids(ids, n_images, ids.shape[0])
    if block_images is None:
        block_images = max(1, _MAX_BLOCK_ENTRIES // max(1, ids.shape[0]))
    ranks_i2t, ranks_t2i = _exhaustive_ranks(score_fn, ids, n_images,
                                             min(max(ks) + 1, n_images), block_images)
    return _assemble(ranks_i2t, ranks_t2i, ks)


def _rescore_from_score_fn(score_fn: ScoreFn, direction: str) -> RescoreFn:
    """Turn a block score function into a per-query candidate re-scorer (one call per query)."""

    def rescore(query_idx: np.ndarray, cand: np.ndarray) -> np.ndarray:
        out = np.empty(cand.shape, dtype=np.float32)
        for r, (qi, c) in enumerate(zip(query_idx, cand)):
            if direction == "i2t":
                out[r] = np.asarray(_to_numpy(score_fn(np.array([qi]), c))).reshape(-1)
            else:
                out[r] = np.asarray(_to_numpy(score_fn(c, np.array([qi])))).reshape(-1)
        return out

    return rescore


def shortlist_recall_loss(
    image_pooled: Any,
    text_pooled: Any,
    text_image_ids: Any,
    score_fn: ScoreFn,
    k_shorts: Sequence[int] = (50, 100, 200),
    ks: Sequence[int] = (1, 5, 10),
    *,
    pair_score_fn: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
    block_images: Optional[int] = None,
    batch_size: int = 1024,
    use_gpu: Union[str, bool] = "auto",
) -> Dict[str, Any]:
    """Recall lost by pooled short-listing + exact re-ranking, against exhaustive scoring.

    The reference is exhaustive scoring of every (image, caption) pair with ``score_fn`` (spec
    2.4); for each ``k_short`` both directions are short-listed with :func:`shortlist_rerank` on
    the pooled vectors and re-scored exactly.

    Parameters
    ----------
    image_pooled : array-like of shape (n_images, d)
        Pooled image vectors used only to build the short lists.
    text_pooled : array-like of shape (n_texts, d)
        Pooled caption vectors.
    text_image_ids : array-like of int, shape (n_texts,)
        Image row of every caption.
    score_fn : callable
        ``score_fn(image_idx, text_idx) -> (len(image_idx), len(text_idx))`` exact scores of a block
        (e.g. a multi-vector model's block-wise score).
    k_shorts : sequence of int, default=(50, 100, 200)
        Short-list lengths to evaluate (each capped at the gallery size).
    ks : sequence of int, default=(1, 5, 10)
        The K of R@K.
    pair_score_fn : callable, optional
        ``pair_score_fn(image_idx, text_idx) -> (P,)`` scores of P aligned pairs; re-scores the
        candidates in one call per batch. Without it ``score_fn`` is called once per query.
    block_images : int, optional
        Images per exhaustive ``score_fn`` call (default: blocks of about 2**24 scores).
    batch_size : int, default=1024
        Queries per short-list batch.
    use_gpu : {"auto", True, False}, default="auto"
        Passed to :func:`build_index`.

    Returns
    -------
    report : dict
        ``"exhaustive"``: recall dict of exhaustive scoring; ``"exhaustive_s"``: its time;
        ``"shortlist"``: ``{k_short: {"metrics", "delta", "time_s", "speedup"}}`` where ``delta``
        is shortlist minus exhaustive for every recall key and ``rsum`` and ``speedup`` =
        exhaustive time / short-list time (search + re-scoring, both directions).

    References
    ----------
    .. [1] O. Khattab and M. Zaharia, "ColBERT: Efficient and effective passage search via
       contextualized late interaction over BERT", SIGIR 2020.
    """
    ks = _check_ks(ks)
    imgs = _to_numpy(image_pooled)
    txts = _to_numpy(text_pooled)
    if imgs.ndim != 2 or txts.ndim != 2:
        raise ValueError("image_pooled and text_pooled must be 2-D.")
    n_images, n_texts = imgs.shape[0], txts.shape[0]
    ids = _check_ids(text_image_ids, n_images, n_texts)
    if block_images is None:
        block_images = max(1, _MAX_BLOCK_ENTRIES // max(1, n_texts))

    t0 = time.perf_counter()
    ranks_i2t, ranks_t2i = _exhaustive_ranks(
        score_fn, ids, n_images, min(max(ks) + 1, n_images), block_images
    )
    exhaustive_s = time.perf_counter() - t0
    reference = _assemble(ranks_i2t, ranks_t2i, ks)

    if pair_score_fn is not None:
        def rescore_i2t(q: np.ndarray, c: np.ndarray) -> np.ndarray:
            flat = pair_score_fn(np.repeat(q, c.shape[1]), c.reshape(-1))
            return np.asarray(_to_numpy(flat), dtype=np.float32).reshape(c.shape)

        def rescore_t2i(q: np.ndarray, c: np.ndarray) -> np.ndarray:
            flat = pair_score_fn(c.reshape(-1), np.repeat(q, c.shape[1]))
            return np.asarray(_to_numpy(flat), dtype=np.float32).reshape(c.shape)
    else:
        rescore_i2t = _rescore_from_score_fn(score_fn, "i2t")
        rescore_t2i = _rescore_from_score_fn(score_fn, "t2i")

    results: Dict[int, Dict[str, Any]] = {}
    for k_short in k_shorts:
        t0 = time.perf_counter()
        i2t = shortlist_rerank(imgs, txts, k_short, rescore_i2t, batch_size=batch_size,
                               use_gpu=use_gpu)
        t2i = shortlist_rerank(txts, imgs, k_short, rescore_t2i, batch_size=batch_size,
                               use_gpu=use_gpu)
        elapsed = time.perf_counter() - t0
        metrics = rerank_metrics(i2t, t2i, ids, ks)
        delta = {k: metrics[k] - reference[k] for k in _recall_keys(reference)}
        results[int(k_short)] = {
            "metrics": metrics,
            "delta": delta,
            "time_s": elapsed,
            "speedup": exhaustive_s / elapsed if elapsed > 0 else float("inf"),
        }
        logger.info(
            "k_short=%d: delta rsum %.2f, speed-up %.1fx", k_short, delta["rsum"],
            results[int(k_short)]["speedup"],
        )
    return {"exhaustive": reference, "exhaustive_s": exhaustive_s, "shortlist": results}
