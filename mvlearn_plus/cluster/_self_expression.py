"""Ridge self-expression shared by the self-expressive graph methods (MGF, mPAC).

Both methods represent each sample ``x_j`` of a view as a non-negative combination of the
others, ``min_z ||x_j - X^T z||^2 + mu ||z||^2 (+ linear terms)``. On the exact path the normal
equations involve ``(K + mu I)^{-1}`` with ``K = X X^T``; on the kNN path each column lives on the
``k`` nearest neighbours of ``j`` and involves a ``k x k`` local Gram matrix. Both are factorised
once so that changing ``mu`` (MGF re-weights it every iteration) costs no new factorisation.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.linalg
import scipy.sparse as sp

#: Upper bound on the floats held by one dense chunk of gathered neighbour rows.
_CHUNK_FLOATS = 2**24


class GramEigen:
    """Eigendecomposition ``K = U diag(lam) U^T`` of the Gram matrix of one view.

    ``U`` has ``r <= min(n, d)`` columns (a thin SVD of ``X`` when ``d < n``), so applying
    ``(K + mu I)^{-1}`` to an ``n x m`` matrix costs ``O(n r m)`` for any ``mu > 0``.
    """

    def __init__(self, X):
        n, d = X.shape
        if d < n:
            dense = X.toarray() if sp.issparse(X) else np.asarray(X)
            U, s, _ = scipy.linalg.svd(dense, full_matrices=False, lapack_driver="gesdd")
            lam = s**2
        else:
            K = X @ X.T
            K = K.toarray() if sp.issparse(K) else np.asarray(K)
            lam, U = scipy.linalg.eigh(0.5 * (K + K.T))
        keep = lam > 1e-10 * max(float(lam.max(initial=0.0)), 1e-300)
        self.U = np.ascontiguousarray(U[:, keep])
        self.lam = lam[keep]
        self.n = n

    def inverse(self, mu: float) -> np.ndarray:
        """``(K + mu I)^{-1}`` as a dense matrix."""
        P = (self.U * (1.0 / (self.lam + mu) - 1.0 / mu)) @ self.U.T
        P[np.diag_indices_from(P)] += 1.0 / mu
        return P

    def ridge_projection(self, mu: float) -> np.ndarray:
        """``(K + mu I)^{-1} K = U diag(lam / (lam + mu)) U^T``."""
        return (self.U * (self.lam / (self.lam + mu))) @ self.U.T


def zero_diagonal_correction(Z_hat: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Exact solution of the column-wise ridge problem under ``diag(Z) = 0``.

    With ``Z_hat = P B`` the unconstrained solution and ``P = (K + mu I)^{-1}``, the constrained
    column ``j`` is ``Z_hat[:, j] - P[:, j] Z_hat[j, j] / P[j, j]`` (one Lagrange multiplier per
    column); this returns that matrix, whose diagonal is exactly zero.
    """
    ratio = np.diag(Z_hat) / np.diag(P)
    Z = Z_hat - P * ratio[None, :]
    np.fill_diagonal(Z, 0.0)
    return Z


def symmetrize_nonnegative(Z: np.ndarray) -> np.ndarray:
    """``(max(Z, 0) + max(Z, 0)^T) / 2``: the projection used after each graph update."""
    Z = np.maximum(Z, 0.0)
    return 0.5 * (Z + Z.T)


