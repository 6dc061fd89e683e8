"""The network: generator, per-view encoders and decoders, and the DEC centroids."""

from __future__ import annotations

import math

from mvlearn_plus.cluster._torch import import_torch
from mvlearn_plus.cluster._vgmgc._data import dropout, feature_loss, linear, propagate

torch = import_torch("VariationalGraphGeneratorClustering")
nn = torch.nn
F = torch.nn.functional


class Network(nn.Module):
    """Generator, per-view encoders and decoders, and the DEC centroids."""

    def __init__(self, problem, estimator):
        super().__init__()
        hidden, latent = estimator.hidden_dim, estimator.latent_dim
        shared_dim = problem.shared_input.shape[1]
        self.order = estimator.order
        self.lambda_emd = estimator.lambda_emd
        self.dropout = estimator.dropout
        self.generator_in = nn.Linear(shared_dim, hidden)
        self.generator_out = nn.Linear(hidden, hidden)
        self.key = nn.Parameter(torch.empty(hidden, hidden))
        nn.init.xavier_normal_(self.key)
        self.shared_decoder = nn.ModuleList([nn.Linear(hidden, hidden),
                                             nn.Linear(hidden, shared_dim)])
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for features in problem.inputs:
            width = features.shape[1]
            self.encoders.append(ViewEncoder(width, hidden, latent))
            self.decoders.append(nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(),
                                               nn.Linear(hidden, width)))
        self.centroids = nn.ParameterList(
            [nn.Parameter(torch.zeros(problem.n_clusters, latent)) for _ in problem.inputs]
            + [nn.Parameter(torch.zeros(problem.n_clusters, latent * problem.n_views))]
        )

    def generate(self, shared):
        """``u``, the keys ``K = u W`` and the shared-feature decoder's logits."""
        x = dropout(shared, self.dropout, self.training)
        x = F.relu(linear(self.generator_in, x))
        x = F.dropout(x, self.dropout, self.training)
        u = F.relu(self.generator_out(x))
        K = u @ self.key
        decoded = F.dropout(K, self.dropout, self.training)
        decoded = F.relu(self.shared_decoder[0](decoded))
        decoded = F.dropout(decoded, self.dropout, self.training)
        return u, K, self.shared_decoder[1](decoded)

    def view_code(self, problem, view, consensus):
        """``z^v`` before normalisation, from the fixed and the consensus-graph propagation."""
        encoder = self.encoders[view]
        if problem.fixed[view] is None:
            # Sparse wide features: Prop(X, P) W^T + b computed as Prop(X W^T, P) + b.
            branch = encoder.fixed_branch
            fixed = propagate(problem.fixed_operators[view],
                              problem.inputs[view].project(branch.weight), self.order) \
                + branch.bias
        else:
            fixed = encoder.fixed_branch(problem.fixed[view])
        if self.lambda_emd == 0:
            # The ablation without the consensus branch: the graph does not reach the codes.
            return encoder.output(F.relu(fixed))
        features = problem.inputs[view]
        weight = encoder.consensus_branch.weight
        if features.shape[1] > weight.shape[0]:
            # Linear maps commute with propagation: project first when that is smaller.
            projected = features.project(weight) if hasattr(features, "project") \
                else features @ weight.T
            propagated = consensus.propagate(projected, self.order)
        else:
            propagated = consensus.propagate(features, self.order) @ weight.T
        return encoder.output(F.relu(fixed + self.lambda_emd * propagated))

    def encode(self, problem):
        """Evaluation forward: unit codes of every view and the consensus graph (CSR)."""
        u, K, _ = self.generate(problem.shared_input)
        consensus = problem.backend.consensus(problem.backend.edge_logits(K, u))
        codes = [F.normalize(self.view_code(problem, v, consensus), dim=1)
                 for v in range(problem.n_views)]
        return codes, consensus.to_csr()

    def training_forward(self, problem):
        """One generator pass, every view's code, and the reconstruction terms."""
        backend = problem.backend
        u, K, shared_logits = self.generate(problem.shared_input)
        logits = backend.edge_logits(K, u)
        consensus = backend.consensus(logits)
        codes, reconstruction = [], 0.0
        feature = feature_loss(shared_logits, problem.shared_target)
        for v in range(problem.n_views):
            z = self.view_code(problem, v, consensus)
            code = F.normalize(z, dim=1)
            codes.append(code)
            reconstruction = reconstruction + backend.reconstruction(code, v)
            decoded = self.decoders[v](F.relu(z))
            feature = feature + feature_loss(decoded, problem.targets[v])
        return {"codes": codes, "feature": feature, "reconstruction": reconstruction,
                "logits": logits, "generated": (u, K), "edges": consensus.edge_count()}


class ViewEncoder(nn.Module):
    """``z = W_2 ReLU(W_a Prop(x, P) + lambda W_b Prop(x, Ahat) + b) + b_2``.

    The first layer is the paper's ``Linear(2 d, hidden)`` on the concatenation, split into its
    two halves so that the consensus half can be applied before propagation when that is
    cheaper; both halves are initialised as the halves of one ``Linear(2 d, hidden)``.
    """

    def __init__(self, width, hidden, latent):
        super().__init__()
        self.fixed_branch = nn.Linear(width, hidden)
        self.consensus_branch = nn.Linear(width, hidden, bias=False)
        bound = 1.0 / math.sqrt(2 * width)
        for parameter in (self.fixed_branch.weight, self.fixed_branch.bias,
                          self.consensus_branch.weight):
            nn.init.uniform_(parameter, -bound, bound)
        self.output = nn.Linear(hidden, latent)
