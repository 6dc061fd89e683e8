import numpy as np
import pytest
import scipy.sparse as sp

from mvlearn_plus.utils.validation import check_n_clusters, check_views, is_multiview


def _views():
    rng = np.random.RandomState(0)
    return [rng.normal(size=(10, 3)), sp.csr_matrix(rng.uniform(size=(10, 5)))]


def test_accepts_lists_tuples_sparse_and_single_arrays():
    views = check_views(_views())
    assert len(views) == 2 and sp.issparse(views[1])
    assert all(v.dtype == np.float64 for v in views)
    assert len(check_views(tuple(_views()))) == 2
    single = check_views(np.ones((4, 2)))
    assert len(single) == 1 and single[0].shape == (4, 2)
    # a list of rows is one 2-D view, not a list of views
    assert len(check_views([[1.0, 2.0], [3.0, 4.0]])) == 1
    assert is_multiview([np.ones((2, 2)), [[1.0], [2.0]]])
    assert not is_multiview([[1.0, 2.0], [3.0, 4.0]])


def test_input_is_not_modified():
    views = _views()
    before = [views[0].copy(), views[1].copy()]
    check_views(views)
    np.testing.assert_array_equal(before[0], views[0])
    assert (before[1] != views[1]).nnz == 0


def test_different_row_counts_name_the_view():
    a, b = _views()
    with pytest.raises(ValueError, match=r"view 0 has 10 rows but view 2 has 9"):
        check_views([a, b, a[:9]])


@pytest.mark.parametrize("bad, pattern", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_non_finite_values_name_the_view(bad, pattern):
    a, b = _views()
    a = a.copy()
    a[2, 1] = bad
    with pytest.raises(ValueError, match=rf"(?i)view 1.*{pattern}"):
        check_views([b, a])


def test_nan_in_sparse_view():
    a, b = _views()
    b = b.copy()
    b.data[0] = np.nan
    with pytest.raises(ValueError, match="(?i)view 1.*NaN"):
        check_views([a, b])


def test_shape_problems():
    a, _ = _views()
    with pytest.raises(ValueError, match="View 1 must be 2-D"):
        check_views([a, np.ones((10, 2, 2))])
    with pytest.raises(ValueError, match="(?i)view 1.*0 feature"):
        check_views([a, np.ones((10, 0))])
    with pytest.raises(ValueError, match="1 sample"):
        check_views([a[:1], a[:1]])
    with pytest.raises(ValueError, match="empty list"):
        check_views([])
    with pytest.raises(ValueError, match="None"):
        check_views(None)


def test_non_numeric_views():
    a, _ = _views()
    with pytest.raises(ValueError, match="[Vv]iew 1"):
        check_views([a, np.array([["x"] * 3] * 10)])
    with pytest.raises(ValueError, match="[Cc]omplex"):
        check_views([a, a + 1j])


def test_n_clusters():
    assert check_n_clusters(3, 10) == 3
    with pytest.raises(ValueError, match="too few samples"):
        check_n_clusters(11, 10)
    with pytest.raises(ValueError, match="at least 1"):
        check_n_clusters(0, 10)
    with pytest.raises(TypeError):
        check_n_clusters(2.5, 10)
