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

    * ``MGF``, ``mPAC``: the defaults (exact/dense up to 3,000 samples, kNN above);
    * ``MGF (kNN path)``: the kNN path where the default is dense (above 3,000 it is the default,
      so it is not repeated);
    * ``MGF (gamma auto)``: the adaptive rank constraint;
    * ``mPAC (normalized + kNN path)``: the scale-free indicator on the kNN path;
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
    candidates: list[tuple[str, BaseEstimator]] = [
        ("MGF", MultiGraphFusionClustering()),
    ]
    if n_samples <= DENSE_MAX_SAMPLES:
        candidates.append(("MGF (kNN path)", MultiGraphFusionClustering(algorithm="knn")))
    candidates += [
        ("MGF (gamma auto)", MultiGraphFusionClustering(gamma="auto")),
        ("mPAC", PartitionAlignmentClustering()),
        ("mPAC (normalized + kNN path)",
         PartitionAlignmentClustering(indicator="normalized", algorithm="knn")),
        ("k-means (concat)", ConcatenatedKMeans()),
    ]
    candidates += [(f"spectral kNN={k} (concat)", ConcatenatedSpectralClustering(n_neighbors=k))
                   for k in SPECTRAL_NEIGHBORS]
    return candidates
