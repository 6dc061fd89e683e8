"""Graph building blocks shared by the spectral estimators.

Everything here is written once and used by MGF and mPAC (and later methods):

* :func:`knn_search` -- exact k-nearest-neighbour lists, ``O(n k)`` memory.
* :func:`pkn_graph` -- the parameter-free probabilistic-neighbour (PKN) graph of Nie et al.
* :func:`degree`, :func:`laplacian`, :func:`normalized_adjacency` -- graph Laplacians.
* :func:`spectral_embedding` -- the ``c`` smoothest eigenvectors of a graph, dense for small
  ``n``, ``eigsh``/``lobpcg`` otherwise.
* :func:`polar_factor` and :func:`gpi` -- orthogonality-constrained solvers.

References
----------
.. [1] F. Nie, X. Wang, M. I. Jordan, H. Huang. "The constrained Laplacian rank algorithm for
   graph-based clustering." AAAI 2016 (the PKN graph; first in KDD 2014 "Clustering and
   projected clustering with adaptive neighbors").
.. [2] F. Nie, R. Zhang, X. Li. "A generalized power iteration method for solving quadratic
   problem on the Stiefel manifold." Science China Information Sciences 60, 2017.
.. [3] U. von Luxburg. "A tutorial on spectral clustering." Statistics and Computing 17, 2007.
"""

from __future__ import annotations

import logging
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
    "DENSE_EIGEN_MAX_SAMPLES",
]

#: Up to this many samples, eigenproblems are solved densely with LAPACK ``eigh``.
DENSE_EIGEN_MAX_SAMPLES = 3000

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
) -> Tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest neighbours under the squared Euclidean distance.

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

    Returns
    -------
    indices : ndarray of shape (n_queries, n_neighbors), int64
        Neighbour indices sorted by increasing distance.
    sq_distances : ndarray of shape (n_queries, n_neighbors), float64
        The corresponding squared Euclidean distances (clipped at 0).
    """
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
    n_search = n_neighbors + 1 if self_search else n_neighbors
    Q = X if self_search else query
    if use_faiss:
        import faiss

        base = np.ascontiguousarray(X, dtype=np.float32)
        index = faiss.IndexFlatL2(base.shape[1])
        index.add(base)
        dist, idx = index.search(np.ascontiguousarray(Q, dtype=np.float32), n_search)
        idx = idx.astype(np.int64)
        dist = dist.astype(np.float64)
    else:
        nn = NearestNeighbors(n_neighbors=n_search, algorithm="brute", metric="euclidean")
        nn.fit(X)
        dist, idx = nn.kneighbors(Q, return_distance=True)
        dist = dist**2
    if self_search:
        idx, dist = _drop_self(idx, dist)
    return idx.astype(np.int64, copy=False), np.maximum(dist, 0.0)


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
    """``D^{-1/2} W D^{-1/2}`` with zero degrees replaced by 1."""
    d = degree(W)
    d = np.where(d > 0, d, 1.0)
    scale = 1.0 / np.sqrt(d)
    if sp.issparse(W):
        D = sp.diags(scale)
        return (D @ W @ D).tocsr()
    return W * scale[:, None] * scale[None, :]


def spectral_embedding(
    W: ArrayOrSparse,
    n_components: int,
    *,
    normalized: bool = True,
    random_state=None,
    initial: Optional[np.ndarray] = None,
    dense_max_samples: int = DENSE_EIGEN_MAX_SAMPLES,
    tol: float = 1e-6,
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
        Up to this size LAPACK ``eigh`` on a dense matrix is used.
    tol : float, default=1e-6
        Tolerance of the iterative solvers.

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
    if n <= dense_max_samples or c >= n - 1:
        dense = M.toarray() if sp.issparse(M) else np.asarray(M)
        dense = 0.5 * (dense + dense.T)
        vals, vecs = scipy.linalg.eigh(dense, subset_by_index=[n - c, n - 1], driver="evr")
    else:
        M = sp.csr_matrix(M)
        M = (M + M.T) * 0.5
        vals, vecs = _largest_eigenpairs(M, c, random_state=random_state, initial=initial, tol=tol)
    order = np.argsort(-vals)
    vals, vecs = vals[order], vecs[:, order]
    vecs = _fix_signs(vecs)
    return vecs, shift - vals


def _largest_eigenpairs(M, c, *, random_state, initial, tol):
    n = M.shape[0]
    if initial is not None and initial.shape == (n, c):
        try:
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


def polar_factor(M: np.ndarray) -> np.ndarray:
    """Orthogonal polar factor ``U V^T`` of ``M = U S V^T``.

    It solves ``argmax_{R^T R = I} tr(R^T M)`` (orthogonal Procrustes).
    """
    U, _, Vt = np.linalg.svd(np.asarray(M, dtype=np.float64), full_matrices=False)
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
