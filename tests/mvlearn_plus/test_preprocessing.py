"""Tests for mvlearn_plus.preprocessing."""

import logging

import numpy as np
import pytest
import scipy.sparse as sp

from mvlearn_plus.preprocessing import infer_view_kind, preprocess_views, row_normalize


def _counts(n=30, d=200, density=0.03, seed=0):
    rng = np.random.default_rng(seed)
    mat = sp.random(n, d, density=density, format="csr", random_state=seed, dtype=np.float64)
    mat.data = rng.integers(1, 6, mat.nnz).astype(np.float64)
    return mat


def _snapshot(view):
    return view.toarray().copy() if sp.issparse(view) else np.array(view, copy=True)


def test_text_tfidf_hand_example():
    # 3 documents, 3 terms; df = (2, 1, 0) -> smooth idf = ln((1 + 3) / (1 + df)) + 1.
    counts = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    idf = np.log(4.0 / np.array([3.0, 2.0, 1.0])) + 1.0
    weighted = counts * idf
    norms = np.linalg.norm(weighted, axis=1, keepdims=True)
    expected = np.divide(weighted, norms, out=np.zeros_like(weighted), where=norms > 0)
    (dense_out,) = preprocess_views([counts], kind="text")
    assert isinstance(dense_out, np.ndarray)
    np.testing.assert_allclose(dense_out, expected)
    (sparse_out,) = preprocess_views([sp.csr_matrix(counts)], kind="text")
    assert sp.issparse(sparse_out)
    np.testing.assert_allclose(sparse_out.toarray(), expected)


def test_text_rows_unit_norm_and_sparse():
    view = _counts()
    view = sp.vstack([view, sp.csr_matrix((1, view.shape[1]))]).tocsr()  # one empty document
    before = _snapshot(view)
    for inp in (view, view.tocsc()):
        (out,) = preprocess_views([inp], kind="text")
        assert sp.issparse(out) and out.format == "csr"
        assert out.dtype == np.float64
        norms = np.sqrt(np.asarray(out.multiply(out).sum(axis=1)).ravel())
        nonzero_rows = np.asarray(view.sum(axis=1)).ravel() > 0
        np.testing.assert_allclose(norms[nonzero_rows], 1.0)
        assert norms[-1] == 0.0
    np.testing.assert_array_equal(view.toarray(), before)


