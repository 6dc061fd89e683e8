"""LabelFreeSelector: fit several clusterings and keep one, chosen without labels."""

from __future__ import annotations

import logging
import time
import warnings
from numbers import Integral

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from mvlearn_plus.cluster._concatenation import concatenate_views
from mvlearn_plus.model_selection._candidates import default_candidates
from mvlearn_plus.model_selection._criteria import (
    CRITERIA,
    _knn_affinity,
    consensus_criterion,
    is_degenerate,
    rank_criteria,
    reference_cut_criterion,
    silhouette_criterion,
    size_entropy,
    view_cut_criterion,
)
from mvlearn_plus.preprocessing import row_normalize
from mvlearn_plus.utils.validation import check_n_clusters, check_views, validate_views

logger = logging.getLogger(__name__)

__all__ = ["LabelFreeSelector", "score_partitions", "select_partition"]

#: Neighbours of the graphs the cut criteria read.
CRITERION_NEIGHBORS = 10


def _fit_candidate(name: str, estimator, views: list):
    start = time.perf_counter()
    try:
        labels = np.asarray(estimator.fit_predict(views)).ravel()
    except Exception as exc:  # noqa: BLE001 - any failure of one candidate is reported, not fatal
        return name, estimator, None, time.perf_counter() - start, exc
    return name, estimator, labels, time.perf_counter() - start, None


