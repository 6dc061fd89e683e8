"""``variant="reference"``: the official code's behaviour, kept apart from the main path.

Only for comparison rows in benchmarks (spec 4.7 lists the defects reproduced here): edges where
``sigmoid(row_normalise(K u^T)) > threshold``, an entropy-only "KL" whose prior has no gradient,
a graph reconstruction that includes the diagonal, the DEC loss from epoch 0 with a target that
is recomputed (not detached) every epoch, view weights every epoch, the shared-feature loss
counted ``V (V + 1) / 2`` times, and one generator pass per view. Dense only.
"""

from __future__ import annotations

import math

import numpy as np

from mvlearn_plus.cluster._torch import import_torch
from mvlearn_plus.cluster._vgmgc._data import feature_loss
from mvlearn_plus.cluster._vgmgc._dense import DenseBackend, DenseConsensus
from mvlearn_plus.cluster._vgmgc._objective import relaxed_logits
from mvlearn_plus.cluster._vgmgc._schedule import Schedule
from mvlearn_plus.cluster._vgmgc._self_training import dec_target

torch = import_torch("VariationalGraphGeneratorClustering")
F = torch.nn.functional

_EPS = 1e-10
#: ``sigmoid(1)``: the official logits are row-normalised, so no threshold at or above this
#: value is ever reached.
MAX_REACHABLE_THRESHOLD = 1.0 / (1.0 + math.exp(-1.0))


class ReferenceBackend(DenseBackend):
    """The official dense graph terms (see the module docstring)."""

    def __init__(self, patterns, estimator, device):
        super().__init__(patterns, estimator, device)
        self.threshold = estimator.threshold

    def edge_logits(self, K, u):
        return F.normalize(K @ u.T, dim=1)

    def hard_edges(self, logits):
        S = logits.detach()
        return (torch.sigmoid(S) > self.threshold).to(S.dtype)

    def consensus(self, logits):
        hard = self.hard_edges(logits)
        soft = torch.sigmoid(logits)
        straight = hard + soft - soft.detach()
        return DenseConsensus(straight, hard, 1.0 / (hard.sum(dim=1) + 1.0))

    def graph_kl(self, generated, logits, beliefs, temperature):
        relaxed = relaxed_logits(logits, temperature)
        eye = torch.eye(self.n, device=logits.device, dtype=logits.dtype)
        mixed = sum(b * t + (1 - b) * (1 - t + eye) for b, t in zip(beliefs, self.targets))
        q = torch.sigmoid(relaxed)
        entropy = -q * F.logsigmoid(relaxed) - (1 - q) * F.logsigmoid(-relaxed)
        return torch.mean(entropy + math.log(float(np.sum(beliefs))) - torch.log(mixed + _EPS))

    def reconstruction(self, code, view):
        return F.binary_cross_entropy_with_logits(code @ code.T, self.targets[view])


class ReferenceSchedule(Schedule):
    """No pretraining, ramp ``5 t`` up to 1000, every-epoch updates, live DEC target."""

    kl_step_default = 5.0
    kl_max_default = 1000.0

    def _pretrain_epochs(self, estimator):
        return 0

    def _interval(self, estimator):
        return 1

    @staticmethod
    def backend(estimator, algorithm, device):
        return lambda patterns, shared_input: ReferenceBackend(patterns, estimator, device)

    def kl_weight(self, phase):
        # The official ramp starts at 0: epoch 0 has no clustering loss.
        return min(self.kl_step * phase, self.kl_max)

    def dec_target(self, q_fused, phase):
        return dec_target(q_fused)

    def forward(self, net, problem):
        """One generator pass per view; the shared loss is re-added in every view."""
        backend = problem.backend
        codes, reconstruction, feature, shared_loss = [], 0.0, 0.0, None
        all_logits = []
        for v in range(problem.n_views):
            u, K, shared_logits = net.generate(problem.shared_input)
            logits = backend.edge_logits(K, u)
            all_logits.append(logits)
            consensus = backend.consensus(logits)
            z = net.view_code(problem, v, consensus)
            code = F.normalize(z, dim=1)
            codes.append(code)
            reconstruction = reconstruction + backend.reconstruction(code, v)
            decoded = net.decoders[v](F.relu(z))
            feature = feature + feature_loss(decoded, problem.targets[v])
            view_shared = feature_loss(shared_logits, problem.shared_target)
            shared_loss = view_shared if shared_loss is None else shared_loss + view_shared
            feature = feature + shared_loss
        logits = torch.stack(all_logits).mean(dim=0)
        return {"codes": codes, "feature": feature, "reconstruction": reconstruction,
                "logits": logits, "generated": (u, K), "edges": consensus.edge_count()}
