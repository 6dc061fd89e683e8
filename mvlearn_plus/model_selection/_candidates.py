"""The default candidate clusterings of :class:`LabelFreeSelector`."""

from __future__ import annotations

from sklearn.base import BaseEstimator

from mvlearn_plus.cluster import (
    ConcatenatedKMeans,
    ConcatenatedSpectralClustering,
    MultiGraphFusionClustering,
    PartitionAlignmentClustering,
)
from mvlearn_plus.cluster._base import DENSE_MAX_SAMPLES

__all__ = ["default_candidates"]

#: Neighbourhood sizes of the kNN spectral baselines: a sparse, a medium and a dense graph.
SPECTRAL_NEIGHBORS = (5, 10, 20)


def default_candidates(n_samples: int) -> list[tuple[str, BaseEstimator]]:
    """The toolbox's spectral estimators and the simple baselines, on paths affordable at ``n``.

    * ``MGF``, ``mPAC``: the defaults (kNN graphs; MGF's adaptive rank weight, mPAC's normalised
      indicator with random restarts);
    * ``MGF (kNN, gamma 0.01)``: MGF with a fixed rank weight, whose labels come from k-means on
      the embedding rather than from the graph's components;
    * ``MGF (dense, gamma 0.01)`` and ``mPAC (one-hot, consensus start)``: the exact dense
      graphs up to 3,000 samples (the kNN path above), as the defaults were before issue 23;
    * ``k-means (concat)`` and ``spectral kNN=5/10/20 (concat)``: the simple baselines on the
      row-normalised concatenation.

    ``n_clusters`` and ``random_state`` are set by the selector. The deep estimators are not
    in the default set (minutes per fit on a CPU); pass them in ``estimators`` to include them.

    Parameters
    ----------
    n_samples : int

    Returns
    -------
    list of (str, estimator)
    """
    path = "dense" if n_samples <= DENSE_MAX_SAMPLES else "knn"
    candidates: list[tuple[str, BaseEstimator]] = [
        ("MGF", MultiGraphFusionClustering()),
        ("MGF (kNN, gamma 0.01)", MultiGraphFusionClustering(gamma=0.01)),
    ]
    if path == "dense":
        candidates.append(("MGF (dense, gamma 0.01)",
                           MultiGraphFusionClustering(gamma=0.01, algorithm="dense")))
    candidates += [
        ("mPAC", PartitionAlignmentClustering()),
        ("mPAC (one-hot, consensus start)",
         PartitionAlignmentClustering(indicator="one-hot", init="consensus", algorithm=path)),
        ("k-means (concat)", ConcatenatedKMeans()),
    ]
    candidates += [(f"spectral kNN={k} (concat)", ConcatenatedSpectralClustering(n_neighbors=k))
                   for k in SPECTRAL_NEIGHBORS]
    return candidates