class LabelFreeSelector(ClusterMixin, BaseEstimator):
    """Fit several clusterings of multi-view data and keep the best by label-free criteria.

    No clustering method wins on every dataset, and a user without labels cannot tell which
    one to trust. The selector fits every candidate (by default the toolbox's spectral
    estimators and the simple baselines, :func:`default_candidates`), scores each partition by
    criteria that never see labels, computed on the same representations for every candidate
    (:mod:`mvlearn_plus.model_selection`'s criteria), sets aside degenerate partitions
    (:func:`is_degenerate`) and keeps the best one.

    The default criterion, ``"rank"``, is the mean rank of a candidate under four criteria:
    the cosine silhouette on the row-normalised concatenation, the normalised cut on one kNN
    graph of that concatenation, the mean normalised cut on each view's own kNN graph, and
    consensus (mean adjusted Rand index with the other candidates). Each single criterion
    favours the methods it resembles; their mean rank favours a partition that all of them
    find good. Ties go to the higher consensus.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters, passed to every candidate that has an ``n_clusters`` parameter.
    estimators : list of (str, estimator) or None, default=None
        Candidate clusterers taking the list of views (``fit_predict(views)``); None means
        :func:`default_candidates` for the data's size. Each is cloned; its ``n_clusters`` and
        ``random_state`` (where it has them) are set by the selector.
    criterion : {"rank", "silhouette", "reference_cut", "view_cut", "consensus"}, default="rank"
    random_state : int, RandomState instance or None, default=None
        One seed, given to every candidate and to the silhouette subsample.
    n_jobs : int or None, default=None
        Candidates fitted in parallel with joblib (None: one at a time).
    verbose : bool or int, default=False
        Progress bar over the candidates and one log line per candidate.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        The selected candidate's labels.
    best_name_ : str
    best_estimator_ : estimator
        The selected candidate, fitted.
    scores_ : dict of str to dict
        For every candidate fitted: ``silhouette``, ``reference_cut``, ``view_cut``,
        ``consensus``, ``rank`` (mean rank among the non-degenerate candidates; NaN for the
        others), ``size_entropy``, ``degenerate``, ``n_clusters_found`` and ``fit_time``
        (seconds). Higher is better for every criterion, lower for the rank.
    candidate_labels_ : dict of str to ndarray
        Every fitted candidate's labels.
    failed_ : dict of str to str
        Candidates that raised, with the error (they are skipped with a warning).
    fit_time_ : float
        Seconds for the whole selection; ``selection_time_`` of it for the criteria.
    selection_time_ : float
    n_views_ : int
    n_features_per_view_ : tuple of int
    n_features_in_ : int

    Notes
    -----
    ``fit`` never reads ``y``. The selection costs the sum of the candidates' fit times plus
    the criteria (kNN graphs of the concatenation and of each view, a silhouette on at most
    3,000 samples and the pairwise agreements); ``n_jobs`` spreads the candidates over cores.

    References
    ----------
    .. [1] P. J. Rousseeuw. "Silhouettes: a graphical aid to the interpretation and validation
       of cluster analysis." Journal of Computational and Applied Mathematics 20, 1987.
    .. [2] J. Shi, J. Malik. "Normalized cuts and image segmentation." IEEE TPAMI 22(8), 2000.
    .. [3] A. Strehl, J. Ghosh. "Cluster ensembles: a knowledge reuse framework for combining
       multiple partitions." JMLR 3, 2002.

    Examples
    --------
    >>> import numpy as np
    >>> from mvlearn_plus.model_selection import LabelFreeSelector
    >>> rng = np.random.RandomState(0)
    >>> y = np.repeat([0, 1, 2], 30)
    >>> views = [np.eye(3)[y] * 4 + rng.normal(size=(90, 3)) for _ in range(2)]
    >>> selector = LabelFreeSelector(n_clusters=3, random_state=0).fit(views)
    >>> selector.labels_.shape, selector.best_name_ in selector.scores_
    ((90,), True)
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "estimators": [list, None],
        "criterion": [StrOptions({"rank", *CRITERIA})],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(self, n_clusters: int = 8, *, estimators=None, criterion: str = "rank",
                 random_state=None, n_jobs=None, verbose=False):
        self.n_clusters = n_clusters
        self.estimators = estimators
        self.criterion = criterion
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ candidates
    def _candidates(self, n_samples: int, seed: int) -> list:
        pairs = self.estimators if self.estimators is not None else default_candidates(n_samples)
        names = []
        prepared = []
        for entry in pairs:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2
                    and isinstance(entry[0], str) and hasattr(entry[1], "fit")):
                raise ValueError("estimators must be a list of (name, estimator) pairs; got "
                                 f"{entry!r}.")
            name, estimator = entry
            if name in names:
                raise ValueError(f"estimators has two candidates named {name!r}.")
            names.append(name)
            estimator = clone(estimator)
            params = estimator.get_params(deep=False)
            settings = {}
            if "n_clusters" in params:
                settings["n_clusters"] = self.n_clusters
            if "random_state" in params:
                settings["random_state"] = seed
            estimator.set_params(**settings)
            prepared.append((name, estimator))
        if not prepared:
            raise ValueError("estimators is empty; give at least one (name, estimator) pair.")
        return prepared

    def _fit_all(self, candidates: list, views: list) -> list:
        if self.n_jobs not in (None, 1):
            return Parallel(n_jobs=self.n_jobs)(
                delayed(_fit_candidate)(name, est, views) for name, est in candidates)
        from tqdm.auto import tqdm

        results = []
        for name, est in tqdm(candidates, desc="LabelFreeSelector", unit="candidate",
                              disable=not self.verbose):
            results.append(_fit_candidate(name, est, views))
            if self.verbose:
                logger.info("%s: %.1f s", name, results[-1][3])
        return results

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Fit every candidate, score it without labels and keep the best.

        Parameters
        ----------
        X : list of array-like or sparse matrix of shape (n_samples, n_features_v)
            The views (a single 2-D array is one view).
        y : ignored
            Never read: the selection uses no labels.

        Returns
        -------
        self : LabelFreeSelector
        """
        self._validate_params()
        start = time.perf_counter()
        views = validate_views(self, X, reset=True)
        n = views[0].shape[0]
        c = check_n_clusters(self.n_clusters, n)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        candidates = self._candidates(n, seed)
        results = self._fit_all(candidates, views)

        self.failed_ = {}
        fitted = {}
        for name, estimator, labels, seconds, error in results:
            if error is not None or labels is None or labels.shape != (n,):
                reason = (f"{type(error).__name__}: {error}" if error is not None
                          else f"returned labels of shape {getattr(labels, 'shape', None)}")
                warnings.warn(f"LabelFreeSelector: candidate {name!r} failed and is skipped "
                              f"({reason}).", UserWarning, stacklevel=2)
                self.failed_[name] = reason
                continue
            fitted[name] = (estimator, labels, seconds)
        if not fitted:
            details = "; ".join(f"{name}: {reason}" for name, reason in self.failed_.items())
            raise RuntimeError(f"LabelFreeSelector: every candidate failed ({details}).")

        selection_start = time.perf_counter()
        self.scores_ = score_partitions(
            views, {name: labels for name, (_, labels, _) in fitted.items()}, c,
            random_state=seed, fit_times={name: t for name, (_, _, t) in fitted.items()})
        self.best_name_ = select_partition(self.scores_, self.criterion)
        self.best_estimator_ = fitted[self.best_name_][0]
        self.labels_ = np.unique(fitted[self.best_name_][1], return_inverse=True)[1].astype(
            np.int64)
        self.candidate_labels_ = {name: labels for name, (_, labels, _) in fitted.items()}
        self.selection_time_ = time.perf_counter() - selection_start
        self.fit_time_ = time.perf_counter() - start
        if self.verbose:
            logger.info("selected %s (%s)", self.best_name_, self.criterion)
        return self


