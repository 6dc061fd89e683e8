"""Graph building blocks shared by the spectral estimators.

Everything here is written once and used by MGF and mPAC (and later methods):

* :func:`knn_search` -- k-nearest-neighbour lists, ``O(n k)`` memory: exact, or from a FAISS
  inverted-file index above :data:`APPROXIMATE_KNN_MIN_SAMPLES` samples, or from a FAISS HNSW
  graph when asked.
* :func:`pkn_graph` -- the parameter-free probabilistic-neighbour (PKN) graph of Nie et al.
* :func:`degree`, :func:`laplacian`, :func:`normalized_adjacency` -- graph Laplacians.
* :func:`spectral_embedding` -- the ``c`` smoothest eigenvectors of a graph, dense for small
  ``n``, ``eigsh``/``lobpcg`` otherwise.
* :func:`polar_factor` and :func:`gpi` -- orthogonality-constrained solvers.
* :func:`gaussian_knn_graph` -- the Gaussian-kernel kNN graph of SDSNE that VGMGC builds for
  feature views.
* :func:`personalized_pagerank` -- a sparse top-k personalised PageRank graph (the second view of
  the citation graphs).
* :func:`add_self_loops`, :func:`row_normalize_graph` -- propagation operators.
* :func:`propagate_features` -- node features smoothed over graphs, ``sum_v S_v^k X`` with
  ``S_v = D^{-1/2} (A_v + I) D^{-1/2}`` (the fixed filter of SGC and AGC [6]_, [7]_).

References
----------
.. [1] F. Nie, X. Wang, M. I. Jordan, H. Huang. "The constrained Laplacian rank algorithm for
   graph-based clustering." AAAI 2016 (the PKN graph; first in KDD 2014 "Clustering and
   projected clustering with adaptive neighbors").
.. [2] F. Nie, R. Zhang, X. Li. "A generalized power iteration method for solving quadratic
   problem on the Stiefel manifold." Science China Information Sciences 60, 2017.
.. [3] U. von Luxburg. "A tutorial on spectral clustering." Statistics and Computing 17, 2007.
.. [4] C. Liu, Z. Liao, Y. Ma, K. Zhan. "Stationary diffusion state neural estimation for
   multiview clustering" (SDSNE). AAAI 2022; its graph construction is the one VGMGC uses for
   feature views (spec 4.5).
.. [5] J. Klicpera, A. Bojchevski, S. Günnemann. "Predict then propagate: graph neural networks
   meet personalized PageRank." ICLR 2019.
.. [6] F. Wu, A. Souza, T. Zhang, C. Fifty, T. Yu, K. Weinberger. "Simplifying graph
   convolutional networks." ICML 2019 (SGC).
.. [7] X. Zhang, H. Liu, Q. Li, X.-M. Wu. "Attributed graph clustering via adaptive graph
   convolution." IJCAI 2019 (AGC: a ``k``-step low-pass filter, then clustering).
.. [8] Y. A. Malkov, D. A. Yashunin. "Efficient and robust approximate nearest neighbor search
   using hierarchical navigable small world graphs." IEEE TPAMI 42(4), 2020.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Optional, Tuple, Union

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh, lobpcg
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state

logger = logging.getLogger(__name__)

__all__ = [
    "knn_search",
    "pkn_graph",
    "degree",
    "laplacian",
    "normalized_adjacency",
    "spectral_embedding",
    "polar_factor",
    "gpi",
    "gaussian_knn_graph",
    "personalized_pagerank",
    "add_self_loops",
    "row_normalize_graph",
    "propagate_features",
    "DENSE_EIGEN_MAX_SAMPLES",
    "SPARSE_DENSE_EIGEN_MAX_SAMPLES",
]

#: Up to this many samples, eigenproblems are solved densely with LAPACK ``eigh``.
DENSE_EIGEN_MAX_SAMPLES = 3000

#: A *sparse* graph above this many samples goes to the iterative solver even below
#: :data:`DENSE_EIGEN_MAX_SAMPLES`: densifying costs ``O(n^3)`` where Lanczos on ``O(n k)`` edges
#: is cheap (measured on a 10-NN PKN graph of 2,000 samples, 11 eigenpairs: LAPACK 2.40 s, ARPACK
#: 0.08 s, the same eigenvalues to 1e-15; MGF repeats this every iteration).
SPARSE_DENSE_EIGEN_MAX_SAMPLES = 500

#: Above this many samples, ``knn_search(method="auto")`` uses an approximate FAISS IVF index
#: (when FAISS is installed): exact search costs O(n^2 d), 20 s a view at n = 100,000 and about
#: 80 minutes at n = 1,000,000 on 2 cores, while the IVF search grows as O(n^1.5 d).
APPROXIMATE_KNN_MIN_SAMPLES = 50_000

#: Inverted-file parameters: ``IVF_LISTS_PER_SQRT_N * sqrt(n)`` lists (the lower end of FAISS's
#: guideline of 4 to 16 sqrt(n)), at least ``IVF_PROBES`` of them searched per query, centroids
#: trained on at most ``IVF_TRAIN_PER_LIST`` samples per list.
IVF_LISTS_PER_SQRT_N = 4
IVF_PROBES = 16
IVF_TRAIN_PER_LIST = 64

#: Default recall@k the approximate search must reach. A fixed number of probed lists does not
#: hold a recall as n grows (16 probes: recall@10 0.42 at 200,000 and 0.36 at 500,000 samples of
#: the scaling data), so the number of probes doubles until the recall measured on
#: ``IVF_CALIBRATION_QUERIES`` fixed queries against an exact search reaches the target.
IVF_RECALL_TARGET = 0.9
IVF_CALIBRATION_QUERIES = 256
#: When the recall target needs more than this fraction of the lists probed, the exact search
#: is used instead: it runs as one matrix product (BLAS), while the inverted file scans its
#: lists point by point, so at this fraction the exact search is already the faster one (one
#: view of 100,000 samples of the scaling data, 1 thread: recall 0.9 needed 256 of 1,264 lists,
#: 152 s with the index's training and calibration, against 129 s for the exact search).
IVF_MAX_PROBE_FRACTION = 0.1

#: HNSW graph parameters (FAISS ``IndexHNSWFlat`` [8]_): links per node and the beam width while
#: building; the search beam (``efSearch``) doubles from ``HNSW_EF_SEARCH`` until the recall
#: target is met, up to ``HNSW_MAX_EF_SEARCH`` (beyond it the exact search is used). One view of
#: the scaling data at n = 100,000, one thread: M = 32 builds in 23 s and reaches recall@10
#: 0.89 at efSearch 64 (29 s for every point) and 0.95 at 128 (55 s), where the calibrated IVF
#: index needs a fifth of its lists and falls back to the exact search (60 s); the exact search
#: grows as n^2 and the graph search about as n log n.
HNSW_LINKS = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 16
HNSW_MAX_EF_SEARCH = 1024

#: The values of ``knn_search``'s ``method`` (``"approximate"`` is the IVF index).
KNN_METHODS = frozenset({"auto", "exact", "approximate", "ivf", "hnsw"})

#: Spare candidates (at least) that each backend returns before the exact re-ranking.
RERANK_SPARE = 4


ArrayOrSparse = Union[np.ndarray, sp.spmatrix, sp.sparray]


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def knn_search(
    X: ArrayOrSparse,
    n_neighbors: int,
    *,
    query: Optional[ArrayOrSparse] = None,
    backend: str = "auto",
    method: str = "auto",
    recall_target: float = IVF_RECALL_TARGET,
    info: Optional[dict] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """k-nearest neighbours under the squared Euclidean distance, exact or approximate.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        The indexed points.
    n_neighbors : int
        Number of neighbours per query. When ``query`` is None the point itself is excluded,
        so ``n_neighbors`` must be below ``n_samples``.
    query : ndarray or sparse matrix of shape (n_queries, n_features), default=None
        Points to search for; ``None`` searches ``X`` against itself (self excluded).
    backend : {"auto", "sklearn", "faiss"}, default="auto"
        ``"faiss"`` uses an exact ``IndexFlatL2`` (dense inputs only); ``"auto"`` uses FAISS when
        it is installed and the input is dense, scikit-learn's brute-force search otherwise.
    method : {"auto", "exact", "approximate", "ivf", "hnsw"}, default="auto"
        ``"ivf"`` (also ``"approximate"``) searches a FAISS inverted-file index
        (``IndexIVFFlat``: ``4 sqrt(n)`` k-means cells trained on a fixed subsample), whose cost
        grows as ``O(n^1.5)`` instead of ``O(n^2)``; ``"hnsw"`` a FAISS HNSW graph
        (``IndexHNSWFlat``, :data:`HNSW_LINKS` links per node), whose cost grows about as
        ``O(n log n)``. Both need FAISS and dense inputs. ``"auto"`` is ``"ivf"`` above
        :data:`APPROXIMATE_KNN_MIN_SAMPLES` indexed samples when FAISS can be used, exact
        otherwise. Each index is calibrated for ``recall_target`` on a fixed sample of queries
        against an exact search (IVF: the number of probed lists doubles from 16; HNSW: the
        search beam doubles from 16), so its cost adapts to how hard the data is; when the
        target needs more than :data:`IVF_MAX_PROBE_FRACTION` of the lists, or a beam above
        :data:`HNSW_MAX_EF_SEARCH`, the exact search runs instead. Each listed distance is
        exact. The IVF search is deterministic; the HNSW graph is built by FAISS's threads in
        parallel, so with more than one thread the rare rows it misses can differ from run to
        run (``faiss.omp_set_num_threads(1)`` makes it deterministic).
    recall_target : float, default=0.9
        Recall@k the approximate search must reach on its calibration queries.
    info : dict, default=None
        When given, filled with how the search ran: ``"method"`` (``"exact"`` or
        ``"approximate"``) and, for an approximate index, ``"index"`` (``"ivf"`` or
        ``"hnsw"``), ``"calibration_recall"`` and ``"n_lists"`` and ``"n_probes"`` (IVF) or
        ``"ef_search"`` (HNSW); ``"reason"`` when it fell back to the exact search;
        ``"seconds"``, the wall-clock time of the whole search (index, calibration, re-ranking).

    Returns
    -------
    indices : ndarray of shape (n_queries, n_neighbors), int64
        Neighbour indices sorted by increasing distance.
    sq_distances : ndarray of shape (n_queries, n_neighbors), float64
        The corresponding squared Euclidean distances (clipped at 0).
    """
    started = time.perf_counter()
    n_samples = X.shape[0]
    self_search = query is None
    if self_search and not 1 <= n_neighbors < n_samples:
        raise ValueError(
            f"n_neighbors={n_neighbors} must be in [1, n_samples - 1] = [1, {n_samples - 1}]."
        )
    if not self_search and not 1 <= n_neighbors <= n_samples:
        raise ValueError(f"n_neighbors={n_neighbors} must be in [1, n_samples={n_samples}].")
    is_sparse = sp.issparse(X) or (query is not None and sp.issparse(query))
    use_faiss = backend == "faiss" or (backend == "auto" and not is_sparse and _faiss_available())
    if use_faiss and is_sparse:
        raise ValueError("The FAISS backend needs dense inputs.")
    if method not in KNN_METHODS:
        raise ValueError(f"method must be one of {sorted(KNN_METHODS)}; got {method!r}.")
    if method in ("approximate", "ivf", "hnsw") and not use_faiss:
        raise ValueError(
            f"method={method!r} needs FAISS (pip install faiss-cpu) and dense inputs."
        )
    if method == "auto":
        index_kind = "ivf" if use_faiss and n_samples > APPROXIMATE_KNN_MIN_SAMPLES else None
    else:
        index_kind = {"exact": None, "approximate": "ivf"}.get(method, method)
    approximate = index_kind is not None
    if method == "auto" and not use_faiss and n_samples > APPROXIMATE_KNN_MIN_SAMPLES:
        logger.warning(
            "Exact kNN search over %d samples with scikit-learn costs O(n^2) time; install "
            "faiss-cpu for the approximate index used above %d samples.",
            n_samples, APPROXIMATE_KNN_MIN_SAMPLES,
        )
    n_search = n_neighbors + 1 if self_search else n_neighbors
    Q = X if self_search else query
    if info is not None:
        info["method"] = "approximate" if approximate else "exact"
    if is_sparse:
        # Sparse inputs only ever take this path, so its order does not depend on FAISS.
        nn = NearestNeighbors(n_neighbors=n_search, algorithm="brute", metric="euclidean")
        nn.fit(X)
        dist, idx = nn.kneighbors(Q, return_distance=True)
        dist = dist**2
    else:
        # Both backends compute distances in their own way (FAISS in float32, scikit-learn by
        # the dot-product expansion), so near-ties come out in different orders. Each returns
        # a few spare candidates, and one exact float64 re-ranking with ties broken by index
        # decides: the lists are the same whichever backend ran.
        n_pool = n_samples if self_search else n_samples + 1
        n_candidates = min(n_search + max(RERANK_SPARE, n_search // 2), n_pool - 1)
        n_candidates = max(n_candidates, n_search)
        if use_faiss:
            # The IVF search may fall back to the exact one (see _faiss_candidates).
            candidates, approximate = _faiss_candidates(
                X, Q, n_candidates, index_kind, n_true=n_search, self_search=self_search,
                recall_target=recall_target, info=info)
        else:
            nn = NearestNeighbors(n_neighbors=n_candidates, algorithm="brute",
                                  metric="euclidean")
            nn.fit(X)
            candidates = nn.kneighbors(Q, return_distance=False)
        X64, Q64 = np.asarray(X, dtype=np.float64), np.asarray(Q, dtype=np.float64)
        idx, dist, open_ties = _exact_rerank(X64, Q64, candidates, n_search)
        if not approximate and candidates.shape[1] < n_samples:
            # Rows whose last kept distance reaches the end of their candidate list may have
            # tied points outside it (binary data ties a lot): they get a full exact search.
            for row in np.flatnonzero(open_ties):
                idx[row], dist[row] = _exact_row(X64, Q64[row], n_search)
    if self_search:
        idx, dist = _drop_self(idx, dist)
    if info is not None:
        info["seconds"] = time.perf_counter() - started
    return idx.astype(np.int64, copy=False), np.maximum(dist, 0.0)


def _faiss_candidates(X: np.ndarray, Q: np.ndarray, n_candidates: int,
                      index_kind: Optional[str], *, n_true: int, self_search: bool,
                      recall_target: float, info: Optional[dict]) -> Tuple[np.ndarray, bool]:
    """Candidate neighbour indices from a FAISS index: exact ``IndexFlatL2`` (``index_kind``
    None), calibrated IVF or calibrated HNSW.

    Also returns whether the search that ran was approximate: an index that cannot reach the
    recall target more cheaply than the exact search falls back to it.
    """
    import faiss

    base = np.ascontiguousarray(X, dtype=np.float32)
    queries = np.ascontiguousarray(Q, dtype=np.float32)
    approximate = index_kind is not None
    fallback = None
    if index_kind == "ivf":
        index = _ivf_index(base)
        index.add(base)
        n_probes, recall = _calibrate_probes(index, base, queries, n_true, n_candidates,
                                             self_search, recall_target)
        logger.info("IVF search: %d of %d lists probed for recall@%d %.3f (target %.2f)",
                    n_probes, index.nlist, n_true, recall, recall_target)
        if info is not None:
            info.update(index="ivf", n_lists=int(index.nlist), n_probes=int(n_probes),
                        calibration_recall=float(recall))
        if n_probes > IVF_MAX_PROBE_FRACTION * index.nlist:
            fallback = (f"recall {recall_target} needs {n_probes} of {index.nlist} lists "
                        "probed: the exact search is faster")
    elif index_kind == "hnsw":
        index = _hnsw_index(base)
        ef_search, recall = _calibrate_ef_search(index, base, queries, n_true, n_candidates,
                                                 self_search, recall_target)
        logger.info("HNSW search: efSearch %d for recall@%d %.3f (target %.2f)", ef_search,
                    n_true, recall, recall_target)
        if info is not None:
            info.update(index="hnsw", ef_search=int(ef_search), calibration_recall=float(recall))
        if recall < recall_target:
            fallback = (f"recall {recall_target} not reached at efSearch {ef_search} "
                        f"({recall:.3f}): exact search instead")
    else:
        index = faiss.IndexFlatL2(base.shape[1])
        index.add(base)
    if fallback is not None:
        logger.info("%s", fallback)
        approximate = False
        index = faiss.IndexFlatL2(base.shape[1])
        index.add(base)
        if info is not None:
            info.update(method="exact", reason=fallback)
    _, idx = index.search(queries, n_candidates)
    if approximate:
        # A query whose probed cells (or graph beam) hold fewer than n_candidates points gets
        # -1 entries: fill them from an exact search of those rows only (rare).
        short = np.flatnonzero((idx < 0).any(axis=1))
        if short.size:
            exact = faiss.IndexFlatL2(base.shape[1])
            exact.add(base)
            idx[short] = exact.search(queries[short], n_candidates)[1]
    return idx.astype(np.int64), approximate


def _exact_rerank(X: np.ndarray, Q: np.ndarray, candidates: np.ndarray,
                  n_keep: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n_keep`` nearest candidates by float64 squared distance, ties by smaller index.

    The distance of a pair is computed from the two rows alone (difference, square, sum over
    the features), so it does not depend on which other candidates are in the list. Also
    returns, per row, whether the last kept distance is within float32 rounding of the farthest
    candidate's: then points outside the list may tie with it.
    """
    n_queries, m = candidates.shape
    dim = max(X.shape[1], 1)
    # About 16 M floats per block of the (rows, candidates, features) difference tensor.
    block = max(1, (1 << 24) // (m * dim))
    dist = np.empty(candidates.shape)
    for start in range(0, n_queries, block):
        rows = slice(start, start + block)
        diff = X[candidates[rows]] - Q[rows, None, :]
        np.square(diff, out=diff)
        # add.reduce over a contiguous last axis: the same pairwise summation for every pair
        dist[rows] = diff.sum(axis=-1)
    order = np.lexsort((candidates, dist), axis=-1)[:, :n_keep]
    idx = np.take_along_axis(candidates, order, axis=1)
    kept = np.take_along_axis(dist, order, axis=1)
    farthest = dist.max(axis=1)
    open_ties = farthest <= kept[:, -1] * (1 + 1e-5) + 1e-12
    return idx, kept, open_ties


def _exact_row(X: np.ndarray, q: np.ndarray, n_keep: int) -> Tuple[np.ndarray, np.ndarray]:
    """Exact float64 search of one query against every point, ties by smaller index."""
    diff = X - q
    np.square(diff, out=diff)
    dist = diff.sum(axis=1)
    order = np.lexsort((np.arange(X.shape[0]), dist))[:n_keep]
    return order, dist[order]


def _calibration_truth(base: np.ndarray, queries: np.ndarray, n_true: int,
                       self_search: bool) -> Tuple[np.ndarray, np.ndarray]:
    """A fixed sample of ``IVF_CALIBRATION_QUERIES`` queries and their true neighbours.

    In a self-search the first true neighbour is the query itself, which every list finds, so
    it is left out of the recall.
    """
    import faiss

    n_queries = queries.shape[0]
    sample = np.sort(np.random.RandomState(0).choice(
        n_queries, min(n_queries, IVF_CALIBRATION_QUERIES), replace=False))
    exact = faiss.IndexFlatL2(base.shape[1])
    exact.add(base)
    _, truth = exact.search(queries[sample], n_true)
    if self_search and n_true > 1:
        truth = truth[:, 1:]
    return sample, truth


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    return sum(np.intersect1d(t, f).size for t, f in zip(truth, found)) / truth.size


def _calibrate_probes(index, base: np.ndarray, queries: np.ndarray, n_true: int,
                      n_candidates: int, self_search: bool, target: float) -> Tuple[int, float]:
    """Double ``index.nprobe`` until the candidate lists hold ``target`` of the true ``n_true``
    nearest neighbours of a fixed sample of queries; returns the probes and the recall."""
    sample, truth = _calibration_truth(base, queries, n_true, self_search)
    n_lists = int(index.nlist)
    n_probes = min(IVF_PROBES, n_lists)
    while True:
        index.nprobe = n_probes
        _, found = index.search(queries[sample], n_candidates)
        recall = _recall(truth, found)
        if recall >= target or n_probes >= n_lists:
            return n_probes, recall
        n_probes = min(2 * n_probes, n_lists)


def _calibrate_ef_search(index, base: np.ndarray, queries: np.ndarray, n_true: int,
                         n_candidates: int, self_search: bool,
                         target: float) -> Tuple[int, float]:
    """Double the HNSW search beam until the candidate lists reach ``target`` recall on the
    calibration queries (or the beam reaches ``HNSW_MAX_EF_SEARCH``); returns beam and
    recall."""
    sample, truth = _calibration_truth(base, queries, n_true, self_search)
    # The beam must hold the whole candidate list.
    ef_search = max(HNSW_EF_SEARCH, n_candidates)
    while True:
        index.hnsw.efSearch = ef_search
        _, found = index.search(queries[sample], n_candidates)
        recall = _recall(truth, found)
        if recall >= target or ef_search >= HNSW_MAX_EF_SEARCH:
            return ef_search, recall
        ef_search = min(2 * ef_search, HNSW_MAX_EF_SEARCH)


def _ivf_index(base: np.ndarray):
    """An untrained-then-trained ``IndexIVFFlat`` sized for ``base`` (see the IVF constants)."""
    import faiss

    n, d = base.shape
    n_lists = max(1, min(int(IVF_LISTS_PER_SQRT_N * np.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, n_lists)
    # A fixed subsample and FAISS's fixed k-means seed make the index deterministic.
    n_train = min(n, IVF_TRAIN_PER_LIST * n_lists)
    sample = np.random.RandomState(0).choice(n, n_train, replace=False)
    index.train(base[np.sort(sample)])
    index.nprobe = min(IVF_PROBES, n_lists)
    return index


def _hnsw_index(base: np.ndarray):
    """An ``IndexHNSWFlat`` over ``base`` (see the HNSW constants)."""
    import faiss

    index = faiss.IndexHNSWFlat(base.shape[1], HNSW_LINKS)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(base)
    return index


def _drop_self(idx: np.ndarray, dist: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    # Duplicated points can put another sample ahead of the point itself, so remove the
    # point wherever it appears (or the last column when it does not appear at all).
    n, m = idx.shape
    is_self = idx == np.arange(n)[:, None]
    position = np.where(is_self.any(axis=1), np.argmax(is_self, axis=1), m - 1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[np.arange(n), position] = False
    return idx[keep].reshape(n, m - 1), dist[keep].reshape(n, m - 1)


def pkn_graph(
    indices: np.ndarray, sq_distances: np.ndarray, n_neighbors: int
) -> sp.csr_matrix:
    """Probabilistic-neighbour (PKN) affinity graph of Nie et al. [1]_.

    With row ``i``'s squared distances sorted ``d_1 <= ... <= d_{k+1}``, the weights are
    ``w_ij = (d_{k+1} - d_ij) / (k d_{k+1} - sum_{l<=k} d_l)`` for the ``k`` nearest neighbours
    and 0 otherwise; each row sums to one. The result is symmetrised as ``(W + W^T) / 2``.

    Parameters
    ----------
    indices, sq_distances : ndarray of shape (n_samples, m) with m >= n_neighbors + 1
        Sorted neighbour lists from :func:`knn_search` (self excluded).
    n_neighbors : int
        ``k``; the ``(k+1)``-th distance sets the scale.

    Returns
    -------
    W : csr_matrix of shape (n_samples, n_samples)
        Symmetric, non-negative, zero diagonal.
    """
    n, m = indices.shape
    k = int(n_neighbors)
    if not 1 <= k <= m - 1:
        raise ValueError(f"pkn_graph needs at least k + 1 = {k + 1} neighbours; got {m}.")
    d = sq_distances[:, : k + 1]
    d_next = d[:, k : k + 1]
    denom = k * d_next - d[:, :k].sum(axis=1, keepdims=True)
    numer = d_next - d[:, :k]
    # Equal distances (duplicates, or a 1-D feature) leave no scale: fall back to uniform weights.
    flat = denom[:, 0] <= 1e-12 * np.maximum(d_next[:, 0], 1e-300)
    weights = np.where(flat[:, None], 1.0 / k, numer / np.where(flat[:, None], 1.0, denom))
    rows = np.repeat(np.arange(n), k)
    W = sp.csr_matrix((weights.ravel(), (rows, indices[:, :k].ravel())), shape=(n, n))
    W = (W + W.T) * 0.5
    W.setdiag(0.0)
    W.eliminate_zeros()
    return W.tocsr()


def degree(W: ArrayOrSparse) -> np.ndarray:
    """Row sums of a (symmetric, non-negative) affinity matrix."""
    return np.asarray(W.sum(axis=1)).ravel()


def laplacian(W: ArrayOrSparse, *, normalized: bool = False) -> ArrayOrSparse:
    """Graph Laplacian ``L = D - W`` or ``L_sym = I - D^{-1/2} W D^{-1/2}``.

    Zero-degree nodes get degree 1 in the normalised form so that isolated samples do not
    produce infinities.
    """
    n = W.shape[0]
    if normalized:
        N = normalized_adjacency(W)
        if sp.issparse(N):
            return (sp.identity(n, format="csr") - N).tocsr()
        return np.eye(n) - N
    d = degree(W)
    if sp.issparse(W):
        return (sp.diags(d) - W).tocsr()
    return np.diag(d) - W


def normalized_adjacency(W: ArrayOrSparse) -> ArrayOrSparse:
    """``D^{-1/2} W D^{-1/2}`` with zero degrees replaced by 1.

    A sparse result is CSR and shares ``W``'s index arrays (only the values are new): copy it
    before changing its structure in place.
    """
    d = degree(W)
    d = np.where(d > 0, d, 1.0)
    scale = 1.0 / np.sqrt(d)
    if sp.issparse(W):
        W = sp.csr_matrix(W)
        # Scaled in place of two sparse products (which copied the graph twice), sharing W's
        # index arrays; s_i * s_j is formed first so that an exactly symmetric W stays exactly
        # symmetric (the product of two floats does not depend on their order).
        data = np.repeat(scale, np.diff(W.indptr))
        data *= scale[W.indices]
        data *= W.data
        return sp.csr_matrix((data, W.indices, W.indptr), shape=W.shape)
    return W * (scale[:, None] * scale[None, :])


def spectral_embedding(
    W: ArrayOrSparse,
    n_components: int,
    *,
    normalized: bool = True,
    random_state=None,
    initial: Optional[np.ndarray] = None,
    dense_max_samples: int = DENSE_EIGEN_MAX_SAMPLES,
    tol: float = 1e-6,
    assume_symmetric: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """The ``n_components`` eigenvectors of the smallest Laplacian eigenvalues.

    Parameters
    ----------
    W : ndarray or sparse matrix of shape (n_samples, n_samples)
        Symmetric non-negative affinity.
    n_components : int
        Number of eigenvectors ``c``.
    normalized : bool, default=True
        Use ``L_sym`` (largest eigenvectors of ``D^{-1/2} W D^{-1/2}``); otherwise the
        unnormalised ``L = D - W`` (largest eigenvectors of ``eta I - L``, ``eta = 2 max deg``).
    random_state : int, RandomState or None
        Seeds the starting vector of the iterative solvers.
    initial : ndarray of shape (n_samples, n_components), default=None
        Warm start: when given and ``n`` is above ``dense_max_samples``, LOBPCG refines it.
    dense_max_samples : int, default=3000
        Up to this size LAPACK ``eigh`` on a dense matrix is used; for a sparse ``W`` only up to
        ``min(dense_max_samples, SPARSE_DENSE_EIGEN_MAX_SAMPLES)`` (500), above which the
        iterative solver on the sparse matrix is much cheaper.
    tol : float, default=1e-6
        Tolerance of the iterative solvers.
    assume_symmetric : bool, default=False
        The caller guarantees that a sparse ``W`` is exactly symmetric, which skips the check
        (one transposed copy of the graph). Otherwise ``W`` is symmetrised as ``(W + W^T) / 2``
        unless it already is exactly symmetric.

    Returns
    -------
    vectors : ndarray of shape (n_samples, n_components)
        Orthonormal eigenvectors, smoothest first.
    laplacian_eigenvalues : ndarray of shape (n_components,)
        The matching eigenvalues of the Laplacian (ascending).
    """
    n = W.shape[0]
    c = int(n_components)
    if not 1 <= c <= n:
        raise ValueError(f"n_components={c} must be in [1, n_samples={n}].")
    if normalized:
        M = normalized_adjacency(W)
        shift = 1.0  # L_sym = I - M
    else:
        d = degree(W)
        eta = 2.0 * max(float(d.max()), 1e-12)
        M = sp.diags(eta - d) + W if sp.issparse(W) else np.diag(eta - d) + W
        shift = eta  # L = eta I - M
    dense_limit = (min(dense_max_samples, SPARSE_DENSE_EIGEN_MAX_SAMPLES) if sp.issparse(M)
                   else dense_max_samples)
    if n <= dense_limit or c >= n - 1:
        dense = M.toarray() if sp.issparse(M) else np.asarray(M)
        dense = 0.5 * (dense + dense.T)
        vals, vecs = scipy.linalg.eigh(dense, subset_by_index=[n - c, n - 1], driver="evr")
    else:
        M = sp.csr_matrix(M)
        if not assume_symmetric:
            M = _symmetrized(M)
        vals, vecs = _largest_eigenpairs(M, c, random_state=random_state, initial=initial, tol=tol)
    order = np.argsort(-vals)
    vals, vecs = vals[order], vecs[:, order]
    vecs = _fix_signs(vecs)
    return vecs, shift - vals


def _symmetrized(M: sp.csr_matrix) -> sp.csr_matrix:
    """``(M + M^T) / 2``, or ``M`` itself when it is already exactly symmetric.

    The check needs one transposed copy; the sum needs up to two more (scipy allocates
    ``nnz(M) + nnz(M^T)`` entries), which at n = 1,000,000 is gigabytes for a graph that callers
    (MGF, mPAC) already symmetrise exactly.
    """
    if not M.has_sorted_indices:
        M = M.sorted_indices()  # a copy: M may share its index arrays with the caller's graph
    transposed = M.T.tocsr()
    transposed.sort_indices()
    if (np.array_equal(M.indptr, transposed.indptr)
            and np.array_equal(M.indices, transposed.indices)
            and np.array_equal(M.data, transposed.data)):
        return M
    symmetric = M + transposed
    symmetric.data *= 0.5
    return symmetric


def _largest_eigenpairs(M, c, *, random_state, initial, tol):
    n = M.shape[0]
    if initial is not None and initial.shape == (n, c):
        try:
            with warnings.catch_warnings():
                # Non-convergence is checked on the residual below and falls back to eigsh, so
                # scipy's "not reaching the requested tolerance" warning is not the user's concern.
                warnings.filterwarnings(
                    "ignore", message=r"(?s).*not reaching the requested tolerance",
                    category=UserWarning,
                )
                vals, vecs = lobpcg(
                    M, np.asarray(initial, dtype=np.float64), largest=True, tol=tol, maxiter=200
                )
            # LOBPCG can stall on clustered spectra: check the residual and fall back.
            residual = np.linalg.norm(M @ vecs - vecs * vals, axis=0)
            if np.all(residual < 1e3 * tol * max(1.0, np.abs(vals).max())):
                return vals, vecs
        except (np.linalg.LinAlgError, ValueError):
            pass
        logger.debug("LOBPCG warm start did not converge; falling back to eigsh.")
    rng = check_random_state(random_state)
    v0 = rng.uniform(-1.0, 1.0, size=n)
    vals, vecs = eigsh(M, k=c, which="LA", v0=v0, tol=tol, maxiter=max(1000, 20 * n))
    return vals, vecs


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    # Eigenvectors are defined up to sign; make the largest-magnitude entry positive so that
    # results are reproducible across LAPACK/ARPACK builds.
    pivots = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[pivots, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


#: Smallest ratio of the Gram matrix's eigenvalues (``1 / cond(M)^2``) at which
#: :func:`polar_factor` uses the Gram route instead of the SVD.
POLAR_GRAM_MIN_RATIO = 1e-6


def polar_factor(M: np.ndarray) -> np.ndarray:
    """Orthogonal polar factor ``U V^T`` of ``M = U S V^T``.

    It solves ``argmax_{R^T R = I} tr(R^T M)`` (orthogonal Procrustes). For a tall ``M``
    (``n >= c``) whose condition number is below ``10^3`` it is computed as
    ``M (M^T M)^{-1/2}`` from the ``c x c`` Gram matrix: the same factor to about
    ``eps * cond(M)^2`` (1e-10 at that bound), several times faster than the thin SVD of an
    ``n x c`` matrix (the generalised power iteration calls it every step, on a well-conditioned
    ``eta F - A F + B``). Otherwise, and for wide matrices, the SVD.
    """
    M = np.asarray(M, dtype=np.float64)
    n, c = M.shape
    if n >= c > 0:
        gram = M.T @ M
        eigvals, eigvecs = np.linalg.eigh(gram)
        if eigvals[0] > POLAR_GRAM_MIN_RATIO * eigvals[-1] > 0:
            return M @ ((eigvecs / np.sqrt(eigvals)) @ eigvecs.T)
    U, _, Vt = np.linalg.svd(M, full_matrices=False)
    return U @ Vt


def gpi(
    A: Union[np.ndarray, sp.spmatrix, LinearOperator],
    B: np.ndarray,
    F0: np.ndarray,
    *,
    eta: Optional[float] = None,
    max_iter: int = 100,
    tol: float = 1e-7,
) -> Tuple[np.ndarray, int]:
    """Generalised power iteration for ``min_{F^T F = I} tr(F^T A F) - 2 tr(F^T B)`` [2]_.

    Each step ``F <- polar((eta I - A) F + B)`` does not increase the objective when
    ``eta >= lambda_max(A)``; it costs ``O(nnz(A) c + n c^2)``.

    Parameters
    ----------
    A : symmetric matrix or LinearOperator of shape (n, n)
    B : ndarray of shape (n, c)
    F0 : ndarray of shape (n, c)
        Starting point (warm start), orthonormal columns.
    eta : float, default=None
        Upper bound on the largest eigenvalue of ``A``; required for a LinearOperator,
        otherwise twice the largest absolute row sum (a Gershgorin bound).
    max_iter : int, default=100
    tol : float, default=1e-7
        Stop when ``||F_new - F||_F / sqrt(c)`` falls below it.

    Returns
    -------
    F : ndarray of shape (n, c)
    n_iter : int
    """
    if eta is None:
        if isinstance(A, LinearOperator):
            raise ValueError("gpi needs eta when A is a LinearOperator.")
        row_sums = np.asarray(abs(A).sum(axis=1)).ravel() if sp.issparse(A) else np.abs(A).sum(1)
        eta = float(row_sums.max())
    F = np.asarray(F0, dtype=np.float64)
    c = F.shape[1]
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        F_new = polar_factor(eta * F - A @ F + B)
        change = np.linalg.norm(F_new - F) / np.sqrt(c)
        F = F_new
        if change < tol:
            break
    return F, n_iter


def _max_sq_distance(X: ArrayOrSparse, block_size: int = 512) -> float:
    """Largest squared Euclidean distance between two rows, in row blocks.

    Memory ``O(block_size * n)`` (20 MB per block at 5,000 rows), time ``O(n^2 d)``.
    """
    n = X.shape[0]
    sq = np.asarray(X.multiply(X).sum(axis=1)).ravel() if sp.issparse(X) else np.einsum(
        "ij,ij->i", X, X
    )
    largest = 0.0
    for start in range(0, n, block_size):
        block = X[start : start + block_size]
        gram = block @ X.T
        gram = gram.toarray() if sp.issparse(gram) else np.asarray(gram)
        dist = sq[start : start + block_size, None] + sq[None, :] - 2.0 * gram
        largest = max(largest, float(dist.max()))
    return max(largest, 0.0)


def gaussian_knn_graph(
    X: ArrayOrSparse, n_neighbors: int = 15, *, sigma: float = 0.5
) -> sp.csr_matrix:
    """Symmetric Gaussian-kernel kNN graph of a feature view, as SDSNE and VGMGC build it [4]_.

    Rows are L2-normalised (for unit rows the row-sum normalisation of SDSNE that precedes it
    changes nothing, so it is skipped); with the squared distances ``D`` and their largest value
    ``D_max`` (computed exactly, in row blocks) the similarity of ``i`` and ``j`` is
    ``exp(-(D_ij / D_max)^2 / sigma^2)``; each row keeps its ``n_neighbors`` largest
    similarities, the node itself counting as one of them (so every node has a self-loop of
    weight 1), and the result is symmetrised as ``(S + S^T) / 2``. The graph is built from kNN
    lists; no ``n x n`` matrix is stored.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        A feature view.
    n_neighbors : int, default=15
        Entries kept per row, the node itself included.
    sigma : float, default=0.5
        Kernel width on the scaled squared distance.

    Returns
    -------
    S : csr_matrix of shape (n_samples, n_samples)
        Symmetric, non-negative, unit diagonal.
    """
    n = X.shape[0]
    k = int(min(max(n_neighbors, 1), n))
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
    else:
        X = np.asarray(X, dtype=np.float64)
    from sklearn.preprocessing import normalize

    X = normalize(X, norm="l2")
    largest = _max_sq_distance(X)
    if k <= 1:
        return sp.identity(n, format="csr")
    idx, dist = knn_search(X, k - 1)
    scaled = dist / largest if largest > 0 else np.zeros_like(dist)
    weights = np.exp(-(scaled**2) / sigma**2)
    rows = np.concatenate([np.arange(n), np.repeat(np.arange(n), k - 1)])
    cols = np.concatenate([np.arange(n), idx.ravel()])
    values = np.concatenate([np.ones(n), weights.ravel()])
    S = sp.csr_matrix((values, (rows, cols)), shape=(n, n))
    S = ((S + S.T) * 0.5).tocsr()
    S.setdiag(1.0)
    S.sort_indices()
    return S


def add_self_loops(A: sp.spmatrix) -> sp.csr_matrix:
    """Give every node without a self-loop one, weighted like its strongest edge.

    On a binary graph that is ``A + I`` restricted to the nodes whose diagonal is zero; nodes
    that already carry a self-loop keep it unchanged, and an isolated node gets weight 1.
    """
    A = sp.csr_matrix(A, dtype=np.float64)
    diagonal = A.diagonal()
    strongest = np.asarray(A.max(axis=1).toarray()).ravel() if A.nnz else np.zeros(A.shape[0])
    loops = np.where(diagonal > 0, 0.0, np.where(strongest > 0, strongest, 1.0))
    result = (A + sp.diags(loops)).tocsr()
    result.sort_indices()
    return result


def row_normalize_graph(A: sp.spmatrix) -> sp.csr_matrix:
    """``D^{-1} A`` (rows summing to one; empty rows stay zero)."""
    A = sp.csr_matrix(A, dtype=np.float64)
    d = degree(A)
    scale = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    return (sp.diags(scale) @ A).tocsr()


def personalized_pagerank(
    A: sp.spmatrix,
    *,
    alpha: float = 0.2,
    n_steps: int = 10,
    top_k: int = 32,
    block_size: int = 1024,
) -> sp.csr_matrix:
    """Sparse personalised-PageRank graph: truncated series, top entries per row [5]_.

    With ``At = D^{-1/2} (A + I) D^{-1/2}`` the personalised PageRank matrix
    ``alpha (I - (1 - alpha) At)^{-1}`` is approximated by ``sum_{t <= n_steps} alpha
    (1 - alpha)^t At^t``, computed for blocks of rows (``O(block_size * n)`` memory) and
    truncated to the ``top_k`` largest entries of each row, so the result has at most
    ``2 n top_k`` non-zeros after symmetrisation. The series is truncated after ``n_steps``
    terms; the omitted tail has spectral norm at most ``(1 - alpha)^(n_steps + 1)`` (0.086 for
    the defaults), since ``At`` has spectral radius at most one.

    Parameters
    ----------
    A : sparse matrix of shape (n, n)
        Non-negative symmetric adjacency; existing self-loops are kept and ``I`` is added.
    alpha : float, default=0.2
        Teleport (restart) probability.
    n_steps : int, default=10
        Terms of the series beyond the identity.
    top_k : int, default=32
        Entries kept per row (the largest ones).
    block_size : int, default=1024
        Rows computed at once.

    Returns
    -------
    P : csr_matrix of shape (n, n)
        Non-negative; it is not exactly symmetric after the per-row truncation, so it is
        symmetrised with ``max(P, P^T)``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must be in (0, 1).")
    A = sp.csr_matrix(A, dtype=np.float64)
    n = A.shape[0]
    At = normalized_adjacency((A + sp.identity(n, format="csr")).tocsr())
    At_T = At.T.tocsr()
    k = min(int(top_k), n)
    rows_out, cols_out, vals_out = [], [], []
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        block = np.zeros((stop - start, n))
        block[np.arange(stop - start), np.arange(start, stop)] = 1.0
        total = alpha * block
        term = block
        for step in range(1, n_steps + 1):
            # (term @ At) for a row block, written as (At^T @ term^T)^T to keep At sparse
            term = np.asarray((At_T @ term.T).T)
            total += alpha * (1.0 - alpha) ** step * term
        top = np.argpartition(-total, k - 1, axis=1)[:, :k] if k < n else np.tile(
            np.arange(n), (stop - start, 1)
        )
        values = np.take_along_axis(total, top, axis=1)
        keep = values > 0
        rows_out.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
        cols_out.append(top.ravel()[keep.ravel()])
        vals_out.append(values.ravel()[keep.ravel()])
    P = sp.csr_matrix(
        (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
        shape=(n, n),
    )
    P = P.maximum(P.T).tocsr()
    P.sort_indices()
    return P


#: :func:`propagate_features` continues with a dense ``n x d`` block once a sparse product has
#: filled in more than this fraction of its entries.
_FILLED_FRACTION = 0.25


def propagate_features(graphs, X: ArrayOrSparse, *, n_steps: int = 2) -> ArrayOrSparse:
    """Features smoothed over every graph view: ``sum_v S_v^k X``.

    ``S_v = D_v^{-1/2} (A_v + I) D_v^{-1/2}`` is the symmetrically normalised adjacency of
    view ``v`` with self-loops (:func:`add_self_loops`: ``A + I`` on a graph without loops; a
    weighted graph's loops are weighted like each node's strongest edge), the fixed low-pass
    filter of SGC [6]_ and AGC [7]_; clustering the views' summed filtered features is the
    simplest label-free propagation baseline for attributed multi-view graphs. Only sparse
    matrix products are used: ``O(k sum_v nnz(A_v) d)`` time and no ``n x n`` dense matrix.

    Parameters
    ----------
    graphs : sparse matrix or list of sparse matrices of shape (n_samples, n_samples)
        Non-negative adjacency matrices over the same nodes (one per view).
    X : array-like or sparse matrix of shape (n_samples, n_features)
        Node features shared by every view.
    n_steps : int, default=2
        Propagation steps ``k`` (``0`` returns ``V X``).

    Returns
    -------
    propagated : ndarray or csr_matrix of shape (n_samples, n_features)
        Dense when ``X`` is dense, CSR when ``X`` is sparse (propagation fills it in: about
        ``min(d, degree^k nnz per row)`` entries per row).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from mvlearn_plus.graphs import propagate_features
    >>> A = sp.csr_matrix(np.array([[0, 1], [1, 0]], dtype=float))
    >>> propagate_features([A], np.array([[1.0], [0.0]]), n_steps=1)
    array([[0.5],
           [0.5]])
    """
    if sp.issparse(graphs):
        graphs = [graphs]
    graphs = list(graphs)
    if not graphs:
        raise ValueError("propagate_features needs at least one graph.")
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise ValueError(f"n_steps={n_steps!r} must be a non-negative integer.")
    sparse_input = sp.issparse(X)
    features = sp.csr_matrix(X, dtype=np.float64) if sparse_input else np.asarray(
        X, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {features.shape}.")
    n = features.shape[0]
    total = None
    for index, graph in enumerate(graphs):
        if graph.shape != (n, n):
            raise ValueError(
                f"graph {index} has shape {graph.shape}; expected ({n}, {n}) to match X."
            )
        operator = normalized_adjacency(add_self_loops(graph))
        result = features
        for _ in range(int(n_steps)):
            result = operator @ result
            if sp.issparse(result) and result.nnz > _FILLED_FRACTION * np.prod(result.shape):
                # Filled in: a sparse-times-dense product is then several times faster than
                # sparse-times-sparse (ACM's 730-neighbour graph: 22 s -> a few seconds).
                result = result.toarray()
        total = result if total is None else total + result
    return sp.csr_matrix(total) if sparse_input else np.asarray(total)
