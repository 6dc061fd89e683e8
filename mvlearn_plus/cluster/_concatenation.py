"""Single-view clustering of the concatenated views: the simple baselines of multi-view clustering.

Every view is L2-normalised row by row (so that no view dominates by its scale or width) and the
views are placed side by side; a single-view clusterer then sees one matrix. Sparse views stay
sparse. These are the baselines every multi-view method must beat, and candidates of
:class:`mvlearn_plus.model_selection.LabelFreeSelector`.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from mvlearn_plus.preprocessing import row_normalize
from mvlearn_plus.utils.validation import check_n_clusters, validate_views

__all__ = ["ConcatenatedKMeans", "ConcatenatedSpectralClustering", "concatenate_views"]


def concatenate_views(views: list) -> np.ndarray | sp.csr_matrix:
    """Row-normalise each view (L2) and place the views side by side.

    Parameters
    ----------
    views : list of ndarray or sparse matrix of shape (n_samples, n_features_v)

    Returns
    -------
    ndarray or scipy.sparse.csr_matrix of shape (n_samples, sum of n_features_v)
        Sparse when any view is sparse.
    """
    normalised = [row_normalize(v) for v in views]
    if any(sp.issparse(v) for v in normalised):
        return sp.hstack([sp.csr_matrix(v) for v in normalised]).tocsr()
    return np.hstack([np.asarray(v, dtype=np.float64) for v in normalised])


class _ConcatenationBase(ClusterMixin, BaseEstimator):
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _prepare(self, X) -> tuple[np.ndarray | sp.csr_matrix, int]:
        self._validate_params()
        views = validate_views(self, X, reset=True)
        n_clusters = check_n_clusters(self.n_clusters, views[0].shape[0])
        return concatenate_views(views), n_clusters


class ConcatenatedKMeans(_ConcatenationBase):
    """k-means on the row-normalised concatenation of the views.

    Parameters
    ----------
    n_clusters : int, default=8
    n_init : int, default=10
        Number of k-means restarts; the one of lowest inertia is kept.
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
    n_views_ : int
    n_features_per_view_ : tuple of int
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from mvlearn_plus.cluster import ConcatenatedKMeans
    >>> rng = np.random.RandomState(0)
    >>> y = np.repeat([0, 1], 20)
    >>> views = [np.eye(2)[y] * 5 + rng.normal(size=(40, 2)) for _ in range(2)]
    >>> ConcatenatedKMeans(n_clusters=2, random_state=0).fit_predict(views).shape
    (40,)
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_clusters: int = 8, *, n_init: int = 10, random_state=None):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, X, y=None):
        """Cluster the concatenated views; sets ``labels_``.

        Parameters
        ----------
        X : list of array-like or sparse matrix of shape (n_samples, n_features_v)
            The views (a single 2-D array is one view).
        y : ignored

        Returns
        -------
        self : ConcatenatedKMeans
        """
        data, n_clusters = self._prepare(X)
        model = KMeans(n_clusters, n_init=self.n_init, random_state=self.random_state)
        self.labels_ = model.fit_predict(data).astype(np.int64)
        return self


class ConcatenatedSpectralClustering(_ConcatenationBase):
    """Spectral clustering of the kNN graph of the row-normalised concatenated views.

    The affinity is scikit-learn's ``nearest_neighbors`` one: each sample linked to its
    ``n_neighbors`` nearest samples (itself included), symmetrised as ``(A + A^T) / 2``. On a
    connected graph this is scikit-learn's :class:`~sklearn.cluster.SpectralClustering`. A
    disconnected graph (real views often hold small isolated groups) would make plain spectral
    clustering spend clusters on its components, so it is clustered by regularised spectral
    clustering instead (Qin and Rohe, 2013): every degree raised by the mean degree, the top
    ``n_clusters`` eigenvectors of ``D_tau^{-1/2} A D_tau^{-1/2}``, rows L2-normalised, k-means.

    Parameters
    ----------
    n_clusters : int, default=8
    n_neighbors : int, default=10
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
    regularized_ : bool
        Whether the graph was disconnected and regularised spectral clustering ran.
    n_views_ : int
    n_features_per_view_ : tuple of int
    n_features_in_ : int

    References
    ----------
    .. [1] U. von Luxburg. "A tutorial on spectral clustering." Statistics and Computing 17(4),
       2007.
    .. [2] T. Qin, K. Rohe. "Regularized spectral clustering under the degree-corrected
       stochastic blockmodel." NeurIPS 2013.
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_clusters: int = 8, *, n_neighbors: int = 10, random_state=None):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, X, y=None):
        """Cluster the kNN graph of the concatenated views; sets ``labels_``.

        Parameters
        ----------
        X : list of array-like or sparse matrix of shape (n_samples, n_features_v)
            The views (a single 2-D array is one view).
        y : ignored

        Returns
        -------
        self : ConcatenatedSpectralClustering
        """
        from scipy.sparse.csgraph import connected_components
        from sklearn.neighbors import kneighbors_graph

        data, n_clusters = self._prepare(X)
        n = data.shape[0]
        if n_clusters == 1:
            self.regularized_ = False
            self.labels_ = np.zeros(n, dtype=np.int64)
            return self
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        connectivity = kneighbors_graph(data, min(self.n_neighbors, n - 1), include_self=True)
        affinity = ((connectivity + connectivity.T) * 0.5).tocsr()
        self.regularized_ = connected_components(affinity, directed=False)[0] > 1
        if self.regularized_:
            self.labels_ = _regularized_spectral(affinity, n_clusters, seed)
        else:
            model = SpectralClustering(n_clusters, affinity="precomputed", n_init=10,
                                       random_state=seed)
            self.labels_ = model.fit_predict(affinity).astype(np.int64)
        return self


def _regularized_spectral(affinity: sp.csr_matrix, n_clusters: int, seed: int) -> np.ndarray:
    from scipy.sparse.linalg import eigsh
    from sklearn.preprocessing import normalize

    degree = np.asarray(affinity.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(degree + degree.mean()))
    operator = scale @ affinity @ scale
    n = affinity.shape[0]
    if n_clusters >= n - 1:
        vectors = np.linalg.eigh(operator.toarray())[1][:, -n_clusters:]
    else:
        start = np.random.RandomState(seed).rand(n)
        vectors = eigsh(operator, k=n_clusters, which="LA", v0=start)[1]
    model = KMeans(n_clusters, n_init=10, random_state=seed)
    return model.fit_predict(normalize(vectors)).astype(np.int64)