def score_partitions(views: list, partitions: dict, n_clusters: int, *, random_state=None,
                     fit_times: dict | None = None) -> dict:
    """Score partitions of the same samples by every label-free criterion.

    This is the scoring step of :class:`LabelFreeSelector`, for partitions that already exist
    (from this toolbox or elsewhere): no clustering is fitted.

    Parameters
    ----------
    views : list of ndarray or sparse matrix of shape (n_samples, n_features_v)
    partitions : dict of str to array-like of shape (n_samples,)
        Candidate labels by name (at least one).
    n_clusters : int
        The number of clusters asked for.
    random_state : int, RandomState instance or None, default=None
        Seeds the silhouette subsample (the same for every partition).
    fit_times : dict of str to float, optional
        Recorded as ``fit_time`` in the result.

    Returns
    -------
    dict of str to dict
        Per partition: ``silhouette``, ``reference_cut``, ``view_cut``, ``consensus``,
        ``rank`` (NaN for a degenerate partition), ``degenerate``, ``size_entropy``,
        ``n_clusters_found`` and ``fit_time``; see :class:`LabelFreeSelector`.
    """
    views = check_views(views)
    names = list(partitions)
    if not names:
        raise ValueError("partitions is empty; give at least one named partition.")
    n = views[0].shape[0]
    labelings = []
    for name in names:
        labels = np.asarray(partitions[name]).ravel()
        if labels.shape[0] != n:
            raise ValueError(f"partition {name!r} has {labels.shape[0]} labels but the views "
                             f"have {n} samples.")
        labelings.append(labels)
    degenerate = np.array([is_degenerate(lab, n_clusters) for lab in labelings])
    if degenerate.all():
        warnings.warn("LabelFreeSelector: every candidate partition is degenerate (a giant "
                      "cluster or fewer than two clusters); choosing among all of them.",
                      UserWarning, stacklevel=3)
        degenerate[:] = False
    valid = np.flatnonzero(~degenerate)

    k = CRITERION_NEIGHBORS
    reference_graph = _knn_affinity(concatenate_views(views), k)
    view_graphs = [_knn_affinity(row_normalize(v), k) for v in views]
    table = np.empty((len(names), len(CRITERIA)))
    for i, labels in enumerate(labelings):
        table[i, 0] = silhouette_criterion(views, labels, random_state=random_state)
        table[i, 1] = reference_cut_criterion(views, labels, n_clusters=n_clusters,
                                              affinity=reference_graph)
        table[i, 2] = view_cut_criterion(views, labels, n_clusters=n_clusters,
                                         affinities=view_graphs)
    # Consensus is agreement with the non-degenerate partitions (a giant-cluster partition
    # agrees with nothing and would only add noise).
    if valid.size >= 2:
        table[valid, 3] = consensus_criterion([labelings[i] for i in valid])
        for i in np.flatnonzero(degenerate):
            table[i, 3] = consensus_criterion([labelings[i]] + [labelings[j] for j in valid])[0]
    else:
        table[:, 3] = 0.0
    ranks = np.full(len(names), np.nan)
    ranks[valid] = rank_criteria(table[valid])

    fit_times = fit_times or {}
    scores = {}
    for i, name in enumerate(names):
        row = dict(zip(CRITERIA, (float(v) for v in table[i])))
        row.update(rank=float(ranks[i]), degenerate=bool(degenerate[i]),
                   size_entropy=size_entropy(labelings[i], n_clusters),
                   n_clusters_found=int(np.unique(labelings[i]).size),
                   fit_time=float(fit_times.get(name, np.nan)))
        scores[name] = row
    return scores


def select_partition(scores: dict, criterion: str = "rank") -> str:
    """The name of the best non-degenerate partition of :func:`score_partitions`' result.

    ``"rank"``: the lowest mean rank, ties to the higher consensus, then to the earlier
    partition; a single criterion: its highest score, ties to the earlier partition.
    """
    if criterion not in ("rank", *CRITERIA):
        raise ValueError(f"criterion must be 'rank' or one of {CRITERIA}; got {criterion!r}.")
    names = [name for name, row in scores.items() if not row["degenerate"]]
    if criterion == "rank":
        return min(names, key=lambda name: (scores[name]["rank"], -scores[name]["consensus"]))
    return max(names, key=lambda name: scores[name][criterion])