class LocalGram:
    """Per-column local Gram matrices on kNN supports, factorised once.

    For query ``j`` with neighbours ``N(j)`` (rows of the indexed view), this stores the
    eigendecomposition of ``G_j = X[N(j)] X[N(j)]^T`` and the vector ``g_j = X[N(j)] q_j`` (the
    query's inner products with its neighbours), so that
    ``(G_j + mu I)^{-1} r`` costs ``O(k^2)`` for any ``mu``. Memory is ``O(n k^2)`` floats, kept in
    float32.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        The indexed view (training samples).
    indices : ndarray of shape (n_queries, k)
        Neighbour lists into the rows of ``X``.
    query : ndarray or sparse matrix of shape (n_queries, n_features), default=None
        The queries; ``None`` means the rows of ``X`` themselves (self-expression).
    """

    def __init__(self, X, indices: np.ndarray, query=None):
        query = X if query is None else query
        n_queries, k = indices.shape
        n_features = X.shape[1]
        chunk = max(1, _CHUNK_FLOATS // max(1, k * n_features))
        self.eigenvalues = np.empty((n_queries, k), dtype=np.float32)
        self.eigenvectors = np.empty((n_queries, k, k), dtype=np.float32)
        self.inner = np.empty((n_queries, k), dtype=np.float64)
        self.sq_norms = np.empty(n_queries, dtype=np.float64)
        for start in range(0, n_queries, chunk):
            stop = min(start + chunk, n_queries)
            block = indices[start:stop]
            rows = X[block.ravel()]
            rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
            rows = rows.reshape(stop - start, k, n_features)
            q = query[start:stop]
            q = q.toarray() if sp.issparse(q) else np.asarray(q)
            G = np.matmul(rows, rows.transpose(0, 2, 1))
            vals, vecs = np.linalg.eigh(G)
            self.eigenvalues[start:stop] = np.maximum(vals, 0.0)
            self.eigenvectors[start:stop] = vecs
            self.inner[start:stop] = np.einsum("jkd,jd->jk", rows, q)
            self.sq_norms[start:stop] = np.einsum("jd,jd->j", q, q)

    def solve(self, rhs: np.ndarray, mu: float) -> np.ndarray:
        """Solve ``(G_j + mu I) z_j = rhs_j`` for every query ``j`` at once."""
        Q = self.eigenvectors
        coeffs = np.einsum("jkm,jk->jm", Q, rhs.astype(np.float32, copy=False))
        coeffs = coeffs / (self.eigenvalues + np.float32(mu))
        return np.einsum("jkm,jm->jk", Q, coeffs).astype(np.float64)



def columns_to_sparse(
    indices: np.ndarray, values: np.ndarray, n_samples: int
) -> sp.csr_matrix:
    """Sparse matrix ``C`` with ``C[indices[j, m], j] = values[j, m]`` (column ``j`` on ``N(j)``)."""
    n_cols, k = indices.shape
    cols = np.repeat(np.arange(n_cols), k)
    return sp.csr_matrix(
        (values.ravel(), (indices.ravel(), cols)), shape=(n_samples, n_cols)
    )


def local_ridge_codes(
    X_train, X_new, n_neighbors: int, alpha: float, *, backend: str = "auto",
    method: str = "auto",
) -> Tuple[np.ndarray, np.ndarray]:
    """Non-negative ridge self-expression of new samples on their nearest training samples.

    For each new sample ``x``: find its ``k`` nearest training samples ``N``, solve
    ``z = (X[N] X[N]^T + alpha I)^{-1} X[N] x`` and clip at zero. This is the out-of-sample rule
    used by the ``predict`` extensions of MGF and mPAC.

    Returns
    -------
    indices : ndarray of shape (n_new, k)
    codes : ndarray of shape (n_new, k), non-negative
    """
    from mvlearn_plus.graphs import knn_search

    k = min(int(n_neighbors), X_train.shape[0])
    indices, _ = knn_search(X_train, k, query=X_new, backend=backend, method=method)
    local = LocalGram(X_train, indices, query=X_new)
    codes = np.maximum(local.solve(local.inner, alpha), 0.0)
    return indices, codes


def relative_change(new: np.ndarray, old: np.ndarray) -> float:
    """``||new - old|| / ||old||`` (Frobenius), with ``old = 0`` treated as norm 1."""
    old_norm = float(np.linalg.norm(old))
    return float(np.linalg.norm(new - old)) / (old_norm if old_norm > 0 else 1.0)


def reconstruction_error(X, Z) -> float:
    """``||X - Z^T X||_F^2``, the self-expression term ``E(Z, K)`` for ``K = X X^T``.

    Expanded as ``||X||^2 - 2 <X, R> + ||R||^2`` with ``R = Z^T X``, so a sparse ``X`` is never
    densified and, with a sparse ``Z`` (kNN path), neither is ``R``.
    """
    R = Z.T @ X

    def sq_norm(M):
        return float(M.multiply(M).sum()) if sp.issparse(M) else float(np.sum(np.square(M)))

    if sp.issparse(X):
        cross = float(X.multiply(R).sum())
    elif sp.issparse(R):
        cross = float(R.multiply(X).sum())
    else:
        cross = float(np.sum(np.asarray(X) * R))
    return max(sq_norm(X) - 2.0 * cross + sq_norm(R), 0.0)


def pairwise_sq_distances_on(rows: np.ndarray, cols: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``||G[rows[t]] - G[cols[t]]||^2`` for every stored entry ``t``, in bounded chunks."""
    out = np.empty(rows.shape[0], dtype=np.float64)
    step = max(1, _CHUNK_FLOATS // max(1, G.shape[1]))
    for start in range(0, rows.shape[0], step):
        stop = min(start + step, rows.shape[0])
        diff = G[rows[start:stop]] - G[cols[start:stop]]
        out[start:stop] = np.einsum("tc,tc->t", diff, diff)
    return out


def dense_sq_distances(G: np.ndarray) -> np.ndarray:
    """All pairwise ``||g_i - g_j||^2`` (dense path only)."""
    s = np.einsum("ic,ic->i", G, G)
    E = s[:, None] + s[None, :] - 2.0 * (G @ G.T)
    np.maximum(E, 0.0, out=E)
    np.fill_diagonal(E, 0.0)
    return E


def minmax_scale_global(X, bounds: Optional[Tuple[float, float]] = None):
    """Map a view to [-1, 1] with the matrix's global min and max (official MGF/mPAC scaling).

    Returns the scaled view and the ``(min, max)`` used, so new samples can be scaled the same way.
    """
    dense = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    lo, hi = bounds if bounds is not None else (float(dense.min()), float(dense.max()))
    span = hi - lo if hi > lo else 1.0
    return 2.0 * (dense - lo) / span - 1.0, (lo, hi)


def ridge_with_prior_zero_diagonal(
    eig: GramEigen, mu: float, prior: Optional[np.ndarray], prior_weight: float
) -> np.ndarray:
    """Columns of ``argmin_Z ||X^T - X^T Z||^2 + mu ||Z||^2 - 2 c tr(Z_prior^T Z)``, ``diag(Z) = 0``.

    The unconstrained solution is ``Z_hat = P (K + c Z_prior)`` with ``P = (K + mu I)^{-1}``
    (``mu`` already includes the prior's quadratic weight); the zero-diagonal solution subtracts
    ``P diag(Z_hat_jj / P_jj)`` (:func:`zero_diagonal_correction`). Everything is applied
    through the eigendecomposition, ``O(n^2 r)``, without forming ``P``.
    """
    U, lam = eig.U, eig.lam
    b = 1.0 / (lam + mu) - 1.0 / mu
    T = U.T * (lam / (lam + mu))[:, None]
    if prior is not None and prior_weight != 0.0:
        T = T + (prior_weight * b)[:, None] * (U.T @ prior)
    Z_hat = U @ T
    if prior is not None and prior_weight != 0.0:
        Z_hat += (prior_weight / mu) * prior
    diag_P = (U**2) @ b + 1.0 / mu
    ratio = np.diag(Z_hat) / diag_P
    Z = Z_hat - U @ (b[:, None] * (U.T * ratio[None, :]))
    Z[np.diag_indices_from(Z)] -= ratio / mu
    np.fill_diagonal(Z, 0.0)
    return Z


def ridge_with_prior(
    eig: GramEigen, mu: float, prior: Optional[np.ndarray], prior_weight: float
) -> np.ndarray:
    """The same solution without the zero-diagonal constraint (official MGF behaviour)."""
    U, lam = eig.U, eig.lam
    b = 1.0 / (lam + mu) - 1.0 / mu
    T = U.T * (lam / (lam + mu))[:, None]
    if prior is None or prior_weight == 0.0:
        return U @ T
    T = T + (prior_weight * b)[:, None] * (U.T @ prior)
    return U @ T + (prior_weight / mu) * prior
