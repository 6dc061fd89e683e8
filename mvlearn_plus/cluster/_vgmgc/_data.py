"""Data preparation: features, targets and graph operators, built once per fit."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize as sk_normalize

from mvlearn_plus.cluster._edges import EdgeSet, edge_dot, top_k_per_row
from mvlearn_plus.cluster._torch import import_torch, to_tensor
from mvlearn_plus.graphs import (
    add_self_loops,
    knn_search,
    normalized_adjacency,
    row_normalize_graph,
)
from mvlearn_plus.preprocessing import minmax_apply, minmax_bounds

torch = import_torch("VariationalGraphGeneratorClustering")

#: A fixed propagation operator denser than this fraction of ``n^2`` is multiplied as a dense
#: matrix (faster than a sparse product at that density).
_DENSE_OPERATOR_FRACTION = 0.05


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
                cache[id(view)] = (to_tensor(dense(target), device),
                                   to_tensor(dense(features), device), features)
            return cache[id(view)]

        self.inputs, self.targets, self.fixed = [], [], []
        operators = [propagation_operator(g, estimator.graph_normalization) for g in graphs]
        for view, operator in zip(feature_views, operators):
            target, features, _ = prepared(view)
            self.targets.append(target)
            self.inputs.append(features)
            self.fixed.append(propagate_fixed(operator, features, order))
        self.shared_target, self.shared_input, shared_input = prepared(shared)
        self.patterns = [binary_pattern(g) for g in graphs]
        self.backend = backend(self.patterns, shared_input)


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
    """``Prop(X, P)`` for a fixed operator, once, in torch (float32, all cores)."""
    n = operator.shape[0]
    if operator.nnz > _DENSE_OPERATOR_FRACTION * n * n:
        matrix = to_tensor(operator.toarray(), features.device)
    else:
        coo = operator.tocoo()
        edges = EdgeSet(coo.row, coo.col, n, features.device)
        values = to_tensor(coo.data[np.lexsort((coo.col, coo.row))], features.device)
        matrix = edges.matrix(values)
    result = features.clone()
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
    features = to_tensor(dense(unit), torch.device("cpu"))
    similarity = edge_dot(features, features, edges).numpy()
    rows, cols = edges.rows_np, edges.cols_np
    keep = top_k_per_row(rows, cols, similarity, k)
    return sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n))
