"""What the self-expressive spectral estimators (MGF, mPAC) share beyond the graph algebra."""

from __future__ import annotations

from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.preprocessing import normalize

from mvlearn_plus.cluster._self_expression import minmax_scale_global

#: Up to this many samples the exact (dense) path is affordable (the label-free selector's
#: dense candidates and the previous defaults of MGF and mPAC used it up to here).
DENSE_MAX_SAMPLES = 3000


class SelfExpressiveClusteringBase(ClusterMixin, BaseEstimator):
    """Input scaling, path selection and tags common to MGF and mPAC.

    Subclasses define ``variant`` and ``algorithm`` parameters.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _resolve_algorithm(self, n_samples: int) -> str:
        reference = self.variant == "reference"
        algorithm = self.algorithm
        if algorithm == "auto":
            # The method's own path at every size is the kNN graph (issue 23); the official
            # code, reproduced by variant="reference", is dense.
            algorithm = "dense" if reference else "knn"
        if reference and algorithm != "dense":
            raise ValueError(
                "variant='reference' reproduces the official dense code; "
                "use algorithm='dense' (or 'auto')."
            )
        return algorithm

    def _scale_views(self, views, *, fit: bool):
        # L2 rows give every Gram matrix a unit diagonal, so alpha means the same on every view;
        # the reference variant keeps the official [-1, 1] global min-max scaling instead.
        if self.variant == "reference":
            if fit:
                scaled = [minmax_scale_global(v) for v in views]
                self._minmax_bounds = [bounds for _, bounds in scaled]
                return [view for view, _ in scaled]
            return [minmax_scale_global(v, b)[0] for v, b in zip(views, self._minmax_bounds)]
        return [normalize(v, norm="l2") for v in views]
