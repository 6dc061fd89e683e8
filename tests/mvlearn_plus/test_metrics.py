"""Tests for mvlearn_plus.metrics against hand-computed contingency tables.

Tables are written clusters x classes: row k = predicted cluster, column j = true class.
"""

import warnings

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score

from mvlearn_plus.metrics import (
    clustering_accuracy,
    contingency_table,
    evaluate_clustering,
    f1_macro,
    pairwise_f_score,
    pairwise_precision,
    pairwise_recall,
    purity,
)

EXPECTED_KEYS = {
    "acc",
    "nmi",
    "ari",
    "purity",
    "f_score",
    "precision",
    "recall",
    "f1_macro",
    "n_clusters_found",
}


def test_perfect_and_permuted_labels_score_one():
    y_true = [0, 0, 1, 1, 2, 2]
    for y_pred in ([0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1], [7, 7, -3, -3, 5, 5]):
        scores = evaluate_clustering(y_true, y_pred)
        for key in EXPECTED_KEYS - {"n_clusters_found"}:
            assert scores[key] == pytest.approx(1.0), key
        assert scores["n_clusters_found"] == 3


def test_more_clusters_than_classes():
    # y_true = [0 0 0 1 1 1], y_pred = [0 0 1 2 2 2]
    #            class 0  class 1
    # cluster 0     2        0
    # cluster 1     1        0
    # cluster 2     0        3
    # ACC: 0->0 (2) and 2->1 (3); cluster 1 unmatched, its sample is an error -> 5/6.
    # Purity: (2 + 1 + 3) / 6 = 1.
    # Pairs: TP = 1 + 0 + 3 = 4, same-cluster = 1 + 0 + 3 = 4, same-class = 3 + 3 = 6
    #   -> P = 1, R = 2/3, F = 2 * (2/3) / (5/3) = 0.8.
    # f1_macro: class 0 -> 2*2/(2+3) = 0.8, class 1 -> 2*3/(3+3) = 1 -> 0.9.
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 1, 2, 2, 2]
    table, clusters, classes = contingency_table(y_true, y_pred)
    np.testing.assert_array_equal(table, [[2, 0], [1, 0], [0, 3]])
    np.testing.assert_array_equal(clusters, [0, 1, 2])
    np.testing.assert_array_equal(classes, [0, 1])
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert purity(y_true, y_pred) == pytest.approx(1.0)
    assert pairwise_precision(y_true, y_pred) == pytest.approx(1.0)
    assert pairwise_recall(y_true, y_pred) == pytest.approx(2 / 3)
    assert pairwise_f_score(y_true, y_pred) == pytest.approx(0.8)
    assert f1_macro(y_true, y_pred) == pytest.approx(0.9)
    assert evaluate_clustering(y_true, y_pred)["n_clusters_found"] == 3


def test_fewer_clusters_than_classes():
    # y_true = [0 0 1 1 2 2], y_pred = [0 0 0 0 1 1]
    #            c0  c1  c2
    # cluster 0   2   2   0
    # cluster 1   0   0   2
    # ACC: 1->2 (2), 0->0 or 1 (2) -> 4/6.   Purity: (2 + 2) / 6 = 2/3.
    # Pairs: TP = 1 + 1 + 1 = 3, same-cluster = 6 + 1 = 7, same-class = 3
    #   -> P = 3/7, R = 1, F = (6/7) / (10/7) = 0.6.
    # f1_macro: matched class of cluster 0 -> 2*2/(4+2) = 2/3, class 2 -> 1, unmatched class
    #   -> 0; mean 5/9 whichever of the tied classes cluster 0 gets.
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 0, 1, 1]
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(2 / 3)
    assert purity(y_true, y_pred) == pytest.approx(2 / 3)
    assert pairwise_precision(y_true, y_pred) == pytest.approx(3 / 7)
    assert pairwise_recall(y_true, y_pred) == pytest.approx(1.0)
    assert pairwise_f_score(y_true, y_pred) == pytest.approx(0.6)
    assert f1_macro(y_true, y_pred) == pytest.approx(5 / 9)


def test_string_and_negative_labels():
    # Permuted string labels: perfect.
    y_true = ["cat", "cat", "dog", "dog", "eel"]
    y_pred = ["b", "b", "a", "a", "c"]
    scores = evaluate_clustering(y_true, y_pred)
    assert scores["acc"] == pytest.approx(1.0)
    assert scores["nmi"] == pytest.approx(1.0)
    assert scores["ari"] == pytest.approx(1.0)
    # Strings against negative ints; clusters sorted -7, -1, 3:
    #              "a"  "b"
    # cluster -7     0    1
    # cluster -1     2    0
    # cluster  3     0    1
    # ACC = (2 + 1) / 4 = 0.75, purity = 1.
    y_true = ["a", "a", "b", "b"]
    y_pred = [-1, -1, -7, 3]
    table, clusters, classes = contingency_table(y_true, y_pred)
    np.testing.assert_array_equal(table, [[0, 1], [2, 0], [0, 1]])
    np.testing.assert_array_equal(clusters, [-7, -1, 3])
    np.testing.assert_array_equal(classes, ["a", "b"])
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(0.75)
    assert purity(y_true, y_pred) == pytest.approx(1.0)


