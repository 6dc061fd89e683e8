"""Retrieval metrics and evaluation protocols: R@K both ways, rSum, medR, meanR, COCO/Flickr folds.

:func:`retrieval_metrics` scores a gallery with **pessimistic ties** (a negative scoring equal to
the positive ranks ahead of it; "equal" allows for float rounding, see :func:`tie_tolerance`).
Recall comes from a FAISS search with the short-list rule of spec 2.3; ranks from a blocked matrix
product (never a full score matrix). :func:`compare_to_exact` reports what an approximate index
costs in task recall.

References
----------
.. [1] A. Karpathy and L. Fei-Fei, "Deep visual-semantic alignments for generating image
   descriptions", CVPR 2015 (the Flickr30K / COCO test splits and the 1K/5K protocols).
.. [2] F. Faghri, D. J. Fleet, J. R. Kiros and S. Fidler, "VSE++: Improving visual-semantic
   embeddings with hard negatives", BMVC 2018 (R@K, rSum, medR as used by the VSE family).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from retrieval._inputs import _MAX_BLOCK_ENTRIES, _check_ids, _check_ks, _to_numpy, _validate
from retrieval.gpu_placement import GpuChoice
from retrieval.indices import build_index, search

logger = logging.getLogger(__name__)

__all__ = [
    "tie_tolerance",
    "retrieval_metrics",
    "fold_metrics",
    "protocol_metrics",
    "coco_1k_metrics",
    "coco_5k_metrics",
    "flickr_1k_metrics",
    "compare_to_exact",
]


# Unit roundoff of float32.
_FLOAT32_UNIT_ROUNDOFF = 2.0 ** -24


def tie_tolerance(d: int, scale: float = 1.0) -> float:
    """Score gap below which two scores of ``d``-term float32 dot products count as a tie.

    The one tie rule of the package (exact search, shortlists, reranked model scores). Two
    computations of the same score -- a positive and a bit-identical negative scored in
    different BLAS blocks, or by FAISS and by a matrix product -- sum the same ``d`` products in
    different orders. BLAS and FAISS sum in blocks and SIMD lanes, a tree of depth about
    ``log2 d``, whose rounding error is at most ``(ceil(log2 d) + 1) u |score scale|``
    (``u = 2**-24``; Higham, *Accuracy and Stability of Numerical Algorithms*, 2002, section
    3.1, pairwise summation); two computations differ by at most twice that. At ``d = 512`` on
    unit vectors (``scale = 1``) this is ``1.19e-6``, 10 float32 ulps of 1 and 3-9x the largest
    difference measured across row-block shapes and FAISS vs matmul on a 5K x 25K gallery
    (1.3e-7 to 3.6e-7, ``benchmarks/retrieval_tie_tolerance.py``), where it costs no rSum
    against exact comparison (the 6.1e-5 of before cost 0.28). Scores closer than it are tied, and ties are
    pessimistic, so results no longer depend on ``batch_size`` or on the index.

    Parameters
    ----------
    d : int
        Length of the dot products (the embedding dimension; for MaxSim, the token dimension).
    scale : float, default=1.0
        Largest magnitude of the scores: 1 for cosines, the query length ``q`` for AVSE's
        MaxSim sums in ``[-q, q]``.
    """
    terms = math.ceil(math.log2(max(2, int(d)))) + 1
    return float(2.0 * terms * _FLOAT32_UNIT_ROUNDOFF * max(float(scale), 1.0))


def _ranks_from_lists(
    scores: np.ndarray, candidate_owner: np.ndarray, query_owner: np.ndarray, tol: float = 0.0
) -> np.ndarray:
    """0-based pessimistic ranks from per-query candidate lists (spec 2.3).

    A candidate is a positive when its owner (the image it belongs to) equals the query's owner;
    owner ``-1`` marks a missing result, neither positive nor negative. The rank is the number of
    listed negatives scoring >= the best listed positive minus ``tol``; ``inf`` when no positive
    is listed.
    """
    valid = candidate_owner >= 0
    positive = valid & (candidate_owner == query_owner[:, None])
    s_pos = np.where(positive, scores, -np.inf).max(axis=1)
    ahead = valid & ~positive & (scores >= s_pos[:, None] - tol)
    ranks = ahead.sum(axis=1).astype(np.float64)
    ranks[~positive.any(axis=1)] = np.inf
    return ranks


def _full_ranks(
    images: np.ndarray, texts: np.ndarray, ids: np.ndarray, batch_size: int, tol: float = 0.0
) -> Tuple[np.ndarray, np.ndarray]:
    """Exact 0-based pessimistic ranks of every image (i2t) and caption (t2i), by blocked matmul.

    Scores within ``tol`` of the best positive count as ties (ahead of it).
    """
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
        n_ge = np.count_nonzero(s >= s_pos[:, None] - tol, axis=1)
        pos_ge = np.bincount(local, weights=pos_scores >= s_pos[local] - tol, minlength=b - a)
        ranks_i2t[a:b] = n_ge - pos_ge

    # t2i: caption blocks against all images; subtract the positive itself from the >= count.
    ranks_t2i = np.empty(n_t, dtype=np.float64)
    rows = max(1, min(batch_size, _MAX_BLOCK_ENTRIES // n_i))
    for a in range(0, n_t, rows):
        b = min(n_t, a + rows)
        s = texts[a:b] @ images.T
        s_pos = s[np.arange(b - a), ids[a:b]]
        # The positive itself always passes the test: subtract it.
        ranks_t2i[a:b] = np.count_nonzero(s >= s_pos[:, None] - tol, axis=1) - 1
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
    use_gpu: GpuChoice,
    tol: float = 0.0,
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
    out["ranks_i2t"] = _ranks_from_lists(scores, owner, np.arange(images.shape[0]), tol)
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
    out["ranks_t2i"] = _ranks_from_lists(scores, cand, ids, tol)
    out["lists_t2i"] = cand
    out["build_s"] += t1 - t0
    out["search_s"] += t2 - t1
    return out



def retrieval_metrics(
    image_embeddings: Any,
    text_embeddings: Any,
    text_image_ids: Any,
    ks: Sequence[int] = (1, 5, 10),
    *,
    index: str = "flat",
    index_params: Optional[dict] = None,
    full_ranks: GpuChoice = "auto",
    max_rank_pairs: int = 10**10,
    batch_size: int = 4096,
    use_gpu: GpuChoice = "auto",
    tie_tol: Optional[float] = None,
) -> Dict[str, float]:
    """Image-to-text and text-to-image retrieval metrics (R@K, rSum, medR, meanR).

    Scores are cosine similarities: both embedding sets are L2-normalised in float32. A query's
    0-based rank is the number of **negatives scoring >= its best positive** (pessimistic ties): a
    collapsed model whose embeddings are all equal scores about 0 recall, not 100. "Equal" allows
    for float rounding (``tie_tol``): a negative whose embedding is bit-identical to the positive's
    always ties with it, whatever ``batch_size``, ``index`` or BLAS blocking computed the two
    scores, so the metrics do not depend on those settings.

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
    use_gpu : {"auto", True, False}, int or list of int, default="auto"
        Passed to :func:`build_index`.
    tie_tol : float, optional
        Scores within this gap of the best positive tie with it (and rank ahead of it). Default:
        :func:`tie_tolerance` of the dimension, the float32 rounding bound; 0 compares exactly.

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
    the number of returned negatives scoring >= it minus ``tie_tol``; no positive returned is a
    miss. Under exact search this equals full ranking for every ``K <= K_max``, ties included: a
    negative within ``tie_tol`` of the positive that the list left out scores no higher than every
    listed item, so the list already holds >= ``K_max`` negatives ahead of the positive.

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
    tol = _resolve_tie_tol(tie_tol, images.shape[1])
    run = _shortlist_run(images, texts, ids, ks, index, index_params, batch_size, use_gpu, tol)
    n_pairs = images.shape[0] * texts.shape[0]
    do_full = full_ranks is True or (full_ranks == "auto" and n_pairs <= max_rank_pairs)
    full_i2t = full_t2i = None
    if do_full:
        full_i2t, full_t2i = _full_ranks(images, texts, ids, batch_size, tol)
    elif full_ranks == "auto":
        logger.info(
            "medR/meanR skipped: %d image-text pairs > max_rank_pairs=%d (pass full_ranks=True).",
            n_pairs, max_rank_pairs,
        )
    return _assemble(run["ranks_i2t"], run["ranks_t2i"], ks, full_i2t, full_t2i)


def _resolve_tie_tol(tie_tol: Optional[float], d: int) -> float:
    if tie_tol is None:
        return tie_tolerance(d)
    if not (math.isfinite(tie_tol) and tie_tol >= 0):
        raise ValueError(f"tie_tol must be a finite number >= 0, got {tie_tol!r}.")
    return float(tie_tol)


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
    use_gpu: GpuChoice = "auto",
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
    use_gpu : {"auto", True, False}, int or list of int, default="auto"
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
    tol = tie_tolerance(images.shape[1])
    exact = _shortlist_run(images, texts, ids, ks_search, "flat", None, batch_size, use_gpu, tol)
    approx = _shortlist_run(images, texts, ids, ks_search, index, params, batch_size, use_gpu, tol)
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

