"""Sparse path: the dense path's objective estimated in ``O(n k)`` memory.

What the sparse path computes exactly, and what it estimates (see :mod:`._objective`):

* edge logits, relaxed samples and the consensus graph live on a *candidate* edge set (input
  graph neighbours plus feature neighbours, :func:`._data.candidate_pattern`): the hard graph is
  each node's ``graph_k`` best candidates, where the dense path takes its ``graph_k`` best of all
  ``n - 1`` nodes. Finding those exactly costs the dense path's ``O(n^2 d)`` per epoch, which is
  what the sparse path exists to avoid; this is the one place where the two paths differ at
  equal parameters (the straight-through gradient likewise reaches candidate pairs only);
* the consensus-graph KL over all pairs: candidate pairs summed exactly, the other pairs
  estimated from a fresh uniform sample of them (importance weight ``(N - |Cand|) / s``);
* graph reconstruction over all pairs: the view's edges summed exactly (or, above
  ``MAX_POSITIVES_PER_NODE * n`` edges, from a uniform sample of them) and its non-edges
  estimated from a fresh uniform sample (importance weight ``(N - |E|) / s``).

Both estimates are unbiased for the dense path's mean over all ``N = n (n - 1)`` pairs.

The epoch loop stays on the device: the per-row top-k, the hard-edge subsets, the pair
samples' membership tests and the edge count are tensor operations (the uniform draws still
come from torch's CPU generator, as before, and are copied to the device); nothing is read back
to the host until the estimator reads the epoch's scalars.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mvlearn_plus.cluster._edges import (
    EdgeSet,
    edge_dot,
    edge_spmm,
    sorted_contains,
    top_k_per_row_t,
)
from mvlearn_plus.cluster._torch import import_torch
from mvlearn_plus.cluster._vgmgc._objective import (
    bernoulli_kl,
    pair_count,
    prior,
    relaxed_logits,
    sample_pairs_outside,
    weighted_sum,
)

torch = import_torch("VariationalGraphGeneratorClustering")
F = torch.nn.functional

#: At most ``MAX_POSITIVES_PER_NODE * n`` edges of an input graph enter the reconstruction of
#: one epoch (a fresh uniform sample of all its edges each epoch; ACM's PLP graph has 2.2
#: million).
MAX_POSITIVES_PER_NODE = 20
#: Uniform pair draws per node and epoch for each sampled part of the objective (the non-edges
#: of every view's reconstruction, the non-candidate pairs of the KL).
SAMPLES_PER_NODE = 20


class SparseBackend:
    """Edge logits, consensus graph and graph-term estimates on a candidate edge set."""

    def __init__(self, patterns, candidates, estimator, device):
        self.n = candidates.shape[0]
        self.device = device
        self.graph_k = estimator.graph_k
        self.edge_temperature = estimator.edge_temperature
        self.candidates = EdgeSet.from_csr(candidates, device)
        self.candidate_keys = self.candidates.keys()
        self.reverse = torch.as_tensor(self.candidates.reverse_index(), device=device)
        # Per view: its edges, their sorted keys, and which candidates are among them.
        self.target_edges, self.target_keys, self.targets = [], [], []
        for pattern in patterns:
            edges = EdgeSet.from_csr(pattern, device)
            self.target_edges.append(edges)
            self.target_keys.append(edges.keys())
            self.targets.append(sorted_contains(edges.keys(), self.candidate_keys).float())

    def _sample_outside(self, excluded_keys):
        return sample_pairs_outside(self.n, excluded_keys, SAMPLES_PER_NODE * self.n,
                                    self.device)

    def _logits_on(self, K, u, edges):
        return edge_dot(F.normalize(K, dim=1), F.normalize(u, dim=1), edges) \
            / self.edge_temperature

    def edge_logits(self, K, u):
        return self._logits_on(K, u, self.candidates)

    def hard_edges(self, logits):
        chosen = top_k_per_row_t(self.candidates, logits.detach(), self.graph_k)
        hard = chosen | chosen[self.reverse]
        return hard.to(logits.dtype)

    def consensus(self, logits):
        hard = self.hard_edges(logits)
        soft = torch.sigmoid(logits)
        straight = hard + soft - soft.detach()
        degree = 1.0 + torch.zeros(self.n, device=logits.device, dtype=logits.dtype).index_add(
            0, self.candidates.rows, hard)
        values = straight / degree[self.candidates.rows]
        active = torch.nonzero(hard.detach() > 0).squeeze(1)
        return SparseConsensus(values, 1.0 / degree, hard, self.candidates, active)

    def graph_kl(self, generated, logits, beliefs, temperature):
        """Estimate of the mean KL over all pairs: candidates exact, the rest sampled."""
        u, K = generated
        total = pair_count(self.n)
        exact = bernoulli_kl(relaxed_logits(logits, temperature),
                             prior(beliefs, self.targets)).sum()
        pairs = self._sample_outside(self.candidate_keys)
        if pairs.size == 0:
            return exact / total
        keys = pairs.keys()
        targets = [sorted_contains(view_keys, keys).float() for view_keys in self.target_keys]
        sampled = bernoulli_kl(relaxed_logits(self._logits_on(K, u, pairs), temperature),
                               prior(beliefs, targets))
        return (exact + weighted_sum(sampled, total - self.candidates.size)) / total

    def reconstruction(self, code, view):
        """Estimate of the mean BCE over all pairs: edges exact (or sampled), non-edges sampled."""
        edges = self.target_edges[view]
        if edges.size == 0:
            return torch.zeros((), device=code.device)
        total = pair_count(self.n)
        used = edges
        cap = MAX_POSITIVES_PER_NODE * self.n
        if edges.size > cap:
            chosen = torch.sort(torch.randperm(edges.size)[:cap]).values.to(self.device)
            used = edges.subset_at(chosen)
        positives = weighted_sum(F.softplus(-edge_dot(code, code, used)), edges.size)
        pairs = self._sample_outside(self.target_keys[view])
        negatives = torch.zeros((), device=code.device)
        if pairs.size:
            negatives = weighted_sum(F.softplus(edge_dot(code, code, pairs)),
                                     total - edges.size)
        return (positives + negatives) / total


class SparseConsensus:
    """``Ahat = D^{-1} (A + I)`` on the candidate edges (straight-through values)."""

    def __init__(self, values, self_weight, hard, edges, active):
        self.values = values
        self.self_weight = self_weight
        self.hard = hard
        self.edges = edges
        # Forward values are exactly zero off the hard edges (straight-through), so the
        # products run over the hard edges; gradients still reach every candidate.
        self.active_edges = edges.subset_at(active)
        self.active = active

    def propagate(self, features, order):
        result = features
        for _ in range(order):
            result = edge_spmm(self.values, result, self.edges, self.active, self.active_edges) \
                + self.self_weight[:, None] * result + features
        return result

    def edge_count(self):
        """Undirected edges, as a 0-d tensor on the device (read with the epoch's scalars)."""
        return torch.div(self.hard.detach().sum(), 2, rounding_mode="floor")

    def to_csr(self):
        keep = self.hard.cpu().numpy() > 0
        n = self.edges.n
        return sp.csr_matrix(
            (np.ones(int(keep.sum())), (self.edges.rows_np[keep], self.edges.cols_np[keep])),
            shape=(n, n),
        )