def test_purity_differs_from_inverse_purity():
    # Same table as test_more_clusters_than_classes: purity = 1, but with the arguments
    # swapped (the MGF code's inverse purity) classes act as clusters:
    #   class 0 row [2, 1, 0] -> 2, class 1 row [0, 0, 3] -> 3 -> 5/6.
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 1, 2, 2, 2]
    assert purity(y_true, y_pred) == pytest.approx(1.0)
    assert purity(y_pred, y_true) == pytest.approx(5 / 6)


def test_pairwise_scores_hand_example():
    # y_true = [0 0 0 0 1 1], y_pred = [0 0 0 1 1 1]
    #            class 0  class 1
    # cluster 0     3        0
    # cluster 1     1        2
    # TP = 3 + 0 + 0 + 1 = 4; same-cluster pairs = 3 + 3 = 6; same-class pairs = 6 + 1 = 7.
    # P = 4/6, R = 4/7, F = 2 P R / (P + R) = (16/21) / (26/21) = 8/13.
    y_true = [0, 0, 0, 0, 1, 1]
    y_pred = [0, 0, 0, 1, 1, 1]
    assert pairwise_precision(y_true, y_pred) == pytest.approx(2 / 3)
    assert pairwise_recall(y_true, y_pred) == pytest.approx(4 / 7)
    assert pairwise_f_score(y_true, y_pred) == pytest.approx(8 / 13)
    scores = evaluate_clustering(y_true, y_pred)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(4 / 7)
    assert scores["f_score"] == pytest.approx(8 / 13)


def test_f1_macro_hand_example():
    # Same table as test_pairwise_scores_hand_example. Matching: cluster 0 -> class 0 (3),
    # cluster 1 -> class 1 (2), ACC = 5/6.
    # class 0: TP 3, predicted 3, true 4 -> 2*3/(3+4) = 6/7
    # class 1: TP 2, predicted 3, true 2 -> 2*2/(3+2) = 4/5
    # macro = (6/7 + 4/5) / 2 = 29/35.
    y_true = [0, 0, 0, 0, 1, 1]
    y_pred = [5, 5, 5, 9, 9, 9]
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert f1_macro(y_true, y_pred) == pytest.approx(29 / 35)
    relabelled = [0, 0, 0, 1, 1, 1]
    assert f1_macro(y_true, y_pred) == pytest.approx(
        f1_score(y_true, relabelled, average="macro")
    )


def test_degenerate_pairwise_cases_no_nan_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # All predicted singletons: no same-cluster pair -> precision 1 by convention,
        # recall 0 (TP = 0 of 2 class pairs), F 0.
        scores = evaluate_clustering([0, 0, 1, 1], [0, 1, 2, 3])
        assert scores["precision"] == 1.0
        assert scores["recall"] == 0.0
        assert scores["f_score"] == 0.0
        # Both all singletons: nothing to join or recover -> all 1.
        scores = evaluate_clustering([0, 1, 2], [2, 1, 0])
        assert scores["precision"] == scores["recall"] == scores["f_score"] == 1.0
        # One sample.
        scores = evaluate_clustering([4], [1])
        assert all(np.isfinite(v) for v in scores.values())


def test_evaluate_clustering_keys_and_types():
    scores = evaluate_clustering([0, 0, 1, 1, 2], [1, 1, 0, 2, 2])
    assert set(scores) == EXPECTED_KEYS
    for key, value in scores.items():
        expected_type = int if key == "n_clusters_found" else float
        assert type(value) is expected_type, key


def test_agrees_with_sklearn_on_random_labelings():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 60))
        y_true = rng.integers(0, int(rng.integers(1, 6)), n)
        y_pred = rng.integers(0, int(rng.integers(1, 9)), n) * 3 - 4
        scores = evaluate_clustering(y_true, y_pred)
        assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(y_true, y_pred))
        assert scores["ari"] == pytest.approx(adjusted_rand_score(y_true, y_pred))
        # f1_macro = sklearn's macro F1 over the true classes after the ACC relabelling.
        table, clusters, classes = contingency_table(y_true, y_pred)
        rows, cols = linear_sum_assignment(table, maximize=True)
        mapping = dict(zip(clusters[rows], classes[cols]))
        relabelled = np.array([mapping.get(c, -1) for c in y_pred])
        expected = f1_score(y_true, relabelled, labels=classes, average="macro", zero_division=0)
        assert scores["f1_macro"] == pytest.approx(expected)
        assert scores["acc"] == pytest.approx(table[rows, cols].sum() / n)


def test_length_mismatch_error():
    with pytest.raises(ValueError, match="y_true has 10 samples but y_pred has 9"):
        evaluate_clustering(np.zeros(10), np.zeros(9))
    with pytest.raises(ValueError, match="y_true has 3 samples but y_pred has 2"):
        clustering_accuracy([0, 1, 2], [0, 1])


def test_not_1d_and_empty_errors():
    with pytest.raises(ValueError, match="y_pred must be 1-D"):
        purity([0, 1], [[0], [1]])
    with pytest.raises(ValueError, match="empty"):
        evaluate_clustering([], [])
