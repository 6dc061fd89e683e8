"""Dense path: every one of the ``n^2`` node pairs modelled, as the paper does (``O(n^2)``)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mvlearn_plus.cluster._edges import quiet_sparse_csr
from mvlearn_plus.cluster._torch import import_torch, to_tensor
from mvlearn_plus.cluster._vgmgc._objective import bernoulli_kl, prior, relaxed_logits

torch = import_torch("VariationalGraphGeneratorClustering")
F = torch.nn.functional


class DenseBackend:
    """Edge logits, consensus graph and graph terms over all pairs ``i != j``."""

    def __init__(self, patterns, estimator, device):
        self.n = patterns[0].shape[0]
        self.device = device
        self.graph_k = estimator.graph_k
        self.edge_temperature = estimator.edge_temperature
        self.targets = [to_tensor(p.toarray(), device) for p in patterns]
        self.off_diagonal = ~torch.eye(self.n, dtype=torch.bool, device=device)

    def edge_logits(self, K, u):
        return F.normalize(K, dim=1) @ F.normalize(u, dim=1).T / self.edge_temperature

    def hard_edges(self, logits):
        """Each row's ``graph_k`` largest off-diagonal logits, symmetrised with ``max``."""
        S = logits.detach()
        k = min(self.graph_k, self.n - 1)
        if k <= 0:
            return torch.zeros_like(S)
        masked = S.masked_fill(~self.off_diagonal, float("-inf"))
        top = torch.topk(masked, k, dim=1)
        hard = torch.zeros_like(S).scatter(1, top.indices, 1.0)
        return torch.maximum(hard, hard.T)

    def consensus(self, logits):
        hard = self.hard_edges(logits)
        soft = torch.sigmoid(logits)
        straight = (hard + soft - soft.detach()) * self.off_diagonal
        degree = hard.sum(dim=1) + 1.0
        return DenseConsensus(straight, hard, 1.0 / degree)

    def graph_kl(self, generated, logits, beliefs, temperature):
        """Mean Bernoulli KL to the belief-mixture prior over all pairs ``i != j``."""
        relaxed = relaxed_logits(logits, temperature)
        return bernoulli_kl(relaxed, prior(beliefs, self.targets))[self.off_diagonal].mean()

    def reconstruction(self, code, view):
        """Mean BCE of ``<zhat_i, zhat_j>`` against the view's pattern over all pairs ``i != j``."""
        target = self.targets[view]
        if not bool(target.any()):
            return torch.zeros((), device=code.device)
        logits = code @ code.T
        return F.binary_cross_entropy_with_logits(
            logits[self.off_diagonal], target[self.off_diagonal])


class DenseConsensus:
    """``Ahat = D^{-1} (A + I)`` with ``A`` the straight-through consensus graph (all pairs)."""

    def __init__(self, straight, hard, inverse_degree):
        self.straight = straight
        self.hard = hard
        with quiet_sparse_csr():
            self.hard_sparse = hard.detach().to_sparse_csr()
            self.hard_sparse_t = hard.detach().T.contiguous().to_sparse_csr()
        self.inverse_degree = inverse_degree

    def propagate(self, features, order):
        result = features
        for _ in range(order):
            result = _DenseStraightThrough.apply(
                self.straight, result, self.hard_sparse, self.hard_sparse_t, self.inverse_degree
            ) + self.inverse_degree[:, None] * result + features
        return result

    def edge_count(self):
        hard = self.hard * (1 - torch.eye(self.hard.shape[0], device=self.hard.device))
        return torch.div(torch.maximum(hard, hard.T).sum(), 2, rounding_mode="floor")

    def to_csr(self):
        hard = self.hard.cpu().numpy().astype(np.float64)
        np.fill_diagonal(hard, 0.0)
        # A rule that is not symmetric (the reference one) is reported as max(A, A^T).
        return sp.csr_matrix(np.maximum(hard, hard.T))


class _DenseStraightThrough(torch.autograd.Function):
    """``D^{-1} A H`` for a dense straight-through ``A`` whose forward values are the hard graph.

    The forward product runs over the (sparse) hard edges; only the gradient to ``A``, which
    reaches every pair, needs the dense product ``(D^{-1} G) H^T``. That saves two of the three
    ``n^2 d`` products autograd would do per propagation step.
    """

    @staticmethod
    def forward(ctx, straight, H, hard, hard_t, inverse_degree):
        ctx.save_for_backward(H, inverse_degree)
        ctx.hard_t = hard_t
        with quiet_sparse_csr():
            return inverse_degree[:, None] * (hard @ H)

    @staticmethod
    def backward(ctx, grad):
        H, inverse_degree = ctx.saved_tensors
        scaled = inverse_degree[:, None] * grad
        grad_straight = scaled @ H.T if ctx.needs_input_grad[0] else None
        grad_H = None
        if ctx.needs_input_grad[1]:
            with quiet_sparse_csr():
                grad_H = ctx.hard_t @ scaled
        return grad_straight, grad_H, None, None, None
