"""Data preparation: features, targets and graph operators, built once per fit.

Nothing here builds a dense ``n x n`` matrix: the fixed propagation operators are sparse at
every density. A sparse feature view wider than the hidden layer stays sparse on the device
(:class:`SparseFeatures`): the first layer that reads it is a sparse matrix product, its
decoder's target enters the loss through its non-zeros (:func:`feature_loss`), and its fixed
propagation ``Prop(X, P) W^T`` runs as ``Prop(X W^T, P)`` (linear maps commute with
propagation) when that costs less than the dense ``n x d`` block it would otherwise need.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize as sk_normalize

from mvlearn_plus.cluster._edges import EdgeSet, edge_dot, quiet_sparse_csr, top_k_per_row
from mvlearn_plus.cluster._torch import import_torch, to_tensor
from mvlearn_plus.graphs import (
    add_self_loops,
    knn_search,
    normalized_adjacency,
    row_normalize_graph,
)
from mvlearn_plus.preprocessing import minmax_apply, minmax_bounds

torch = import_torch("VariationalGraphGeneratorClustering")
F = torch.nn.functional


class Problem:
    """Everything fixed during training: features, targets, graph operators, the backend."""

    def __init__(self, estimator, feature_views, shared, graphs, n_clusters, device, backend):
        """Prepare the data; ``backend(patterns, shared_input)`` builds the graph backend."""
        self.device = device
        self.n = shared.shape[0]
        self.n_views = len(graphs)
        self.n_clusters = n_clusters
        order = estimator.order
        # Graph views that share one feature matrix share its tensors too (ACM: two graphs, one
        # matrix), and a single matrix is also the generator's shared input.
        cache = {}

        def prepared(view):
            if id(view) not in cache:
                target = unit_scale(view)
                features = row_sum_normalise(target)
                if sp.issparse(view) and view.shape[1] > estimator.hidden_dim:
                    cache[id(view)] = (SparseFeatures(target, device),
                                       SparseFeatures(features, device), features)
                else:
                    cache[id(view)] = (to_tensor(dense(target), device),
                                       to_tensor(dense(features), device), features)
            return cache[id(view)]

        self.inputs, self.targets, self.fixed, self.fixed_operators = [], [], [], []
        operators = [propagation_operator(g, estimator.graph_normalization) for g in graphs]
        for view, operator in zip(feature_views, operators):
            target, features, source = prepared(view)
            self.targets.append(target)
            self.inputs.append(features)
            if isinstance(features, SparseFeatures) and project_first_is_cheaper(
                    source, operator, order):
                # Prop(X, P) would be a dense n x d block: the encoder propagates X W^T instead.
                self.fixed.append(None)
                self.fixed_operators.append(sparse_operator(operator, device))
            else:
                dense_features = features.to_dense() if isinstance(features, SparseFeatures) \
                    else features
                self.fixed.append(propagate_fixed(operator, dense_features, order))
                self.fixed_operators.append(None)
        self.shared_target, self.shared_input, shared_input = prepared(shared)
        self.patterns = [binary_pattern(g) for g in graphs]
        self.backend = backend(self.patterns, shared_input)


class SparseFeatures:
    """A sparse ``n x d`` feature matrix on the device (CSR), with its COO indices.

    Used where the first operation on the features is a product with a ``hidden x d`` weight
    (:meth:`project`) or the sigmoid decoder's loss (:func:`feature_loss`), so the dense block
    never exists.
    """

    def __init__(self, matrix, device, *, _parts=None):
        if _parts is None:
            matrix = sp.csr_matrix(matrix, dtype=np.float32)
            matrix.sort_indices()
            crow = torch.as_tensor(matrix.indptr.astype(np.int64), device=device)
            cols = torch.as_tensor(matrix.indices.astype(np.int64), device=device)
            values = torch.as_tensor(matrix.data, device=device)
            shape = matrix.shape
        else:
            crow, cols, values, shape = _parts
        self.crow, self.cols, self.values = crow, cols, values
        self.shape = tuple(int(x) for x in shape)
        self.device = values.device
        counts = crow[1:] - crow[:-1]
        self.rows = torch.repeat_interleave(
            torch.arange(self.shape[0], device=self.device), counts)

    def csr(self, values=None):
        with quiet_sparse_csr():
            return torch.sparse_csr_tensor(
                self.crow, self.cols, self.values if values is None else values, self.shape,
                check_invariants=False)

    def dropout(self, p: float, training: bool) -> "SparseFeatures":
        """Dropout of the stored entries (the zeros stay zeros, as in dense dropout)."""
        if not training or p == 0:
            return self
        values = F.dropout(self.values, p, True)
        return SparseFeatures(None, self.device,
                              _parts=(self.crow, self.cols, values, self.shape))

    def project(self, weight):
        """``X W^T`` for ``weight`` of shape ``(out, d)``, differentiable in ``weight``."""
        with quiet_sparse_csr():
            return self.csr() @ weight.T

    def to_dense(self):
        with quiet_sparse_csr():
            return self.csr().to_dense()


def linear(layer, x):
    """``layer(x)`` for a dense tensor or :class:`SparseFeatures`."""
    if isinstance(x, SparseFeatures):
        out = x.project(layer.weight)
        return out if layer.bias is None else out + layer.bias
    return layer(x)


def dropout(x, p, training):
    if isinstance(x, SparseFeatures):
        return x.dropout(p, training)
    return F.dropout(x, p, training)


def feature_loss(logits, target):
    """Mean sigmoid cross-entropy of ``logits`` against a dense or :class:`SparseFeatures` target.

    For a sparse target ``t``: ``BCE(x, t) = softplus(x) - x t``, summed densely for the first
    term and over the stored entries for the second (equal to the dense loss up to rounding).
    """
    if not isinstance(target, SparseFeatures):
        return F.binary_cross_entropy_with_logits(logits, target)
    linear_part = (logits[target.rows, target.cols] * target.values).sum()
    return (F.softplus(logits).sum() - linear_part) / logits.numel()


def project_first_is_cheaper(features, operator, order) -> bool:
    """``nnz(X) + order nnz(P)`` (per epoch, propagating ``X W^T``) against ``n d``."""
    n, d = features.shape
    return features.nnz + order * operator.nnz < n * d


def sparse_operator(operator, device):
    coo = operator.tocoo()
    edges = EdgeSet(coo.row, coo.col, operator.shape[0], device)
    values = to_tensor(coo.data[np.lexsort((coo.col, coo.row))], device)
    return edges.matrix(values)


def dense(matrix):
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def unit_scale(view):
    """Scale to [0, 1]: divide by the column maximum when non-negative, else min-max."""
    low, span = minmax_bounds(view, zero_floor=True)
    return minmax_apply(view, low, span)


def row_sum_normalise(view):
    sums = np.asarray(view.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    if sp.issparse(view):
        return sp.csr_matrix(sp.diags(scale) @ view)
    return view * scale[:, None]


def propagation_operator(graph, normalization):
    looped = add_self_loops(graph)
    return row_normalize_graph(looped) if normalization == "row" else normalized_adjacency(looped)


def propagate_fixed(operator, features, order):
    """``Prop(X, P)`` for a fixed operator, once (float32; ``P`` sparse at any density)."""
    return propagate(sparse_operator(operator, features.device), features, order)


def propagate(matrix, features, order):
    """``sum_{t <= order} P^t X`` as ``X + P (X + P (X + ...))``."""
    result = features.clone() if order == 0 else features
    for _ in range(order):
        result = matrix @ result + features
    return result


def binary_pattern(graph):
    """The symmetric 0/1 pattern of a graph without its diagonal (the reconstruction target)."""
    pattern = sp.csr_matrix((graph != 0).astype(np.float64))
    pattern.setdiag(0.0)
    pattern.eliminate_zeros()
    pattern = pattern.maximum(pattern.T).tocsr()
    pattern.sort_indices()
    return pattern


def candidate_pattern(patterns, shared_input, k):
    """Candidate edges of the sparse path, at most ``(V + 1) k`` per node before symmetrising.

    Per node: its ``k`` input-graph neighbours (per view) with the most similar shared features
    (cosine; all of them when it has at most ``k``), and its ``k`` nearest neighbours in the
    shared features. Dense input graphs (ACM's PLP has 730 neighbours per node) would otherwise
    put millions of pairs into every step.
    """
    n = shared_input.shape[0]
    unit = sk_normalize(shared_input, norm="l2")
    blocks = []
    for pattern in patterns:
        blocks.append(top_neighbours_by_similarity(pattern, unit, k) if k > 0 else pattern)
    if k > 0 and n > 1:
        idx, _ = knn_search(unit, min(k, n - 1))
        rows = np.repeat(np.arange(n), idx.shape[1])
        blocks.append(sp.csr_matrix((np.ones(rows.size), (rows, idx.ravel())), shape=(n, n)))
    total = sum(blocks, sp.csr_matrix((n, n)))
    total = ((total + total.T) != 0).astype(np.float64).tocsr()
    total.setdiag(0.0)
    total.eliminate_zeros()
    total.sort_indices()
    return total


def top_neighbours_by_similarity(pattern, unit, k):
    """Keep each row's ``k`` neighbours whose features are most similar (ties: lower index)."""
    n = pattern.shape[0]
    edges = EdgeSet.from_csr(pattern, torch.device("cpu"))
    rows, cols = edges.rows_np, edges.cols_np
    if sp.issparse(unit):
        similarity = sparse_row_dots(sp.csr_matrix(unit), rows, cols)
    else:
        features = to_tensor(unit, torch.device("cpu"))
        similarity = edge_dot(features, features, edges).numpy()
    keep = top_k_per_row(rows, cols, similarity, k)
    return sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n))


#: Pairs per block of :func:`sparse_row_dots` (bounds its temporary sparse rows).
_ROW_DOT_BLOCK = 262_144


def sparse_row_dots(X, rows, cols):
    """``<X[i], X[j]>`` for every pair, in blocks, without densifying ``X`` (float32)."""
    out = np.empty(rows.size, dtype=np.float32)
    for start in range(0, rows.size, _ROW_DOT_BLOCK):
        stop = min(start + _ROW_DOT_BLOCK, rows.size)
        product = X[rows[start:stop]].multiply(X[cols[start:stop]])
        out[start:stop] = np.asarray(product.sum(axis=1)).ravel()
    return out
