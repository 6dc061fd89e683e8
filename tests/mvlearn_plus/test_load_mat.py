"""Tests of load_mat on the .mat layouts found in published multi-view data (files written here)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io as sio
import scipy.sparse as sp

from mvlearn_plus.datasets import load_mat

N = 10


@pytest.fixture
def views():
    rng = np.random.default_rng(0)
    return [rng.random((N, 4)), rng.integers(0, 5, size=(N, 3)).astype(np.uint8)]


@pytest.fixture
def labels():
    # 1-based, MATLAB style; the loader must return these minus one.
    return np.arange(N) % 3 + 1


def _cell(items, shape):
    cell = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        cell.flat[i] = item
    return cell


def _check(data, views, target):
    assert len(data.views) == len(views)
    for got, want in zip(data.views, views):
        assert got.dtype == np.float64
        got = got.toarray() if sp.issparse(got) else got
        want = want.toarray() if sp.issparse(want) else np.asarray(want)
        np.testing.assert_array_equal(got, want.astype(np.float64))
    assert data.target.dtype == np.int64
    np.testing.assert_array_equal(data.target, target)
    assert data.n_clusters == np.unique(target).size
    assert data.view_names == [f"view{i}" for i in range(len(views))]
    assert data.kind in ("text", "dense")


# ------------------------------------------------------------------------------------------
# MATLAB v5
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["row", "column"])
def test_v5_cell_array(tmp_path, views, labels, shape):
    cell = _cell(views, (1, 2) if shape == "row" else (2, 1))
    path = tmp_path / "cell.mat"
    sio.savemat(path, {"X": cell, "y": labels.reshape(-1, 1)})
    data = load_mat(path)
    _check(data, views, labels - 1)
    assert data.name == "cell"
    assert str(path) in data.DESCR and "X" in data.DESCR


def test_v5_separate_variables_row_label_zero_based(tmp_path, views):
    target = np.arange(N, dtype=np.int64) % 4
    path = tmp_path / "sep.mat"
    sio.savemat(path, {"X1": views[0], "X2": views[1], "Y": target.reshape(1, -1)})
    _check(load_mat(path), views, target)


@pytest.mark.parametrize("prefix", ["x", "view", "X_"])
def test_v5_numbered_variable_spellings(tmp_path, views, labels, prefix):
    path = tmp_path / "numbered.mat"
    # Numeric order, not string order: 10 after 2.
    extra = np.ones((N, 2))
    sio.savemat(
        path,
        {f"{prefix}10": extra, f"{prefix}1": views[0], f"{prefix}2": views[1], "y": labels},
    )
    _check(load_mat(path), [views[0], views[1], extra], labels - 1)


def test_v5_fea_gnd(tmp_path, views, labels):
    path = tmp_path / "fea.mat"
    sio.savemat(path, {"fea": _cell(views, (1, 2)), "gnd": labels.reshape(-1, 1)})
    _check(load_mat(path), views, labels - 1)


def test_v5_single_matrix_is_one_view(tmp_path, views, labels):
    path = tmp_path / "single.mat"
    sio.savemat(path, {"fea": views[0], "gnd": labels.reshape(-1, 1)})
    _check(load_mat(path), views[:1], labels - 1)


def test_v5_data_truth(tmp_path, views, labels):
    path = tmp_path / "data.mat"
    sio.savemat(path, {"data": _cell(views, (1, 2)), "truth": labels.reshape(-1, 1)})
    _check(load_mat(path), views, labels - 1)


def test_v5_views_stored_d_by_n(tmp_path, views, labels):
    square = np.arange(N * N, dtype=float).reshape(N, N)
    path = tmp_path / "dn.mat"
    stored = [views[0].T, views[1].T, square]
    sio.savemat(path, {"X": _cell(stored, (1, 3)), "y": labels.reshape(-1, 1)})
    data = load_mat(path)
    # A view whose both dimensions equal n is kept as stored.
    _check(data, [views[0], views[1], square], labels - 1)
    assert "transposed" in data.DESCR
    for view in data.views:
        assert view.flags["C_CONTIGUOUS"]


def test_v5_sparse_views(tmp_path, labels):
    rng = np.random.default_rng(1)
    sparse_views = [sp.random(N, 7, density=0.3, format="csc", random_state=rng) for _ in range(2)]
    path = tmp_path / "sparse.mat"
    sio.savemat(path, {"X": _cell(sparse_views, (2, 1)), "Y": labels.reshape(-1, 1)})
    data = load_mat(path)
    _check(data, sparse_views, labels - 1)
    assert all(sp.issparse(v) and v.format == "csr" for v in data.views)


def test_v5_sparse_views_stored_d_by_n(tmp_path, labels):
    view = sp.random(N, 6, density=0.4, format="csc", random_state=2)
    path = tmp_path / "sparse_dn.mat"
    sio.savemat(path, {"X": _cell([view.T.tocsc()], (1, 1)), "y": labels})
    data = load_mat(path)
    assert data.views[0].format == "csr"
    np.testing.assert_array_equal(data.views[0].toarray(), view.toarray())


@pytest.mark.parametrize("layout", ["samples x classes", "classes x samples"])
def test_v5_one_hot_labels(tmp_path, views, layout):
    target = np.array([2, 0, 1, 1, 0, 2, 2, 1, 0, 0])
    one_hot = np.eye(3)[target]
    path = tmp_path / "onehot.mat"
    sio.savemat(
        path,
        {
            "X1": views[0],
            "X2": views[1],
            "label": one_hot if layout == "samples x classes" else one_hot.T,
        },
    )
    data = load_mat(path)
    _check(data, views, target)
    assert "one-hot" in data.DESCR


def test_v5_float_labels(tmp_path, views):
    stored = np.array([2.0, 5.0, 7.0, 5.0, 2.0, 7.0, 7.0, 2.0, 5.0, 2.0])
    path = tmp_path / "float.mat"
    sio.savemat(path, {"X": _cell(views, (1, 2)), "labels": stored.reshape(-1, 1)})
    _check(load_mat(path), views, np.array([0, 1, 2, 1, 0, 2, 2, 0, 1, 0]))


def test_v5_arbitrary_integer_labels(tmp_path, views):
    stored = np.array([-1, 10, 3, 3, -1, 10, 10, 3, -1, -1])
    path = tmp_path / "arbitrary.mat"
    sio.savemat(path, {"X": _cell(views, (1, 2)), "gt": stored})
    _check(load_mat(path), views, np.array([0, 2, 1, 1, 0, 2, 2, 1, 0, 0]))


def test_v5_text_labels(tmp_path, views):
    names = np.array(["cat", "dog", "cat", "emu", "dog", "cat", "emu", "dog", "cat", "cat"], object)
    path = tmp_path / "text_labels.mat"
    sio.savemat(path, {"X": _cell(views, (1, 2)), "y": names.reshape(-1, 1)})
    _check(load_mat(path), views, np.array([0, 1, 0, 2, 1, 0, 2, 1, 0, 0]))


def test_v5_extra_non_numeric_variables_are_ignored(tmp_path, views, labels):
    path = tmp_path / "extra.mat"
    sio.savemat(
        path,
        {
            "X": _cell(views, (2, 1)),
            "y": labels.reshape(-1, 1),
            "class_meaning": np.array(["art", "biology", "geography"], dtype=object).reshape(-1, 1),
            "title": "a string",
            "opts": {"seed": 3, "method": "kmeans", "inner": {"a": np.arange(3)}},
            "rand_num_train": np.ones((4, 10), dtype=np.uint16),
        },
    )
    data = load_mat(path)
    _check(data, views, labels - 1)
    for name in ("class_meaning", "title", "opts", "rand_num_train"):
        assert name in data.DESCR  # listed as ignored


def test_v5_compressed_and_v4(tmp_path, views, labels):
    compressed = tmp_path / "compressed.mat"
    sio.savemat(compressed, {"X": _cell(views, (1, 2)), "y": labels}, do_compression=True)
    _check(load_mat(compressed), views, labels - 1)

    v4 = tmp_path / "v4.mat"
    v4_vars = {"X1": views[0], "X2": views[1].astype(float), "y": labels.astype(float)}
    sio.savemat(v4, v4_vars, format="4")
    _check(load_mat(v4), views, labels - 1)


def test_name_argument_and_path_types(tmp_path, views, labels):
    path = tmp_path / "named.mat"
    sio.savemat(path, {"X": _cell(views, (1, 2)), "y": labels})
    assert load_mat(str(path), name="custom").name == "custom"
    assert load_mat(path).filename == str(path)


# ------------------------------------------------------------------------------------------
# MATLAB v7.3 (HDF5), written in MATLAB's own layout
# ------------------------------------------------------------------------------------------


def _matlab_header(path: Path) -> None:
    # MATLAB v7.3 files start with a 512-byte text header in the HDF5 user block.
    text = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, "
        b"Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    )
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header.ljust(512, b"\x00"))


def _h5_dense(group, name, array, matlab_class="double"):
    # MATLAB is column-major: an (n, d) array appears to HDF5 readers as (d, n).
    dset = group.create_dataset(name, data=np.asarray(array).T)
    dset.attrs["MATLAB_class"] = np.bytes_(matlab_class)
    return dset


def _h5_sparse(group, name, matrix):
    csc = sp.csc_matrix(matrix)
    csc.sort_indices()
    g = group.create_group(name)
    g.create_dataset("data", data=csc.data.astype(np.float64))
    g.create_dataset("ir", data=csc.indices.astype(np.uint64))
    g.create_dataset("jc", data=csc.indptr.astype(np.uint64))
    g.attrs["MATLAB_class"] = np.bytes_("double")
    g.attrs["MATLAB_sparse"] = np.uint64(csc.shape[0])
    return g


def _h5_char(group, name, text):
    dset = group.create_dataset(name, data=np.array([[ord(c)] for c in text], dtype=np.uint16))
    dset.attrs["MATLAB_class"] = np.bytes_("char")
    dset.attrs["MATLAB_int_decode"] = np.int32(2)
    return dset


def _write_v73(path, dense_view, sparse_view, labels, cell_shape=(1, 2)):
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        items = [_h5_dense(refs, "a", dense_view), _h5_sparse(refs, "b", sparse_view)]
        # A MATLAB cell(r, c) is a (c, r) dataset of object references into '#refs#'.
        ref_array = np.empty(cell_shape[::-1], dtype=h5py.ref_dtype)
        for i, item in enumerate(items):
            ref_array.T.flat[i] = item.ref
        cell = f.create_dataset("X", data=ref_array, dtype=h5py.ref_dtype)
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        _h5_dense(f, "y", np.asarray(labels, dtype=float).reshape(-1, 1))
        # Non-numeric extras that must be skipped: a string, a cell of strings and a struct.
        _h5_char(f, "title", "toy data")
        names = [_h5_char(refs, f"s{i}", s) for i, s in enumerate(["first", "second"])]
        name_refs = np.empty((1, 2), dtype=h5py.ref_dtype)
        for i, item in enumerate(names):
            name_refs.flat[i] = item.ref
        f.create_dataset("view_meaning", data=name_refs, dtype=h5py.ref_dtype).attrs[
            "MATLAB_class"
        ] = np.bytes_("cell")
        opts = f.create_group("opts")
        opts.attrs["MATLAB_class"] = np.bytes_("struct")
        _h5_dense(opts, "seed", np.array([[3.0]]))
    _matlab_header(path)


@pytest.mark.parametrize("cell_shape", [(1, 2), (2, 1)])
def test_v73_matlab_layout(tmp_path, labels, cell_shape):
    rng = np.random.default_rng(3)
    dense_view = rng.random((N, 5))
    sparse_view = sp.random(N, 8, density=0.3, format="csc", random_state=rng)
    path = tmp_path / "v73.mat"
    _write_v73(path, dense_view, sparse_view, labels, cell_shape)
    with pytest.raises(NotImplementedError):
        sio.loadmat(path)  # really a v7.3 file, which scipy cannot read

    data = load_mat(path)
    _check(data, [dense_view, sparse_view], labels - 1)
    assert isinstance(data.views[0], np.ndarray)
    assert sp.issparse(data.views[1]) and data.views[1].format == "csr"
    assert "v7.3" in data.DESCR
    for name in ("title", "view_meaning", "opts"):
        assert name in data.DESCR


def test_v73_plain_hdf5_separate_variables(tmp_path, views):
    # Written without MATLAB's user block, views stored d x n in MATLAB terms, row label.
    target = np.arange(N) % 2
    path = tmp_path / "plain.mat"
    with h5py.File(path, "w") as f:
        _h5_dense(f, "X1", views[0].T)
        _h5_dense(f, "X2", views[1].T, "uint8")
        _h5_dense(f, "Y", target.reshape(1, -1).astype(np.int64), "int64")
    _check(load_mat(path), views, target)


def test_v73_one_hot_logical_labels(tmp_path, views):
    target = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    path = tmp_path / "onehot73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        _h5_dense(f, "X1", views[0])
        _h5_dense(f, "X2", views[1])
        _h5_dense(f, "gnd", np.eye(3, dtype=np.uint8)[target], "logical")
    _matlab_header(path)
    _check(load_mat(path), views, target)


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.mat"):
        load_mat(tmp_path / "absent.mat")


def test_uninterpretable_file_lists_the_variables(tmp_path):
    path = tmp_path / "strings.mat"
    sio.savemat(path, {"comment": "nothing numeric here"})
    with pytest.raises(ValueError) as info:
        load_mat(path)
    message = str(info.value)
    assert "comment" in message and "char" in message
    assert "Looking for" in message and "X1" in message


def test_labels_but_no_views(tmp_path, labels):
    path = tmp_path / "labels_only.mat"
    sio.savemat(path, {"y": labels, "notes": np.array(["a", "b"], dtype=object)})
    with pytest.raises(ValueError, match="no views found.*notes"):
        load_mat(path)


def test_view_that_does_not_fit_the_labels(tmp_path, labels):
    path = tmp_path / "mismatch.mat"
    sio.savemat(path, {"X1": np.ones((N + 1, 3)), "y": labels})
    with pytest.raises(ValueError, match="no dimension equal to the number of labels"):
        load_mat(path)


def test_label_matrix_that_is_not_one_hot(tmp_path, views):
    path = tmp_path / "badlabel.mat"
    sio.savemat(path, {"X": _cell(views, (1, 2)), "gt": np.ones((N, 2))})
    with pytest.raises(ValueError, match="neither a vector nor a one-hot"):
        load_mat(path)


def test_nan_labels(tmp_path, views):
    stored = np.arange(N, dtype=float)
    stored[3] = np.nan
    path = tmp_path / "nan.mat"
    sio.savemat(path, {"X": _cell(views, (1, 2)), "y": stored})
    with pytest.raises(ValueError, match="NaN"):
        load_mat(path)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9])
def test_truncated_v5_file(tmp_path, views, labels, fraction):
    path = tmp_path / "truncated.mat"
    sio.savemat(path, {"y": labels, "X": _cell(views, (1, 2))})
    payload = path.read_bytes()
    path.write_bytes(payload[: int(len(payload) * fraction)])
    with pytest.raises(ValueError, match="truncated.mat"):
        load_mat(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_v73_file(tmp_path, labels, fraction):
    rng = np.random.default_rng(4)
    path = tmp_path / "truncated73.mat"
    _write_v73(path, rng.random((N, 50)), sp.random(N, 40, density=0.5, random_state=rng), labels)
    payload = path.read_bytes()
    path.write_bytes(payload[: int(len(payload) * fraction)])
    with pytest.raises(ValueError, match="truncated73.mat"):
        load_mat(path)


@pytest.mark.parametrize("content", [b"", b"this is not a MAT-file at all\n" * 10])
def test_not_a_mat_file(tmp_path, content):
    path = tmp_path / "junk.mat"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="junk.mat"):
        load_mat(path)
