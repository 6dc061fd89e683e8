"""LabelFreeSelector, its criteria and guard, and the concatenation baselines."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.estimator_checks import parametrize_with_checks

from mvlearn_plus.cluster import (
    ConcatenatedKMeans,
    ConcatenatedSpectralClustering,
    MultiGraphFusionClustering,
)
from mvlearn_plus.datasets import load_dataset
from mvlearn_plus.metrics import clustering_accuracy
from mvlearn_plus.model_selection import (
    LabelFreeSelector,
    consensus_criterion,
    default_candidates,
    is_degenerate,
    rank_criteria,
    reference_cut_criterion,
    score_partitions,
    select_partition,
    silhouette_criterion,
    size_entropy,
    view_cut_criterion,
)
from mvlearn_plus.preprocessing import preprocess_views

LIGHT = [("k-means", ConcatenatedKMeans()), ("spectral", ConcatenatedSpectralClustering())]


def planted(n_per=40, n_clusters=3, seed=0, noise=1.0):
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(n_clusters), n_per)
    views = []
    for dim in (6, 8):
        centers = rng.normal(size=(n_clusters, dim)) * 3
        views.append(centers[y] + noise * rng.normal(size=(y.size, dim)))
    return views, y


# The selector is checked with two light candidates: with the default nine, the ~40 checks
# would fit MGF and mPAC variants hundreds of times for nothing the light list does not cover.
@parametrize_with_checks([ConcatenatedKMeans(n_init=2), ConcatenatedSpectralClustering(),
                          LabelFreeSelector(estimators=LIGHT)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ------------------------------------------------------------------------------ criteria
@pytest.fixture(scope="module")
def webkb():
    data = load_dataset("webkb")
    return preprocess_views(data.views), data.target


def test_each_criterion_prefers_the_true_partition_to_a_shuffled_one(webkb):
    views, y = webkb
    shuffled = np.random.RandomState(0).permutation(y)
    assert silhouette_criterion(views, y) > silhouette_criterion(views, shuffled)
    assert reference_cut_criterion(views, y) > reference_cut_criterion(views, shuffled)
    assert view_cut_criterion(views, y) > view_cut_criterion(views, shuffled)
    noisy = []
    for seed in range(3):
        flip = np.random.RandomState(seed).rand(y.size) < 0.2
        noisy.append(np.where(flip, np.random.RandomState(seed + 9).randint(4, size=y.size), y))
    agreement = consensus_criterion([y, shuffled, *noisy])
    assert agreement[0] > agreement[1]
    assert agreement[0] == agreement.max()


def test_cut_criteria_are_normalised_association():
    # Two cliques joined by one edge: the clique partition keeps all but the bridge.
    block = np.ones((4, 4)) - np.eye(4)
    affinity = sp.csr_matrix(np.block([[block, np.zeros((4, 4))], [np.zeros((4, 4)), block]]))
    affinity = affinity.tolil()
    affinity[3, 4] = affinity[4, 3] = 1
    affinity = affinity.tocsr()
    labels = np.repeat([0, 1], 4)
    score = reference_cut_criterion(None, labels, affinity=affinity)
    assert score == pytest.approx((12 / 13 + 12 / 13) / 2)
    # A cluster asked for but left empty counts as a cluster without internal edges.
    assert reference_cut_criterion(None, labels, n_clusters=4, affinity=affinity) == \
        pytest.approx(score / 2)


def test_guard_rejects_a_giant_cluster_and_keeps_real_imbalance():
    giant = np.r_[np.zeros(180, int), np.arange(20) % 5 + 1]  # 90 % in one of 6 clusters
    assert is_degenerate(giant, 6)
    assert is_degenerate(np.zeros(50, int), 3)
    assert not is_degenerate(np.repeat([0, 1, 2], 10), 3)
    webkb_sizes = np.repeat(np.arange(4), [21, 66, 107, 9])  # the true WebKB classes
    assert not is_degenerate(webkb_sizes, 4)
    assert size_entropy(np.repeat([0, 1], 5), 2) == pytest.approx(1.0)
    assert size_entropy(np.repeat([0, 1], 5), 4) == pytest.approx(0.5)


def test_rank_combination():
    scores = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]])
    np.testing.assert_allclose(rank_criteria(scores), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(rank_criteria([[1, 1], [0, 0]]), [1.0, 2.0])
    with pytest.raises(ValueError, match="2-D"):
        rank_criteria([1, 2, 3])
    with pytest.raises(ValueError, match="at least two"):
        consensus_criterion([np.zeros(3)])


# ------------------------------------------------------------------------------ selector
def test_selects_a_partition_that_recovers_planted_clusters():
    views, y = planted()
    selector = LabelFreeSelector(n_clusters=3, random_state=0).fit(views)
    assert clustering_accuracy(y, selector.labels_) > 0.95
    assert set(selector.scores_) == {name for name, _ in default_candidates(y.size)}
    row = selector.scores_[selector.best_name_]
    assert not row["degenerate"] and row["rank"] == min(
        r["rank"] for r in selector.scores_.values() if not r["degenerate"])
    assert set(row) >= {"silhouette", "reference_cut", "view_cut", "consensus", "rank",
                        "fit_time", "size_entropy", "n_clusters_found"}
    np.testing.assert_array_equal(selector.labels_,
                                  selector.best_estimator_.labels_)
    assert selector.fit_time_ >= sum(r["fit_time"] for r in selector.scores_.values())


def test_default_candidates_follow_the_data_size():
    small = [name for name, _ in default_candidates(500)]
    large = [name for name, _ in default_candidates(10_000)]
    # the exact dense graphs only where they are affordable
    assert "MGF (dense, gamma 0.01)" in small and "MGF (dense, gamma 0.01)" not in large
    assert {"MGF", "k-means (concat)", "spectral kNN=10 (concat)", "mPAC"} <= set(large)
    mpac_previous = dict(default_candidates(10_000))["mPAC (one-hot, consensus start)"]
    assert mpac_previous.algorithm == "knn"


def test_fit_never_reads_labels_and_is_deterministic(webkb):
    views, y = webkb
    candidates = LIGHT + [("MGF (kNN path)", MultiGraphFusionClustering(algorithm="knn"))]
    first = LabelFreeSelector(n_clusters=4, estimators=candidates, random_state=3).fit(views, y)
    shuffled = np.random.RandomState(1).permutation(y)
    second = LabelFreeSelector(n_clusters=4, estimators=candidates,
                               random_state=3).fit(views, shuffled)
    assert first.best_name_ == second.best_name_
    np.testing.assert_array_equal(first.labels_, second.labels_)
    for name in first.scores_:
        for key in ("silhouette", "reference_cut", "view_cut", "consensus", "rank"):
            assert first.scores_[name][key] == second.scores_[name][key]


def test_single_criterion_selection(webkb):
    views, _ = webkb
    for criterion in ("silhouette", "reference_cut", "view_cut", "consensus"):
        selector = LabelFreeSelector(n_clusters=4, estimators=LIGHT, criterion=criterion,
                                     random_state=0).fit(views)
        best = max((r[criterion], name) for name, r in selector.scores_.items()
                   if not r["degenerate"])
        assert selector.scores_[selector.best_name_][criterion] == best[0]


class _Broken(ClusterMixin, BaseEstimator):
    def __init__(self, n_clusters=2):
        self.n_clusters = n_clusters

    def fit(self, X, y=None):
        raise np.linalg.LinAlgError("the eigensolver did not converge (on purpose)")


class _Giant(ClusterMixin, BaseEstimator):
    """Puts all samples but one in a single cluster."""

    def __init__(self, n_clusters=2):
        self.n_clusters = n_clusters

    def fit(self, X, y=None):
        n = X[0].shape[0]
        self.labels_ = np.r_[np.zeros(n - 1, int), 1]
        return self


def test_failing_candidate_is_skipped_with_a_warning_naming_it():
    views, y = planted()
    with pytest.warns(UserWarning, match="candidate 'broken' failed.*LinAlgError"):
        selector = LabelFreeSelector(n_clusters=3, estimators=[("broken", _Broken())] + LIGHT,
                                     random_state=0).fit(views)
    assert "broken" in selector.failed_ and "broken" not in selector.scores_
    assert clustering_accuracy(y, selector.labels_) > 0.95
    with pytest.raises(RuntimeError, match="every candidate failed.*broken"):
        with pytest.warns(UserWarning):
            LabelFreeSelector(n_clusters=3, estimators=[("broken", _Broken())]).fit(views)


def test_degenerate_candidate_is_never_selected():
    views, y = planted()
    selector = LabelFreeSelector(n_clusters=3, estimators=[("giant", _Giant())] + LIGHT,
                                 random_state=0).fit(views)
    assert selector.scores_["giant"]["degenerate"]
    assert np.isnan(selector.scores_["giant"]["rank"])
    assert selector.best_name_ != "giant"


def test_bad_input_and_bad_candidates():
    views, _ = planted()
    with pytest.raises(ValueError, match="same number of samples"):
        LabelFreeSelector(n_clusters=3, estimators=LIGHT).fit([views[0], views[1][:-1]])
    with pytest.raises(ValueError, match="NaN"):
        LabelFreeSelector(n_clusters=3, estimators=LIGHT).fit(
            [np.where(np.eye(*views[0].shape) > 0, np.nan, views[0]), views[1]])
    with pytest.raises(ValueError, match=r"\(name, estimator\) pairs"):
        LabelFreeSelector(n_clusters=3, estimators=[ConcatenatedKMeans()]).fit(views)
    with pytest.raises(ValueError, match="two candidates named"):
        LabelFreeSelector(n_clusters=3, estimators=LIGHT + LIGHT[:1]).fit(views)


def test_parallel_candidates_give_the_same_selection():
    views, _ = planted()
    serial = LabelFreeSelector(n_clusters=3, estimators=LIGHT, random_state=0).fit(views)
    parallel = LabelFreeSelector(n_clusters=3, estimators=LIGHT, random_state=0,
                                 n_jobs=2).fit(views)
    assert serial.best_name_ == parallel.best_name_
    np.testing.assert_array_equal(serial.labels_, parallel.labels_)


def test_a_deep_estimator_can_be_a_candidate():
    pytest.importorskip("torch")
    from mvlearn_plus.cluster import GranularBallContrastiveClustering

    views, y = planted(n_per=20)
    deep = GranularBallContrastiveClustering(latent_dim=16, max_epochs=2, device="cpu")
    selector = LabelFreeSelector(n_clusters=3, estimators=[("MGBCC", deep)] + LIGHT,
                                 random_state=0).fit(views)
    assert "MGBCC" in selector.scores_
    assert selector.scores_["MGBCC"]["fit_time"] > 0
    assert clustering_accuracy(y, selector.labels_) > 0.9


def test_existing_partitions_are_scored_without_fitting(webkb):
    views, y = webkb
    rng = np.random.RandomState(0)
    partitions = {"truth-like": y, "shuffled": rng.permutation(y),
                  "one cluster": np.zeros_like(y)}
    scores = score_partitions(views, partitions, 4, random_state=0)
    assert scores["one cluster"]["degenerate"] and np.isnan(scores["one cluster"]["rank"])
    assert select_partition(scores) == "truth-like"
    assert select_partition(scores, "silhouette") == "truth-like"
    with pytest.raises(ValueError, match="criterion"):
        select_partition(scores, "accuracy")
    with pytest.raises(ValueError, match="'short' has 3 labels"):
        score_partitions(views, {"short": [0, 1, 2]}, 4)
