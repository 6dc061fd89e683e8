"""Storage of MGF's per-view and fused graphs: dense matrices or values on one kNN pattern.

MGF's iteration (:meth:`MultiGraphFusionClustering._fit_graphs`) is written once; these two
classes hold what differs between the exact path and the kNN path: how the view graphs are
stored, solved and turned into matrices. Both expose the graphs as *value arrays* (the dense
matrix itself, or the ``nnz`` values on the union pattern), so fusion weights, the weighted sum
and the rank correction are the same array expressions on either path.
"""

from __future__ import annotations

from typing import Iterator, List

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from mvlearn_plus.cluster._self_expression import (
    GramEigen,
    LocalGram,
    dense_sq_distances,
    pairwise_sq_distances_on,
    ridge_with_prior,
    ridge_with_prior_zero_diagonal,
    symmetrize_nonnegative,
)
from mvlearn_plus.graphs import knn_search

__all__ = ["_DenseGraphs", "_KnnGraphs", "_UnionPattern"]


class _DenseGraphs:
    """The exact method: every ``Z_v`` and ``Z`` dense ``n x n``, solved through each view's
    Gram eigendecomposition (``O(n^2 r)`` per view and iteration).

    ``reference=True`` keeps the official code's behaviour: identity start and no zero-diagonal
    constraint.
    """

    def __init__(self, views, alpha: float, *, reference: bool = False):
        self.reference = reference
        self.n = views[0].shape[0]
        self.eigs = [GramEigen(X) for X in views]
        if reference:
            self.view_values: List[np.ndarray] = [np.eye(self.n) for _ in views]
        else:
            self.view_values = [
                symmetrize_nonnegative(ridge_with_prior_zero_diagonal(e, alpha, None, 0.0))
                for e in self.eigs
            ]

    def initial_consensus(self) -> np.ndarray:
        if self.reference:
            return np.eye(self.n)
        return np.mean(self.view_values, axis=0)

    def sq_distances(self, G: np.ndarray) -> np.ndarray:
        return dense_sq_distances(G)

    def update_view(self, v: int, mu: float, prior: np.ndarray, prior_weight: float) -> None:
        solve = ridge_with_prior if self.reference else ridge_with_prior_zero_diagonal
        self.view_values[v] = symmetrize_nonnegative(solve(self.eigs[v], mu, prior, prior_weight))

    def finish_consensus(self, consensus: np.ndarray) -> np.ndarray:
        if not self.reference:
            np.fill_diagonal(consensus, 0.0)
        return consensus

    def matrix(self, values: np.ndarray) -> np.ndarray:
        return values

    def view_matrices(self) -> Iterator[np.ndarray]:
        return iter(self.view_values)


class _KnnGraphs:
    """The kNN path: ``Z_v`` restricted to the kNN support of view ``v``, every graph stored as
    values on the union of the symmetrised supports (``O(V n k^2)`` memory and time).
    """

    def __init__(self, views, alpha: float, n_neighbors: int, knn_method: str, *,
                 verbose: bool = False):
        n = views[0].shape[0]
        self.locals: List[LocalGram] = []
        neighbours = []
        #: How each view's neighbour lists were searched (see ``knn_search``'s ``info``).
        self.search_info: List[dict] = []
        for X in tqdm(views, desc="MGF kNN graphs", disable=not verbose, leave=False):
            info: dict = {}
            idx, _ = knn_search(X, n_neighbors, method=knn_method, info=info)
            self.search_info.append(info)
            neighbours.append(idx)
            self.locals.append(LocalGram(X, idx))
        self.pattern = _UnionPattern(neighbours, n)
        del neighbours  # the pattern keeps its own index maps
        self.view_values = [
            self.pattern.symmetric_data(v, np.maximum(lg.solve(lg.inner, alpha), 0.0))
            for v, lg in enumerate(self.locals)
        ]

    def initial_consensus(self) -> np.ndarray:
        return np.mean(self.view_values, axis=0)

    def sq_distances(self, G: np.ndarray) -> np.ndarray:
        return pairwise_sq_distances_on(self.pattern.rows, self.pattern.cols, G)

    def update_view(self, v: int, mu: float, prior: np.ndarray, prior_weight: float) -> None:
        lg = self.locals[v]
        local_prior = prior[self.pattern.direct[v]]
        codes = np.maximum(lg.solve(lg.inner + prior_weight * local_prior, mu), 0.0)
        self.view_values[v] = self.pattern.symmetric_data(v, codes)

    def finish_consensus(self, consensus: np.ndarray) -> np.ndarray:
        # The kNN supports carry no diagonal; the sum is symmetrised against rounding.
        return self.pattern.symmetrize(consensus)

    def matrix(self, values: np.ndarray) -> sp.csr_matrix:
        return self.pattern.matrix(values)

    def view_matrices(self) -> Iterator[sp.csr_matrix]:
        # A generator: the objective holds one view's sparse matrix at a time (three at once
        # cost 3.6 GB at n = 1,000,000).
        return (self.pattern.matrix(values) for values in self.view_values)


