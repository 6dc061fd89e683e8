"""Tests of the shipped data sets and of name / data-home resolution (mvlearn_plus.datasets)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import scipy.sparse as sp

from mvlearn_plus.datasets import get_data_home, list_datasets, load_dataset
from mvlearn_plus.datasets import _base

# The table of the data README (/work/shared/data/README.md), written out independently of
# the package's own catalogue: name -> (n, per-view dims, classes, stored sparse, kind).
EXPECTED = {
    "3sources": (169, (3560, 3631, 3068), 6, False, "text"),
    "bbcsport": (544, (3183, 3203), 5, True, "text"),
    "reuters1200": (1200, (2000,) * 5, 6, False, "text"),
    "handwritten": (2000, (216, 76, 64, 6, 240, 47), 10, False, "dense"),
    "100leaves": (1600, (64, 64, 64), 100, False, "dense"),
    "webkb": (203, (1703, 230, 230), 4, False, "text"),
    "mnist_usps": (5000, (784, 784), 10, False, "dense"),
    "movies": (617, (1878, 1398), 17, False, "text"),
    "prokaryotic": (551, (393, 3, 438), 4, False, "dense"),
    "proteinfold": (694, (27,) * 12, 27, False, "dense"),
    "wikipedia": (2866, (128, 10), 10, False, "dense"),
    "mnist4": (4000, (30, 9, 30), 4, False, "dense"),
    "ccv": (6773, (20, 20, 20), 20, False, "dense"),
    "synthetic3d": (600, (3, 3, 3), 3, False, "dense"),
}

# The shipped files must stay byte-for-byte as published (never re-saved).
SHA256 = {
    "100Leaves.mat": "4af6d9f6588a720df763580d273dc08014476ac5f64570b0bada8b63b9952f45",
    "3Sources.mat": "8a94f0e554c5782bc87561314f1bad8ca206910125734f4dbe2492956528c9ae",
    "CCV.mat": "1a18848a34c5d6d6f054c24cfbda7a9936ff1ca5060e2b9cc7022a9a8c6a415a",
    "Handwritten.mat": "6092a69891afa22785bffd5a4348f52d49a764aa5d40751ec2c4dc0f6ed48a44",
    "MNIST-4.mat": "7dbb45040d6ecd41f68f6076efeabe78b466721894dde382b9a258ce10b22502",
    "MNIST_USPS.mat": "0130ae9ce7d395543df841d25e84d99354dcb77993006d390d3c42d4c2e3f056",
    "Movies.mat": "7922e27da06361c0d74b5dd6477e6485d1f73a96cf0164e280e5b38864ffcbad",
    "Prokaryotic.mat": "20471598a8c819fb35e94f102cda4300a3b4f2cd185d3cbe0ea06e0349a7ed7c",
    "ProteinFold.mat": "07522212f7fab626684ab07b030b47902a5ae75d1b4215ec947e919dcfe05dcf",
    "Reuters-1200.mat": "cf549b72a66d7418a639a940899993c052bab9ec868fd493451cf85cd0d81d14",
    "Wikipedia.mat": "6eed8527704611dff921243d86dbec5621312b8c6636086ae3677508b5d3cb03",
    "bbcsport_2view.mat": "b0a09b60a3a81ad430ff49b2dfcc2abbd5c8969b33444cc05ee3f82e2f126fc7",
    "synthetic3d.mat": "f5ebb44be9d98550877622b2f6eb4b70ff3dc9a1de3c3797bf3fad9ebb40ba9b",
    "webkb.mat": "ea1ac7954dd74ba7be9a7786666db26a9f34f84dce8f0bf267e1e952d28559c6",
}

REPO_DATA = Path(__file__).resolve().parents[2] / "datasets"


@pytest.fixture(autouse=True)
def _no_env_data_home(monkeypatch):
    # A data home set in the developer's shell must not leak into these tests.
    monkeypatch.delenv(_base.DATA_HOME_ENV, raising=False)


def _write_user_file(path: Path, n: int = 12) -> None:
    rng = np.random.default_rng(0)
    views = np.empty((1, 2), dtype=object)
    views[0, 0] = rng.random((n, 4))
    views[0, 1] = rng.random((n, 3))
    sio.savemat(path, {"X": views, "y": (np.arange(n) % 3 + 1).reshape(-1, 1)})


# ------------------------------------------------------------------------------------------
# Shipped data
# ------------------------------------------------------------------------------------------


def test_list_datasets_is_exactly_the_shipped_set():
    assert list_datasets(kind="features") == sorted(EXPECTED)
    assert list_datasets() == sorted([*EXPECTED, "acm", "cora", "citeseer"])


@pytest.mark.parametrize("filename", sorted(SHA256))
def test_shipped_file_is_unmodified(filename):
    digest = hashlib.sha256((REPO_DATA / "clustering" / filename).read_bytes()).hexdigest()
    assert digest == SHA256[filename]


def test_no_unexpected_files_in_data_folder():
    assert sorted(p.name for p in (REPO_DATA / "clustering").glob("*.mat")) == sorted(SHA256)
    assert not (REPO_DATA / "__init__.py").exists()
    for name in EXPECTED:
        assert (REPO_DATA / "clustering" / f"{name}.md").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_dataset_matches_the_data_readme(name):
    n, dims, n_classes, sparse, kind = EXPECTED[name]
    data = load_dataset(name)

    assert data.name == name
    assert len(data.views) == len(dims)
    assert tuple(v.shape[1] for v in data.views) == dims
    for view in data.views:
        assert view.shape[0] == n
        assert view.dtype == np.float64
        if sparse:
            assert sp.issparse(view) and view.format == "csr"
            assert np.all(np.isfinite(view.data))
        else:
            assert isinstance(view, np.ndarray) and not sp.issparse(view)
            assert np.all(np.isfinite(view))

    assert data.target.dtype == np.int64
    assert data.target.shape == (n,)
    # 0-based and contiguous: every class 0..k-1 is present.
    np.testing.assert_array_equal(np.unique(data.target), np.arange(n_classes))
    assert data.n_clusters == n_classes

    assert data.kind == kind
    assert len(data.view_names) == len(dims)
    assert all(isinstance(v, str) and v for v in data.view_names)
    assert len(set(data.view_names)) == len(dims)
    # DESCR is the dataset card.
    assert f"`{name}`" in data.DESCR
    assert "research use" in data.DESCR


def test_known_view_names():
    assert load_dataset("handwritten").view_names == ["fac", "fou", "kar", "mor", "pix", "zer"]
    assert load_dataset("mnist_usps").view_names == ["mnist", "usps"]
    assert load_dataset("reuters1200").view_names == ["en", "fr", "de", "it", "es"]
    assert load_dataset("synthetic3d").view_names == ["view0", "view1", "view2"]


def test_values_are_as_stored():
    # Labels shift to 0-based, values are not rescaled.
    raw = sio.loadmat(REPO_DATA / "clustering" / "Handwritten.mat")
    data = load_dataset("handwritten")
    for stored, view in zip(raw["X"].ravel(), data.views):
        np.testing.assert_array_equal(view, stored.astype(np.float64))
    np.testing.assert_array_equal(data.target, raw["y"].ravel().astype(np.int64) - 1)

    raw = sio.loadmat(REPO_DATA / "clustering" / "MNIST_USPS.mat")
    np.testing.assert_array_equal(load_dataset("mnist_usps").target, raw["Y"].ravel())


# ------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, name",
    [
        ("MNIST-USPS", "mnist_usps"),
        ("mnist_usps", "mnist_usps"),
        ("Handwritten", "handwritten"),
        ("3Sources", "3sources"),
        ("Reuters-1200", "reuters1200"),
        ("reuters_1200", "reuters1200"),
        ("BBCSport", "bbcsport"),
        ("bbcsport_2view", "bbcsport"),
        ("MNIST-4", "mnist4"),
        ("Synthetic_3D", "synthetic3d"),
        ("webkb.mat", "webkb"),
    ],
)
def test_name_normalisation(alias, name):
    assert load_dataset(alias).name == name


def test_unknown_name_lists_the_available_names():
    with pytest.raises(ValueError, match="Unknown data set 'nope'") as info:
        load_dataset("nope")
    for name in EXPECTED:
        assert name in str(info.value)


def test_name_must_be_a_string():
    with pytest.raises(TypeError):
        load_dataset(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Data home
# ------------------------------------------------------------------------------------------


def test_get_data_home(monkeypatch, tmp_path):
    assert get_data_home() is None
    monkeypatch.setenv(_base.DATA_HOME_ENV, str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    # The argument wins over the environment.
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setenv(_base.DATA_HOME_ENV, "")
    assert get_data_home() is None


def test_data_home_argument(tmp_path):
    _write_user_file(tmp_path / "My-Data.mat")
    (tmp_path / "notes.txt").write_text("not a data set")

    assert list_datasets(data_home=tmp_path, kind="features") == sorted([*EXPECTED, "My-Data"])
    data = load_dataset("my_data", data_home=tmp_path)
    assert data.name == "My-Data"
    assert [v.shape for v in data.views] == [(12, 4), (12, 3)]
    np.testing.assert_array_equal(data.target, np.arange(12) % 3)
    assert "My-Data.mat" in data.DESCR
    # Without the data home the name is unknown.
    with pytest.raises(ValueError, match="no data home"):
        load_dataset("my_data")


def test_data_home_environment_variable(monkeypatch, tmp_path):
    _write_user_file(tmp_path / "mine.mat", n=9)
    monkeypatch.setenv(_base.DATA_HOME_ENV, str(tmp_path))
    assert "mine" in list_datasets()
    assert load_dataset("MINE").target.shape == (9,)


def test_missing_data_home_is_tolerated(tmp_path):
    assert list_datasets(data_home=tmp_path / "absent", kind="features") == sorted(EXPECTED)
    with pytest.raises(ValueError, match="absent"):
        load_dataset("mine", data_home=tmp_path / "absent")


def test_shipped_names_win_over_user_files(tmp_path):
    _write_user_file(tmp_path / "webkb.mat")
    assert load_dataset("webkb", data_home=tmp_path).target.shape == (203,)


# ------------------------------------------------------------------------------------------
# Locating the shipped files
# ------------------------------------------------------------------------------------------


def test_missing_shipped_file(monkeypatch, tmp_path):
    monkeypatch.setattr(_base, "_shipped_roots", lambda: [tmp_path / "nowhere"])
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("synthetic3d")
    message = str(info.value)
    assert "synthetic3d.mat" in message
    assert str(tmp_path / "nowhere") in message
    assert "MVLEARN_PLUS_DATA" in message


def test_missing_shipped_file_found_in_data_home(monkeypatch, tmp_path):
    monkeypatch.setattr(_base, "_shipped_roots", lambda: [tmp_path / "nowhere"])
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_DATA / "clustering" / "synthetic3d.mat", home)
    data = load_dataset("synthetic3d", data_home=home)
    assert [v.shape for v in data.views] == [(600, 3)] * 3
    assert data.kind == "dense"


def test_wheel_layout_is_found(monkeypatch, tmp_path):
    # An installed wheel has no top-level datasets/ but carries mvlearn_plus/_datasets.
    package = tmp_path / "site-packages" / "mvlearn_plus"
    (package / "_datasets" / "clustering").mkdir(parents=True)
    for name in ("synthetic3d.mat", "synthetic3d.md"):
        shutil.copy(REPO_DATA / "clustering" / name, package / "_datasets" / "clustering")
    monkeypatch.setattr(_base, "_package_dir", lambda: package)

    data = load_dataset("synthetic3d")
    assert Path(data.filename).parent == package / "_datasets" / "clustering"
    assert data.DESCR == (REPO_DATA / "clustering" / "synthetic3d.md").read_text(encoding="utf-8")


def test_unrelated_top_level_datasets_folder_is_skipped(monkeypatch, tmp_path):
    # e.g. Hugging Face's `datasets` package next to ours in site-packages.
    site = tmp_path / "site-packages"
    (site / "datasets").mkdir(parents=True)
    (site / "mvlearn_plus" / "_datasets" / "clustering").mkdir(parents=True)
    monkeypatch.setattr(_base, "_package_dir", lambda: site / "mvlearn_plus")
    assert _base._shipped_root() == site / "mvlearn_plus" / "_datasets"


def test_import_is_light():
    code = (
        "import sys, mvlearn_plus.datasets\n"
        "heavy = [m for m in ('h5py', 'torch', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
