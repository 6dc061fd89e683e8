"""Validation of multi-view input, shared by every estimator.

A multi-view input is a list (or tuple) of 2-D arrays or scipy sparse matrices, one per view, all
with the same number of rows (row ``i`` of every view describes the same sample). A single 2-D
array-like (including a list of lists of numbers) is accepted as one view, which is what
scikit-learn's estimator checks pass.
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array, validate_data

__all__ = ["check_views", "check_graphs", "check_n_clusters", "validate_views", "is_multiview"]


def _looks_2d(obj: Any) -> bool:
    if sp.issparse(obj):
        return True
    shape = getattr(obj, "shape", None)
    if shape is not None:
        return len(shape) == 2
    try:
        return np.ndim(obj) == 2
    except ValueError:  # ragged nested lists
        return False


def is_multiview(X: Any) -> bool:
    """Whether ``X`` is a list/tuple of views rather than one 2-D array-like.

    A list or tuple is a list of views when any element is an array or sparse matrix, or a 2-D
    nested list; a plain list of rows (``X.tolist()`` of a matrix) is a single view. So a list of
    1-D arrays is read as views, and rejected with a message asking for 2-D views, rather than
    silently taken as the rows of one matrix.
    """
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    return any(sp.issparse(v) or hasattr(v, "shape") or _looks_2d(v) for v in X)


def _check_one_view(view: Any, index: int, *, accept_sparse: bool, ensure_min_samples: int):
    name = f"view {index}"
    if view is None:
        raise ValueError(f"View {index} is None; every view must be a 2-D array or sparse matrix.")
    if not sp.issparse(view):
        ndim = np.ndim(view) if not hasattr(view, "ndim") else view.ndim
        if ndim != 2:
            shape = getattr(view, "shape", np.shape(view))
            raise ValueError(
                f"View {index} must be 2-D (n_samples, n_features); got {ndim}-D input of "
                f"shape {shape}. Reshape a single feature with x.reshape(-1, 1)."
            )
    try:
        return check_array(
            view,
            accept_sparse=["csr", "csc"] if accept_sparse else False,
            dtype=np.float64,
            ensure_all_finite=True,
            ensure_min_samples=ensure_min_samples,
            ensure_min_features=1,
            input_name=name,
        )
    except ValueError as exc:
        message = str(exc)
        if name not in message:
            message = f"View {index}: {message}"
        raise ValueError(message) from exc
    except TypeError as exc:
        raise TypeError(f"View {index}: {exc}") from exc


def check_views(
    X: Any,
    *,
    accept_sparse: bool = True,
    ensure_min_samples: int = 2,
) -> list:
    """Validate a multi-view input and return it as a list of float64 views.

    Parameters
    ----------
    X : list or tuple of array-like or sparse matrix, or a single 2-D array-like
        One entry per view, each of shape ``(n_samples, n_features_v)``. A single 2-D input is
        treated as one view.
    accept_sparse : bool, default=True
        Whether scipy sparse views are accepted (they are converted to CSR or CSC, float64).
    ensure_min_samples : int, default=2
        Minimum number of rows.

    Returns
    -------
    views : list of ndarray or sparse matrix
        Validated views, finite, float64, all with the same number of rows.

    Raises
    ------
    ValueError
        With a message that names the offending view: not 2-D, no features, NaN or infinity,
        fewer than ``ensure_min_samples`` rows, or row counts that differ between views.
    """
    if X is None:
        raise ValueError("X is None; expected a list of views or a 2-D array.")
    if isinstance(X, (list, tuple)) and len(X) == 0:
        raise ValueError("X is an empty list; expected at least one view.")
    raw_views: Sequence = X if is_multiview(X) else [X]
    if isinstance(X, (list, tuple)) and is_multiview(X):
        for index, view in enumerate(raw_views):
            if not _looks_2d(view):
                raise ValueError(
                    f"View {index} must be 2-D (n_samples, n_features); got shape "
                    f"{np.shape(view)}."
                )
    views = [
        _check_one_view(v, i, accept_sparse=accept_sparse, ensure_min_samples=ensure_min_samples)
        for i, v in enumerate(raw_views)
    ]
    n_rows = [v.shape[0] for v in views]
    if len(set(n_rows)) > 1:
        bad = next(i for i, n in enumerate(n_rows) if n != n_rows[0])
        raise ValueError(
            "All views must have the same number of samples (rows): view 0 has "
            f"{n_rows[0]} rows but view {bad} has {n_rows[bad]} (row counts: {n_rows})."
        )
    return views


def check_n_clusters(n_clusters: int, n_samples: int) -> int:
    """Check that ``1 <= n_clusters <= n_samples`` and return it as an int.

    ``n_clusters=1`` is allowed (it trivially puts every sample in one cluster) because
    scikit-learn's estimator checks fit clusterers with a single cluster.
    """
    if not isinstance(n_clusters, Integral) or isinstance(n_clusters, bool):
        raise TypeError(f"n_clusters must be an integer; got {n_clusters!r}.")
    if n_clusters < 1:
        raise ValueError(f"n_clusters={n_clusters} must be at least 1.")
    if n_clusters > n_samples:
        raise ValueError(
            f"n_clusters={n_clusters} is larger than the number of samples "
            f"n_samples={n_samples}: too few samples for that many clusters."
        )
    return int(n_clusters)


def validate_views(estimator: Any, X: Any, *, reset: bool) -> list:
    """Validate ``X`` for ``estimator`` and record or check its input dimensions.

    With ``reset=True`` (in ``fit``) this sets ``n_views_``, ``n_features_per_view_`` and
    ``n_features_in_`` (the sum of the per-view widths); with ``reset=False`` (in ``predict``) it
    checks that ``X`` has the same number of views and features per view as at fit time.
    A single 2-D input goes through scikit-learn's ``validate_data`` so that feature-name and
    feature-count conventions hold exactly as for any scikit-learn estimator.
    """
    min_samples = 2 if reset else 1
    if is_multiview(X):
        views = check_views(X, ensure_min_samples=min_samples)
        widths = tuple(int(v.shape[1]) for v in views)
        if reset:
            estimator.n_views_ = len(views)
            estimator.n_features_per_view_ = widths
            estimator.n_features_in_ = int(sum(widths))
            if hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
        else:
            _check_same_layout(estimator, widths)
        return views
    try:
        array = validate_data(
            estimator,
            X,
            reset=reset,
            accept_sparse=["csr", "csc"],
            dtype=np.float64,
            ensure_min_samples=min_samples,
        )
    except ValueError as exc:
        if "is expecting" in str(exc) and getattr(estimator, "n_views_", 1) > 1:
            raise ValueError(
                f"{type(estimator).__name__} was fitted on {estimator.n_views_} views with "
                f"{estimator.n_features_per_view_} features; pass a list of that many views."
            ) from exc
        raise
    if reset:
        estimator.n_views_ = 1
        estimator.n_features_per_view_ = (int(array.shape[1]),)
    elif estimator.n_views_ != 1:
        raise ValueError(
            f"{type(estimator).__name__} was fitted on {estimator.n_views_} views; "
            "pass a list of that many views."
        )
    return [array]


def check_graphs(graphs: Any, n_samples: int, *, n_views: int | None = None) -> list:
    """Validate a list of adjacency matrices over the same ``n_samples`` nodes.

    Parameters
    ----------
    graphs : list or tuple of sparse matrix or 2-D array-like
        One ``(n_samples, n_samples)`` non-negative adjacency matrix per graph view. Self-loops
        and edge weights are allowed.
    n_samples : int
        Number of nodes, i.e. the number of rows of the node features.
    n_views : int, default=None
        When given, the number of graphs must equal it (one graph per feature view).

    Returns
    -------
    graphs : list of csr_matrix
        float64 CSR matrices with duplicates summed and explicit zeros removed. A graph that is
        not symmetric is symmetrised with ``max(A, A^T)`` and a ``UserWarning`` says so.

    Raises
    ------
    ValueError
        With a message that names the graph: not a list, empty, wrong length, not 2-D, not
        square, another node count than the features, NaN or infinity, negative weights.
    """
    if sp.issparse(graphs) or isinstance(graphs, np.ndarray) or not isinstance(
        graphs, (list, tuple)
    ):
        raise ValueError(
            "graphs must be a list of adjacency matrices (one per graph view); got "
            f"{type(graphs).__name__}. Wrap a single graph in a list: graphs=[A]."
        )
    if len(graphs) == 0:
        raise ValueError("graphs is an empty list; pass at least one adjacency matrix.")
    if n_views is not None and len(graphs) != n_views:
        raise ValueError(
            f"Got {len(graphs)} graphs for {n_views} feature views; pass one graph per view "
            "(or a single 2-D feature matrix shared by all graphs)."
        )
    checked = []
    for index, graph in enumerate(graphs):
        name = f"Graph {index}"
        if graph is None:
            raise ValueError(f"{name} is None; expected an (n, n) adjacency matrix.")
        if sp.issparse(graph):
            # A copy: the clean-up below (duplicates, explicit zeros, order) must not rewrite
            # the caller's matrix.
            matrix = sp.csr_matrix(graph, dtype=np.float64, copy=True)
        else:
            try:
                array = np.asarray(graph, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} is not a numeric matrix: {exc}") from exc
            if array.ndim != 2:
                raise ValueError(f"{name} must be a 2-D adjacency matrix; got shape {array.shape}.")
            matrix = sp.csr_matrix(array)
        rows, cols = matrix.shape
        if rows != cols:
            raise ValueError(f"{name} is not square: shape {matrix.shape}.")
        if rows != n_samples:
            raise ValueError(
                f"{name} has {rows} nodes but the features have {n_samples} samples; every "
                "graph must be over the same nodes as the rows of X."
            )
        matrix.sum_duplicates()
        if not np.all(np.isfinite(matrix.data)):
            raise ValueError(f"{name} contains NaN or infinity.")
        if matrix.data.size and matrix.data.min() < 0:
            raise ValueError(
                f"{name} has negative edge weights (min {matrix.data.min():.3g}); adjacency "
                "matrices must be non-negative."
            )
        matrix.eliminate_zeros()
        asymmetry = abs(matrix - matrix.T)
        if asymmetry.nnz and asymmetry.max() > 1e-12 * max(float(matrix.data.max()), 1.0):
            warnings.warn(
                f"{name} is not symmetric; it is symmetrised with max(A, A^T).",
                UserWarning,
                stacklevel=3,
            )
            matrix = matrix.maximum(matrix.T).tocsr()
        matrix.sort_indices()
        checked.append(matrix)
    return checked


def _check_same_layout(estimator: Any, widths: tuple) -> None:
    name = type(estimator).__name__
    if len(widths) != estimator.n_views_:
        raise ValueError(
            f"X has {len(widths)} views, but {name} was fitted on {estimator.n_views_} views."
        )
    for index, (got, expected) in enumerate(zip(widths, estimator.n_features_per_view_)):
        if got != expected:
            raise ValueError(
                f"View {index} has {got} features, but {name} is expecting {expected} "
                "features in that view."
            )