def test_text_rejects_negative_values():
    view = np.array([[1.0, 0.0], [0.0, -2.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="View 0.*negative"):
        preprocess_views([view], kind="text")


def test_dense_zscore_and_constant_columns_dropped():
    rng = np.random.default_rng(1)
    view = rng.normal(3.0, 5.0, size=(50, 4))
    view = np.column_stack([view[:, :2], np.full(50, 0.1), view[:, 2:], np.zeros(50)])
    before = view.copy()
    (out,) = preprocess_views([view], kind="dense")
    assert out.shape == (50, 4)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1.0)
    # Kept columns are, in order, the non-constant ones.
    np.testing.assert_allclose(out[:, 2], (view[:, 3] - view[:, 3].mean()) / view[:, 3].std())
    np.testing.assert_array_equal(view, before)
    # Sparse input is densified.
    (out_sparse,) = preprocess_views([sp.csr_matrix(view)], kind="dense")
    assert isinstance(out_sparse, np.ndarray)
    np.testing.assert_allclose(out_sparse, out)


def test_dense_all_constant_view(caplog):
    view = np.full((6, 3), 2.5)
    with caplog.at_level(logging.WARNING, logger="mvlearn_plus.preprocessing"):
        (out,) = preprocess_views([view], kind="dense")
    assert out.shape == (6, 1)
    assert np.all(out == 0.0)
    assert any("constant" in record.getMessage() for record in caplog.records)


def test_none_returns_float64_copy():
    view = np.arange(12, dtype=np.float64).reshape(4, 3)
    sparse_view = sp.csr_matrix(view)
    out_dense, out_sparse = preprocess_views([view, sparse_view], kind="none")
    np.testing.assert_array_equal(out_dense, view)
    assert out_dense is not view
    out_dense[0, 0] = -1.0
    assert view[0, 0] == 0.0
    assert sp.issparse(out_sparse)
    np.testing.assert_array_equal(out_sparse.toarray(), view)
    out_sparse.data[:] = 0.0
    assert sparse_view.sum() == view.sum()
    (out_int,) = preprocess_views([np.ones((3, 2), dtype=np.int32)], kind="none")
    assert out_int.dtype == np.float64


def test_infer_view_kind_synthetic():
    rng = np.random.default_rng(2)
    assert infer_view_kind(_counts()) == "text"
    assert infer_view_kind(_counts().toarray()) == "text"
    assert infer_view_kind(rng.normal(size=(20, 5))) == "dense"
    # Non-negative and dense (e.g. histograms).
    assert infer_view_kind(rng.random((20, 5))) == "dense"
    # Pixel-like: values in [0, 1] with 15 % non-zero, like USPS digits -> dense.
    pixels = rng.random((100, 256)) * (rng.random((100, 256)) < 0.15)
    assert infer_view_kind(pixels) == "dense"
    # Sparse but with a negative value -> dense.
    signed = _counts().toarray()
    signed[0, np.flatnonzero(signed[0])[0]] = -1.0
    assert infer_view_kind(signed) == "dense"
    assert infer_view_kind(sp.csr_matrix(signed)) == "dense"


def test_auto_and_per_view_kinds():
    rng = np.random.default_rng(3)
    text = _counts()
    dense = rng.normal(size=(30, 4))
    out_text, out_dense = preprocess_views([text, dense])
    assert sp.issparse(out_text)
    np.testing.assert_allclose(out_dense.std(axis=0), 1.0)
    out = preprocess_views([text, dense], kind=["none", "dense"])
    np.testing.assert_array_equal(out[0].toarray(), text.toarray())
    out = preprocess_views((text, dense), kind=("auto", "none"))
    np.testing.assert_array_equal(out[1], dense)


def test_kind_errors():
    views = [np.eye(3), np.eye(3)]
    with pytest.raises(ValueError, match="'tfidf'"):
        preprocess_views(views, kind="tfidf")
    with pytest.raises(ValueError, match="'zscore' for view 1"):
        preprocess_views(views, kind=["dense", "zscore"])
    with pytest.raises(ValueError, match="kind has 1 entries but there are 2 views"):
        preprocess_views(views, kind=["dense"])
    with pytest.raises(ValueError, match="Unknown preprocessing kind"):
        preprocess_views(views, kind=None)


def test_inputs_not_modified():
    rng = np.random.default_rng(4)
    views = [
        _counts(),
        _counts().toarray(),
        _counts().tocsc(),
        rng.normal(size=(30, 6)),
        sp.csr_matrix(rng.normal(size=(30, 6))),
    ]
    for kind in ("auto", "text", "dense", "none"):
        kinds = kind if kind != "text" else ["text", "text", "text", "none", "none"]
        before = [_snapshot(v) for v in views]
        preprocess_views(views, kind=kinds)
        for original, snapshot in zip(views, before):
            got = original.toarray() if sp.issparse(original) else original
            np.testing.assert_array_equal(got, snapshot)


def test_row_normalize():
    view = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    before = view.copy()
    out = row_normalize(view)
    np.testing.assert_allclose(out, [[0.6, 0.8, 0.0], [0, 0, 0], np.full(3, 1 / np.sqrt(3))])
    np.testing.assert_array_equal(view, before)
    for inp in (sp.csr_matrix(view), sp.csc_matrix(view)):
        out_sparse = row_normalize(inp)
        assert sp.issparse(out_sparse) and out_sparse.format == "csr"
        np.testing.assert_allclose(out_sparse.toarray(), out)
        np.testing.assert_array_equal(inp.toarray(), before)


# Expected kind of every view of the catalogued datasets (spec section 0.2).
SHIPPED_KINDS = {
    "3sources": "text",
    "bbcsport": "text",
    "reuters1200": "text",
    "movies": "text",
    "webkb": "text",
    "handwritten": "dense",
    "100leaves": "dense",
    "mnist4": "dense",
    "ccv": "dense",
    "prokaryotic": "dense",
    "proteinfold": "dense",
    "wikipedia": "dense",
    "synthetic3d": "dense",
    "mnist_usps": "dense",
}


@pytest.mark.parametrize("name", sorted(SHIPPED_KINDS))
def test_auto_kind_on_shipped_datasets(name):
    try:
        from mvlearn_plus.datasets import load_dataset
    except ImportError:
        pytest.skip("mvlearn_plus.datasets.load_dataset is not available yet")
    bunch = load_dataset(name)
    kinds = [infer_view_kind(view) for view in bunch.views]
    assert kinds == [SHIPPED_KINDS[name]] * len(kinds)
