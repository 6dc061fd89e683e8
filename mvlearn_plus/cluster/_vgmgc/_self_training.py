"""Self-training: DEC's clustering loss and the label-free view weights."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from mvlearn_plus.cluster._torch import import_torch

torch = import_torch("VariationalGraphGeneratorClustering")

#: k-means restarts of the per-epoch pseudo-labels and of the DEC initialisation (official: 3).
PSEUDO_KMEANS_INIT = 3
_EPS = 1e-10


def fuse(codes, weights):
    """``h = [w_1 zhat^1 | ... | w_V zhat^V]`` as float64 numpy."""
    return np.hstack([w * z.cpu().numpy().astype(np.float64) for w, z in zip(weights, codes)])


def student_t(points, centroids):
    distances = torch.cdist(points, centroids) ** 2
    q = 1.0 / (1.0 + distances)
    return q / q.sum(dim=1, keepdim=True)


def dec_target(q):
    weight = q**2 / q.sum(dim=0)
    return weight / weight.sum(dim=1, keepdim=True)


def kl_batchmean(target, q):
    return torch.sum(target * (torch.log(target + _EPS) - torch.log(q + _EPS))) / q.shape[0]


def clustering_loss(net, codes, weights, target_of):
    """``KL(P || q^f) + sum_v KL(P || q^v)``; ``target_of(q_fused)`` gives ``P``."""
    weights_t = torch.as_tensor(weights, dtype=torch.float32, device=codes[0].device)
    fused = torch.cat([w * z for w, z in zip(weights_t, codes)], dim=1)
    q_fused = student_t(fused, net.centroids[-1])
    target = target_of(q_fused)
    return kl_batchmean(target, q_fused) + sum(
        kl_batchmean(target, student_t(z, mu)) for z, mu in zip(codes, net.centroids[:-1]))


def initialise_centroids(net, codes, weights, rng):
    """k-means on each view's codes and on the weighted concatenation.

    The fused centroids live in the space of the weighted concatenation that ``q`` is computed
    on (the official code initialises on the unweighted one, which only agrees while all
    weights are 1).
    """
    points = [z.cpu().numpy().astype(np.float64) for z in codes] + [fuse(codes, weights)]
    for index, block in enumerate(points):
        kmeans = KMeans(net.centroids[index].shape[0], n_init=PSEUDO_KMEANS_INIT,
                        random_state=rng.randint(2**31 - 1)).fit(block)
        with torch.no_grad():
            net.centroids[index].copy_(torch.as_tensor(kmeans.cluster_centers_,
                                                       dtype=torch.float32))


def view_weights(codes, previous, n_clusters, weight_soft, rng):
    """``w_v = a_v^rho / max a^rho`` with ``a_v = NMI(fused pseudo-labels, view labels)``."""
    pseudo = KMeans(n_clusters, n_init=PSEUDO_KMEANS_INIT,
                    random_state=rng.randint(2**31 - 1)).fit_predict(fuse(codes, previous))
    agreement = []
    for z in codes:
        labels = KMeans(n_clusters, n_init=PSEUDO_KMEANS_INIT,
                        random_state=rng.randint(2**31 - 1)).fit_predict(
            z.cpu().numpy().astype(np.float64))
        agreement.append(max(normalized_mutual_info_score(pseudo, labels), 1e-12))
    agreement = np.power(np.asarray(agreement), weight_soft)
    return agreement / agreement.max()