class _UnionPattern:
    """The union of the symmetrised kNN supports of all views, with index maps into it.

    All per-view graphs and the fused graph are stored as value arrays on this one sparsity
    pattern, so fusion, weights and the rank term are vectorised over ``nnz`` entries.
    """

    def __init__(self, neighbours, n):
        self.n = n
        # Every view contributes its kNN entries (i, j) and their mirrors (j, i). One sort of
        # all keys row-major gives the pattern and, through the inverse permutation, where each
        # contributed entry sits in it; an entry's mirror is its partner in the same block.
        # (np.unique and searchsorted did the same in 7x the time at n = 100,000.)
        blocks = []
        for idx in neighbours:
            cols = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
            rows = idx.ravel().astype(np.int64)
            blocks.append(rows * n + cols)
            blocks.append(cols * n + rows)
        sizes = [b.size for b in blocks]
        keys = np.concatenate(blocks)
        del blocks
        order = np.argsort(keys)
        sorted_keys = keys[order]
        del keys
        is_new = np.empty(sorted_keys.size, dtype=bool)
        is_new[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=is_new[1:])
        unique = sorted_keys[is_new]
        del sorted_keys
        position = np.empty(order.size, dtype=np.int64)
        position[order] = np.cumsum(is_new) - 1
        del order, is_new
        nnz = unique.size
        index_dtype = np.int32 if max(n, nnz) < np.iinfo(np.int32).max else np.int64
        self.rows = (unique // n).astype(index_dtype)
        self.cols = (unique % n).astype(index_dtype)
        del unique
        self.indptr = np.concatenate(
            [[0], np.cumsum(np.bincount(self.rows, minlength=n))]
        ).astype(index_dtype)
        self.size = nnz
        self.direct, self.transposed = [], []
        self.mirror = np.empty(nnz, dtype=index_dtype)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        for v, idx in enumerate(neighbours):
            d_pos = position[offsets[2 * v]:offsets[2 * v + 1]].astype(index_dtype)
            t_pos = position[offsets[2 * v + 1]:offsets[2 * v + 2]].astype(index_dtype)
            self.direct.append(d_pos.reshape(idx.shape))
            self.transposed.append(t_pos.reshape(idx.shape))
            self.mirror[d_pos] = t_pos
            self.mirror[t_pos] = d_pos

    def symmetrize(self, data):
        """Exactly symmetric values: float sums gathered in another order (bincount, several
        views) can leave (i, j) and (j, i) one rounding apart."""
        return 0.5 * (data + data[self.mirror])

    def symmetric_data(self, view, column_values):
        """Values of ``(C + C^T) / 2`` on the pattern, ``C[N(j), j] = column_values[j]``."""
        size = self.size
        flat = column_values.ravel()
        direct = np.bincount(self.direct[view].ravel(), weights=flat, minlength=size)
        transposed = np.bincount(self.transposed[view].ravel(), weights=flat, minlength=size)
        return self.symmetrize(0.5 * (direct + transposed))

    def matrix(self, data):
        return sp.csr_matrix((data, self.cols, self.indptr), shape=(self.n, self.n))
