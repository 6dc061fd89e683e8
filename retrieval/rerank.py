"""Multi-vector retrieval: pooled FAISS short list, exact re-scoring, exhaustive reference.

For a model whose score is not an inner product of two fixed vectors (AVSE's MaxSim over chunks,
spec 2.4), :func:`shortlist_rerank` picks candidates with an exact search on pooled vectors and
re-scores them with the model's own score; :func:`rerank_metrics` turns the lists into recall,
:func:`exhaustive_metrics` scores every pair, and :func:`shortlist_recall_loss` measures what the
short list costs against exhaustive scoring.

References
----------
.. [1] O. Khattab and M. Zaharia, "ColBERT: Efficient and effective passage search via
   contextualized late interaction over BERT", SIGIR 2020 (candidate generation + late
   interaction re-ranking).
.. [2] J. Johnson, M. Douze and H. Jegou, "Billion-scale similarity search with GPUs", 2019.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from retrieval._inputs import _MAX_BLOCK_ENTRIES, _check_embeddings, _check_ids, _check_ks, \
    _to_numpy
from retrieval.gpu_placement import GpuChoice
from retrieval.indices import build_index
from retrieval.metrics import _assemble, _ranks_from_lists, _recall_keys, _resolve_tie_tol, \
    tie_tolerance

logger = logging.getLogger(__name__)

__all__ = ["shortlist_rerank", "rerank_metrics", "exhaustive_metrics", "shortlist_recall_loss"]

# Model scores of unknown length tie within the rounding bound of a 512-term dot product, on the
# scale of the scores themselves (retrieval.metrics.tie_tolerance: the one tie rule).
_SCORE_TERMS = 512
#: The tie gap of cosine-scale model scores (``tie_tolerance(512)``); kept as a public name.
DEFAULT_SCORE_TIE_TOL = tie_tolerance(_SCORE_TERMS)

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
    use_gpu: GpuChoice = "auto",
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
    use_gpu : {"auto", True, False}, int or list of int, default="auto"
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
    *,
    tie_tol: Optional[float] = None,
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
    tie_tol : float, optional
        Scores within this gap of the best positive tie with it (pessimistically), so that
        float rounding of one score computed in different blocks does not change a rank.
        Default: :func:`~retrieval.metrics.tie_tolerance` on the scale of the listed scores
        (AVSE's MaxSim sums span ``[-q, q]``); 0 compares exactly.

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
    tol = _check_tie_tol(tie_tol, s_i2t, s_t2i)
    ranks_i2t = _ranks_from_lists(s_i2t, owner, np.arange(n_images), tol)
    ranks_t2i = _ranks_from_lists(s_t2i, c_t2i, ids, tol)
    return _assemble(ranks_i2t, ranks_t2i, ks)


def _check_tie_tol(tie_tol: Optional[float], *scores: np.ndarray) -> float:
    """The tie gap: as given (validated), or the rounding bound on the scores' own scale."""
    if tie_tol is None and scores:
        finite = [np.abs(s[np.isfinite(s)]).max(initial=0.0) for s in scores]
        return tie_tolerance(_SCORE_TERMS, scale=float(max(finite)))
    return _resolve_tie_tol(DEFAULT_SCORE_TIE_TOL if tie_tol is None else float(tie_tol),
                            _SCORE_TERMS)


def _exhaustive_ranks(
    score_fn: ScoreFn, ids: np.ndarray, n_images: int, k_keep: int, block_images: int,
    tol: float = 0.0,
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
        ranks_i2t[a:b] = _ranks_from_lists(s, owner, img, tol)
        # Merge this block's images into every caption's running top list.
        merged_s = np.concatenate([top_s, s.T], axis=1)
        merged_i = np.concatenate([top_i, np.broadcast_to(img, (n_t, b - a))], axis=1)
        keep = np.argpartition(-merged_s, k_keep - 1, axis=1)[:, :k_keep]
        top_s = np.take_along_axis(merged_s, keep, axis=1)
        top_i = np.take_along_axis(merged_i, keep, axis=1)
    ranks_t2i = _ranks_from_lists(top_s, top_i, ids, tol)
    return ranks_i2t, ranks_t2i


def exhaustive_metrics(
    score_fn: ScoreFn,
    text_image_ids: Any,
    n_images: int,
    ks: Sequence[int] = (1, 5, 10),
    *,
    block_images: Optional[int] = None,
    tie_tol: float = DEFAULT_SCORE_TIE_TOL,
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
    tie_tol : float, default=DEFAULT_SCORE_TIE_TOL
        Scores within this gap of the best positive tie with it (pessimistically), so that
        float rounding of one score computed in different blocks does not change a rank. Raise it
        for scores on a larger scale than cosine; 0 compares exactly.

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
                                             min(max(ks) + 1, n_images), block_images,
                                             _check_tie_tol(tie_tol))
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
    use_gpu: GpuChoice = "auto",
    tie_tol: float = DEFAULT_SCORE_TIE_TOL,
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
    use_gpu : {"auto", True, False}, int or list of int, default="auto"
        Passed to :func:`build_index`.
    tie_tol : float, default=DEFAULT_SCORE_TIE_TOL
        Scores within this gap of the best positive tie with it (pessimistically), so that
        float rounding of one score computed in different blocks does not change a rank. Raise it
        for scores on a larger scale than cosine; 0 compares exactly.

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
    tol = _check_tie_tol(tie_tol)
    ranks_i2t, ranks_t2i = _exhaustive_ranks(
        score_fn, ids, n_images, min(max(ks) + 1, n_images), block_images, tol
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
        metrics = rerank_metrics(i2t, t2i, ids, ks, tie_tol=tol)
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

