"""The graph terms of VGMGC's objective, shared by the dense and the sparse path.

Both paths optimise one objective over all ``N = n (n - 1)`` ordered node pairs ``i != j``:

* graph reconstruction of view ``v``: ``(1/N) sum_{i != j} BCE(<zhat_i, zhat_j>, T^v_ij)``;
* consensus-graph KL: ``(1/N) sum_{i != j} KL(Bern(q_ij) || Bern(pi_ij))`` with ``q`` the
  relaxed (binary-concrete) edge sample and ``pi`` the belief-mixture prior.

The dense path sums every pair. The sparse path estimates the same sums without bias: a sum
over a set of ``M`` pairs is ``(M / s) x`` the sum over ``s`` pairs drawn uniformly from it
(:func:`weighted_sum`), with the pairs it already holds (the input graph's edges, the candidate
edges) summed exactly and only the rest sampled (:func:`sample_pairs_outside`).
"""

from __future__ import annotations

import numpy as np

from mvlearn_plus.cluster._edges import EdgeSet, sorted_contains
from mvlearn_plus.cluster._torch import import_torch

torch = import_torch("VariationalGraphGeneratorClustering")
F = torch.nn.functional

_EPS = 1e-10


def prior(beliefs, targets):
    """``pi = sum_v (b_v / sum_u b_u) Ttilde^v`` with ``Ttilde^v = b_v`` on edges, else 1 - b_v."""
    total = float(np.sum(beliefs))
    mixed = sum((b / total) * (b * t + (1 - b) * (1 - t)) for b, t in zip(beliefs, targets))
    return mixed.clamp(1e-6, 1 - 1e-6)


def relaxed_logits(logits, temperature):
    """Logits of binary-concrete samples: ``(S + log U - log(1 - U)) / tau``, ``U ~ U(0, 1)``."""
    noise = torch.rand_like(logits)
    return (logits + torch.log(noise + _EPS) - torch.log1p(-noise + _EPS)) / temperature


def bernoulli_kl(relaxed, pi):
    """``KL(Bern(q) || Bern(pi))`` with ``q = sigmoid(relaxed)``, stable in float32."""
    q = torch.sigmoid(relaxed)
    return q * (F.logsigmoid(relaxed) - torch.log(pi)) + (1 - q) * (
        F.logsigmoid(-relaxed) - torch.log1p(-pi))


def pair_count(n: int) -> int:
    """Ordered pairs ``i != j``: the normaliser of both graph terms."""
    return n * (n - 1)


def weighted_sum(values, population: int):
    """Unbiased estimate of a sum over ``population`` pairs from a uniform sample of them."""
    if values.numel() == 0:
        return values.sum()
    return values.sum() * (population / values.numel())


def sample_pairs_outside(n: int, excluded_keys, draws: int, device):
    """Distinct uniform pairs ``i != j`` whose key ``i * n + j`` is not in ``excluded_keys``.

    ``draws`` pairs are drawn with replacement from all ``n^2``; the diagonal, the excluded
    pairs and repeats are dropped. Every pair outside the excluded set is then kept with the
    same probability and the kept set is exchangeable, so the sum over it scaled by
    ``population / kept`` (:func:`weighted_sum`) is unbiased. Draws come from torch's global
    CPU generator, which every fit seeds (so a fit gives the same pairs on every device); the
    rest runs on ``device``.

    Parameters
    ----------
    n : int
    excluded_keys : tensor of int64, sorted, on ``device``
    draws : int
    device : torch.device

    Returns
    -------
    EdgeSet
        The kept pairs, sorted by key.
    """
    pairs = torch.randint(n, (2, max(int(draws), 1))).to(device)
    keys = torch.unique(pairs[0] * n + pairs[1])
    rows, cols = keys // n, keys % n
    keep = (rows != cols) & ~sorted_contains(excluded_keys, keys)
    return EdgeSet.from_sorted(rows[keep], cols[keep], n)
