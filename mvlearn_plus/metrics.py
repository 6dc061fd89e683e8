"""External clustering scores, all derived from one contingency table.

Every score here compares a predicted partition ``y_pred`` with the ground-truth classes
``y_true``. Labels may be any hashable values that :func:`numpy.unique` can sort (integers,
negative integers, strings); the two labelings are encoded independently, so a cluster called
``3`` need not correspond to class ``3``.

The contingency table ``C`` has one row per *predicted cluster* and one column per *true class*:
``C[k, j]`` is the number of samples put in cluster ``k`` whose class is ``j``. It is built once
in ``O(n log n)`` (label encoding) and stored sparse, so ``evaluate_clustering`` costs
``O(n log n + nnz(C))`` plus the Hungarian matching on the ``k_pred x k_true`` table.

Scores (spec section 0.3):

* ``acc`` -- clustering accuracy after the best one-to-one matching of clusters to classes.
* ``nmi`` -- normalised mutual information, arithmetic mean of the entropies (as
  :func:`sklearn.metrics.normalized_mutual_info_score` with its default ``average_method``).
* ``ari`` -- adjusted Rand index (as :func:`sklearn.metrics.adjusted_rand_score`).
* ``purity`` -- fraction of samples belonging to the majority class of their cluster.
* ``precision``, ``recall``, ``f_score`` -- pair-counting scores (the mPAC paper's "F-score").
* ``f1_macro`` -- macro-averaged per-class F1 after the ACC matching (the VGMGC paper's "F1").
  Do not confuse it with the pairwise ``f_score``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import mutual_info_score

__all__ = [
    "contingency_table",
    "clustering_accuracy",
    "purity",
    "pairwise_precision",
    "pairwise_recall",
    "pairwise_f_score",
    "f1_macro",
    "evaluate_clustering",
]


class _Table(NamedTuple):
    """Contingency table plus the quantities every score needs."""

    table: sp.csr_matrix  # (k_pred, k_true), int64
    cluster_sizes: np.ndarray  # a_k, row sums
    class_sizes: np.ndarray  # b_j, column sums
    n_samples: int


def _check_labels(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    labels = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y is None:
            raise ValueError(f"{name} is None; expected a 1-D array of labels.")
        arr = np.asarray(y)
        if arr.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D (n_samples,); got an array of shape {arr.shape}. "
                "Use np.ravel(...) on a column vector of labels."
            )
        labels.append(arr)
    true, pred = labels
    if true.shape[0] != pred.shape[0]:
        raise ValueError(
            f"y_true has {true.shape[0]} samples but y_pred has {pred.shape[0]}; "
            "they must label the same samples."
        )
    if true.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty; at least one sample is needed.")
    return true, pred


def _build_table(y_true: ArrayLike, y_pred: ArrayLike) -> _Table:
    true, pred = _check_labels(y_true, y_pred)
    _, class_idx = np.unique(true, return_inverse=True)
    _, cluster_idx = np.unique(pred, return_inverse=True)
    class_idx = class_idx.ravel()
    cluster_idx = cluster_idx.ravel()
    n_classes = int(class_idx.max()) + 1
    n_clusters = int(cluster_idx.max()) + 1
    n = true.shape[0]
    # COO -> CSR sums the duplicate (cluster, class) entries, which is exactly the counting.
    table = sp.coo_matrix(
        (np.ones(n, dtype=np.int64), (cluster_idx, class_idx)),
        shape=(n_clusters, n_classes),
    ).tocsr()
    table.sum_duplicates()
    cluster_sizes = np.bincount(cluster_idx, minlength=n_clusters).astype(np.int64)
    class_sizes = np.bincount(class_idx, minlength=n_classes).astype(np.int64)
    return _Table(table, cluster_sizes, class_sizes, int(n))


def contingency_table(
    y_true: ArrayLike, y_pred: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contingency table of predicted clusters against true classes.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels (any sortable values).
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels (any sortable values).

    Returns
    -------
    table : ndarray of shape (n_clusters, n_classes), dtype int64
        ``table[k, j]`` is the number of samples in cluster ``clusters[k]`` with class
        ``classes[j]``. Rows are clusters, columns are classes (the transpose of
        :func:`sklearn.metrics.cluster.contingency_matrix`).
    clusters : ndarray of shape (n_clusters,)
        Sorted distinct values of ``y_pred``.
    classes : ndarray of shape (n_classes,)
        Sorted distinct values of ``y_true``.
    """
    true, pred = _check_labels(y_true, y_pred)
    return _build_table(true, pred).table.toarray(), np.unique(pred), np.unique(true)


def _pairs(counts: np.ndarray) -> int:
    """Number of unordered pairs, ``sum c (c - 1) / 2``, as an exact Python int."""
    counts = np.asarray(counts, dtype=np.int64)
    return int((counts * (counts - 1) // 2).sum())


def _matching(info: _Table) -> tuple[np.ndarray, np.ndarray]:
    # The Hungarian step needs the dense table; it is k_pred x k_true, which is small whenever
    # the number of classes is small even if the clustering has many clusters.
    rows, cols = linear_sum_assignment(info.table.toarray(), maximize=True)
    return rows, cols


def _acc(info: _Table, matching: tuple[np.ndarray, np.ndarray]) -> float:
    rows, cols = matching
    matched = int(np.asarray(info.table[rows, cols]).sum()) if rows.size else 0
    return matched / info.n_samples


def _purity(info: _Table) -> float:
    majority = np.asarray(info.table.max(axis=1).toarray()).ravel()
    return int(majority.sum()) / info.n_samples


def _pair_counts(info: _Table) -> tuple[int, int, int, int]:
    """Unordered pair counts ``(tp, fp, fn, tn)`` as Python ints (no overflow)."""
    n = info.n_samples
    tp = _pairs(info.table.data)
    same_cluster = _pairs(info.cluster_sizes)
    same_class = _pairs(info.class_sizes)
    fp = same_cluster - tp
    fn = same_class - tp
    tn = n * (n - 1) // 2 - tp - fp - fn
    return tp, fp, fn, tn


def _pairwise_prf(info: _Table) -> tuple[float, float, float]:
    tp, fp, fn, _ = _pair_counts(info)
    # 0/0 conventions: with no pair inside any cluster nothing was wrongly joined, so precision
    # is vacuously perfect; with no pair inside any class there was nothing to recover, so
    # recall is vacuously perfect. F is 0 only when both are 0.
    precision = tp / (tp + fp) if tp + fp > 0 else 1.0
    recall = tp / (tp + fn) if tp + fn > 0 else 1.0
    denom = precision + recall
    f_score = 2.0 * precision * recall / denom if denom > 0 else 0.0
    return float(precision), float(recall), float(f_score)


def _ari(info: _Table) -> float:
    tp, fp, fn, tn = _pair_counts(info)
    # Same special case and formula as sklearn.metrics.adjusted_rand_score; the formula is
    # homogeneous of degree 2 in the pair counts, so unordered counts give the same value.
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _entropy_from_counts(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    total = counts.sum()
    return float(-np.sum((counts / total) * (np.log(counts) - np.log(total))))


def _nmi(info: _Table) -> float:
    k_pred, k_true = info.table.shape
    # sklearn's limit case: neither labeling splits the data -> identical partitions.
    if k_pred == k_true == 1:
        return 1.0
    mi = mutual_info_score(None, None, contingency=info.table.T.astype(np.float64))
    if mi == 0:
        return 0.0
    h_true = _entropy_from_counts(info.class_sizes)
    h_pred = _entropy_from_counts(info.cluster_sizes)
    return float(mi / ((h_true + h_pred) / 2.0))


def _f1_macro(info: _Table, matching: tuple[np.ndarray, np.ndarray]) -> float:
    rows, cols = matching
    # After relabelling cluster rows[i] as class cols[i], class j's one-vs-rest F1 is
    # 2 TP / (predicted + true) = 2 C[k, j] / (a_k + b_j); a class left unmatched receives no
    # predictions and scores 0, and samples of unmatched clusters are false negatives for their
    # class. This equals sklearn's f1_score(average="macro") restricted to the true classes.
    per_class = np.zeros(info.class_sizes.shape[0], dtype=np.float64)
    if rows.size:
        hits = np.asarray(info.table[rows, cols]).ravel().astype(np.float64)
        per_class[cols] = 2.0 * hits / (info.cluster_sizes[rows] + info.class_sizes[cols])
    return float(per_class.mean())


def clustering_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Clustering accuracy under the best one-to-one matching of clusters to classes.

    The matching maximises the number of correctly placed samples over all injective maps
    between predicted clusters and classes (Hungarian algorithm on the contingency table; the
    table may be rectangular). Samples of clusters left unmatched (when there are more clusters
    than classes) count as errors.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    acc : float
        In ``[0, 1]``.

    References
    ----------
    .. [1] H. W. Kuhn, "The Hungarian method for the assignment problem", Naval Research
       Logistics Quarterly 2 (1955) 83-97.
    """
    info = _build_table(y_true, y_pred)
    return float(_acc(info, _matching(info)))


def purity(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Purity: fraction of samples that belong to the majority class of their cluster.

    ``purity = sum_k max_j C[k, j] / n`` with ``k`` running over predicted clusters. Not
    symmetric: ``purity(y_pred, y_true)`` is the *inverse purity* (what the official MGF code
    reports). Putting every sample in its own cluster gives purity 1.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    purity : float
        In ``(0, 1]``.

    References
    ----------
    .. [1] C. D. Manning, P. Raghavan, H. Schuetze, "Introduction to Information Retrieval",
       Cambridge University Press, 2008, section 16.3.
    """
    return float(_purity(_build_table(y_true, y_pred)))


def pairwise_precision(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Pairwise precision: fraction of same-cluster pairs that are also same-class.

    ``precision = TP / sum_k a_k (a_k - 1) / 2`` with ``TP = sum_kj C_kj (C_kj - 1) / 2`` (pairs
    sharing both cluster and class) and ``a_k`` the predicted cluster sizes.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    precision : float
        In ``[0, 1]``.

    Notes
    -----
    Degenerate cases never give NaN nor a warning. When no predicted cluster holds two samples
    (all singletons) there is no same-cluster pair, nothing was wrongly joined, and precision is
    1.0 by convention. The same holds for :func:`pairwise_recall` when every class is a
    singleton (nothing to recover: recall 1.0), and :func:`pairwise_f_score` is 0.0 when
    precision and recall are both 0. All-singleton predictions against real classes thus score
    precision 1, recall 0, F 0.

    References
    ----------
    .. [1] E. Amigo, J. Gonzalo, J. Artiles, F. Verdejo, "A comparison of extrinsic clustering
       evaluation metrics based on formal constraints", Information Retrieval 12 (2009)
       461-486 (pair-counting measures).
    """
    return _pairwise_prf(_build_table(y_true, y_pred))[0]


def pairwise_recall(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Pairwise recall: fraction of same-class pairs that are also same-cluster.

    ``recall = TP / sum_j b_j (b_j - 1) / 2`` with ``TP = sum_kj C_kj (C_kj - 1) / 2`` and
    ``b_j`` the class sizes. When every class is a singleton there is no pair to recover and
    recall is 1.0 by convention (see :func:`pairwise_precision`).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    recall : float
        In ``[0, 1]``.
    """
    return _pairwise_prf(_build_table(y_true, y_pred))[1]


def pairwise_f_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Pairwise F-score ``2 P R / (P + R)`` of pairwise precision and recall.

    This is the "F-score" of the mPAC paper; it is not :func:`f1_macro`. It is 0.0 when
    precision and recall are both 0 (conventions for empty pair sets: see
    :func:`pairwise_precision`).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    f_score : float
        In ``[0, 1]``.
    """
    return _pairwise_prf(_build_table(y_true, y_pred))[2]


def f1_macro(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Macro-averaged F1 over the true classes after the accuracy matching.

    Predicted clusters are relabelled with the class they are matched to by
    :func:`clustering_accuracy`; clusters left unmatched get a label that matches no class.
    The score is then ``sklearn.metrics.f1_score(y_true, relabelled, average="macro")`` with
    the average taken over the true classes only (a class that received no cluster scores 0).
    It is computed directly from the contingency table: class ``j`` matched to cluster ``k``
    has F1 ``2 C[k, j] / (a_k + b_j)``.

    This is the "F1" of the VGMGC paper; it is not the pairwise :func:`pairwise_f_score`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    f1 : float
        In ``[0, 1]``.
    """
    info = _build_table(y_true, y_pred)
    return _f1_macro(info, _matching(info))


def evaluate_clustering(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, Any]:
    """All scores of spec section 0.3 from a single contingency table.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    scores : dict
        Keys ``"acc"``, ``"nmi"``, ``"ari"``, ``"purity"``, ``"f_score"``, ``"precision"``,
        ``"recall"``, ``"f1_macro"`` (Python floats) and ``"n_clusters_found"`` (Python int,
        the number of distinct values in ``y_pred``). ``nmi`` equals
        :func:`sklearn.metrics.normalized_mutual_info_score` (arithmetic mean) and ``ari``
        equals :func:`sklearn.metrics.adjusted_rand_score`.

    Raises
    ------
    ValueError
        If the labelings are not 1-D, are empty or have different lengths.

    References
    ----------
    .. [1] A. Strehl, J. Ghosh, "Cluster ensembles -- a knowledge reuse framework for
       combining multiple partitions", JMLR 3 (2002) 583-617 (NMI).
    .. [2] L. Hubert, P. Arabie, "Comparing partitions", Journal of Classification 2 (1985)
       193-218 (ARI).
    """
    info = _build_table(y_true, y_pred)
    matching = _matching(info)
    precision, recall, f_score = _pairwise_prf(info)
    return {
        "acc": float(_acc(info, matching)),
        "nmi": float(_nmi(info)),
        "ari": float(_ari(info)),
        "purity": float(_purity(info)),
        "f_score": f_score,
        "precision": precision,
        "recall": recall,
        "f1_macro": float(_f1_macro(info, matching)),
        "n_clusters_found": int(info.table.shape[0]),
    }
