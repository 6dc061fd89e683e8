"""Tests of the catalogued data sets, the data home and the download cache (mvlearn_plus.datasets).

The data sets are read from the data home the test command sets up (``$MVLEARN_PLUS_DATA``:
``../shared/data`` on development machines and CI, else ``~/mvlearn_plus_data``, filled by
downloads). Downloads in these tests use fake downloaders: there is no network here.
"""

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

from mvlearn_plus.datasets import (
    ChecksumError,
    DataNotFoundError,
    clear_data_home,
    get_data_home,
    list_datasets,
    load_dataset,
)
from mvlearn_plus.datasets import _base, _fetch
from mvlearn_plus.datasets._graphs import GRAPH_DATASETS
from mvlearn_plus.datasets._registry import SHIPPED

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

# The published files, byte for byte (never re-saved): the catalogue must pin these.
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

CARDS = Path(__file__).resolve().parents[2] / "datasets"
# The data home of the test run, read before any test changes the environment.
DATA_HOME = get_data_home()


def _published(name: str) -> Path:
    """Path of a catalogued data set's file in the data home (downloaded if it must be)."""
    return _fetch.fetch(SHIPPED[name].remote, data_home=DATA_HOME)


class _CopyingDownloader:
    """Stands in for the HTTP downloader: 'downloads' by copying the data home's file."""

    def __init__(self, source: Path, fail_after: int | None = None):
        self.source, self.fail_after, self.calls = source, fail_after, 0

    def __call__(self, url, output_file, pooch):
        self.calls += 1
        data = self.source.read_bytes()
        with open(output_file, "wb") as out:
            if self.fail_after is not None:
                out.write(data[: self.fail_after])
                out.flush()
                # What requests raises when a connection drops mid-stream.
                import requests

                raise requests.exceptions.ConnectionError(
                    "connection reset by peer (simulated, midway)")
            out.write(data)


def _write_user_file(path: Path, n: int = 12) -> None:
    rng = np.random.default_rng(0)
    views = np.empty((1, 2), dtype=object)
    views[0, 0] = rng.random((n, 4))
    views[0, 1] = rng.random((n, 3))
    sio.savemat(path, {"X": views, "y": (np.arange(n) % 3 + 1).reshape(-1, 1)})


# ------------------------------------------------------------------------------------------
# Catalogued data
# ------------------------------------------------------------------------------------------


def test_list_datasets_is_exactly_the_catalogued_set():
    assert list_datasets(kind="features") == sorted(EXPECTED)
    assert list_datasets() == sorted([*EXPECTED, "acm", "cora", "citeseer"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_catalogue_pins_the_published_file(name):
    remote = SHIPPED[name].remote
    filename = Path(remote.path).name
    assert remote.sha256 == SHA256[filename]
    assert remote.path == f"clustering/{filename}"
    assert remote.url.startswith("https://github.com/") and remote.url.endswith(filename)
    path = _published(name)
    assert path.stat().st_size == remote.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[filename]


def test_every_catalogued_data_set_has_a_card_with_its_download():
    assert not (CARDS / "__init__.py").exists()
    for info in SHIPPED.values():
        card = (CARDS / info.card).read_text(encoding="utf-8")
        for text in (info.remote.url, info.remote.sha256, f"{info.remote.size:,}", "Cite"):
            assert text in card, (info.name, text)
    for info in GRAPH_DATASETS.values():
        card = (CARDS / info.card).read_text(encoding="utf-8")
        for remote in info.files:
            for text in (remote.url, remote.sha256):
                assert text in card, (info.name, text)
        assert "Cite" in card


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
    raw = sio.loadmat(_published("handwritten"))
    data = load_dataset("handwritten")
    for stored, view in zip(raw["X"].ravel(), data.views):
        np.testing.assert_array_equal(view, stored.astype(np.float64))
    np.testing.assert_array_equal(data.target, raw["y"].ravel().astype(np.int64) - 1)

    raw = sio.loadmat(_published("mnist_usps"))
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
    monkeypatch.delenv(_fetch.DATA_HOME_ENV, raising=False)
    assert get_data_home() == Path("~/mvlearn_plus_data").expanduser()
    monkeypatch.setenv(_fetch.DATA_HOME_ENV, str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    # The argument wins over the environment.
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setenv(_fetch.DATA_HOME_ENV, "")
    assert get_data_home() == Path("~/mvlearn_plus_data").expanduser()
    assert not (tmp_path / "env").exists()  # created only when something is downloaded


def test_data_home_argument(tmp_path):
    _write_user_file(tmp_path / "My-Data.mat")
    (tmp_path / "notes.txt").write_text("not a data set")

    assert list_datasets(data_home=tmp_path, kind="features") == sorted([*EXPECTED, "My-Data"])
    data = load_dataset("my_data", data_home=tmp_path)
    assert data.name == "My-Data"
    assert [v.shape for v in data.views] == [(12, 4), (12, 3)]
    np.testing.assert_array_equal(data.target, np.arange(12) % 3)
    assert "My-Data.mat" in data.DESCR
    # Outside that data home the name is unknown.
    with pytest.raises(ValueError, match="Unknown data set 'my_data'"):
        load_dataset("my_data", data_home=tmp_path / "elsewhere")


def test_data_home_environment_variable(monkeypatch, tmp_path):
    _write_user_file(tmp_path / "mine.mat", n=9)
    monkeypatch.setenv(_fetch.DATA_HOME_ENV, str(tmp_path))
    assert "mine" in list_datasets()
    assert load_dataset("MINE").target.shape == (9,)


def test_missing_data_home_is_tolerated(tmp_path):
    assert list_datasets(data_home=tmp_path / "absent", kind="features") == sorted(EXPECTED)
    with pytest.raises(ValueError, match="absent"):
        load_dataset("mine", data_home=tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_catalogued_names_win_over_user_files(tmp_path):
    _write_user_file(tmp_path / "webkb.mat")
    (tmp_path / "clustering").mkdir()
    shutil.copy(_published("webkb"), tmp_path / "clustering")
    assert load_dataset("webkb", data_home=tmp_path).target.shape == (203,)


def test_list_datasets_says_what_is_cached_and_what_a_download_takes(tmp_path):
    (tmp_path / "clustering").mkdir()
    shutil.copy(_published("webkb"), tmp_path / "clustering")
    _write_user_file(tmp_path / "mine.mat")
    rows = {row["name"]: row for row in list_datasets(tmp_path, details=True)}
    assert set(rows) == {*EXPECTED, "acm", "cora", "citeseer", "mine"}
    assert rows["webkb"]["cached"] and rows["webkb"]["download_size"] == 0
    assert rows["webkb"]["size"] == SHIPPED["webkb"].remote.size
    assert not rows["handwritten"]["cached"]
    assert rows["handwritten"]["download_size"] == SHIPPED["handwritten"].remote.size
    assert rows["cora"]["download_size"] == sum(f.size for f in GRAPH_DATASETS["cora"].files)
    assert "kimiyoung/planetoid@" in rows["cora"]["source"]
    assert rows["mine"]["kind"] == "user" and rows["mine"]["cached"]
    assert [row["name"] for row in list_datasets(tmp_path, kind="graph", details=True)] == [
        "acm", "citeseer", "cora"]
    # Everything the tests read is in the test run's data home.
    assert all(row["cached"] for row in list_datasets(DATA_HOME, details=True))


# ------------------------------------------------------------------------------------------
# Downloading and the cache
# ------------------------------------------------------------------------------------------


def test_missing_file_with_downloads_disabled_names_url_and_data_home(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("synthetic3d", data_home=tmp_path, download_if_missing=False)
    message = str(info.value)
    assert "'synthetic3d' is not in the data home" in message
    assert "could not be downloaded (downloading is disabled" in message
    assert SHIPPED["synthetic3d"].remote.url in message
    assert str(tmp_path / "clustering" / "synthetic3d.mat") in message
    assert "MVLEARN_PLUS_DATA" in message
    assert isinstance(info.value, FileNotFoundError)
    assert list(tmp_path.iterdir()) == []


def test_download_lands_in_the_data_home_and_is_then_cached(monkeypatch, tmp_path):
    downloader = _CopyingDownloader(_published("synthetic3d"))
    monkeypatch.setattr(_fetch, "_downloader", lambda progress: downloader)
    data = load_dataset("synthetic3d", data_home=tmp_path)
    assert [v.shape for v in data.views] == [(600, 3)] * 3
    assert Path(data.filename) == tmp_path / "clustering" / "synthetic3d.mat"
    assert data.DESCR == (CARDS / "clustering" / "synthetic3d.md").read_text(encoding="utf-8")
    load_dataset("synthetic3d", data_home=tmp_path)
    assert downloader.calls == 1  # the second load reads the cache
    assert sorted(p.name for p in (tmp_path / "clustering").iterdir()) == ["synthetic3d.mat"]


def test_interrupted_download_leaves_no_file(monkeypatch, tmp_path):
    downloader = _CopyingDownloader(_published("synthetic3d"), fail_after=1000)
    monkeypatch.setattr(_fetch, "_downloader", lambda progress: downloader)
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # pooch waits between retries
    with pytest.raises(DataNotFoundError, match="connection reset by peer") as info:
        load_dataset("synthetic3d", data_home=tmp_path)
    assert "could not be downloaded (ConnectionError" in str(info.value)
    assert downloader.calls == 1 + _fetch.DOWNLOAD_RETRIES
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_corrupted_download_is_not_kept(monkeypatch, tmp_path):
    wrong = tmp_path / "wrong.mat"
    shutil.copy(_published("webkb"), wrong)
    monkeypatch.setattr(_fetch, "_downloader", lambda progress: _CopyingDownloader(wrong))
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    home = tmp_path / "home"
    with pytest.raises(ChecksumError) as info:
        load_dataset("synthetic3d", data_home=home)
    message = str(info.value)
    assert SHIPPED["synthetic3d"].remote.sha256 in message
    assert SHIPPED["webkb"].remote.sha256 in message  # the hash of what arrived
    assert [p for p in home.rglob("*") if p.is_file()] == []


def test_corrupted_cached_file_is_refused_with_both_hashes(tmp_path):
    (tmp_path / "clustering").mkdir()
    cached = tmp_path / "clustering" / "webkb.mat"
    data = bytearray(_published("webkb").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed
    cached.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        load_dataset("webkb", data_home=tmp_path, download_if_missing=False)
    message = str(info.value)
    assert hashlib.sha256(bytes(data)).hexdigest() in message
    assert SHIPPED["webkb"].remote.sha256 in message
    assert "not used" in message
    assert isinstance(info.value, ValueError)
    assert cached.read_bytes() == bytes(data)  # left for the user to inspect, never loaded


def test_user_mat_file_in_the_data_home_still_loads_through_load_mat(tmp_path):
    from mvlearn_plus.datasets import load_mat

    _write_user_file(tmp_path / "own.mat", n=10)
    direct = load_mat(tmp_path / "own.mat")
    via_name = load_dataset("own", data_home=tmp_path)
    np.testing.assert_array_equal(direct.target, via_name.target)


def test_clear_data_home(tmp_path):
    home = tmp_path / "home"
    (home / "clustering").mkdir(parents=True)
    (home / "clustering" / "x.mat").write_bytes(b"x")
    clear_data_home(home)
    assert not home.exists()
    clear_data_home(home)  # nothing left to clear: no error


# ------------------------------------------------------------------------------------------
# Dataset cards
# ------------------------------------------------------------------------------------------


def test_wheel_layout_cards_are_found(monkeypatch, tmp_path):
    # An installed wheel has no top-level datasets/ but carries the cards in mvlearn_plus/_datasets.
    package = tmp_path / "site-packages" / "mvlearn_plus"
    (package / "_datasets" / "clustering").mkdir(parents=True)
    (package / "_datasets" / "clustering" / "synthetic3d.md").write_text("`synthetic3d` card")
    monkeypatch.setattr(_base, "_card_roots", lambda: [tmp_path / "site-packages" / "datasets",
                                                       package / "_datasets"])
    assert load_dataset("synthetic3d").DESCR == "`synthetic3d` card"


def test_unrelated_top_level_datasets_folder_is_skipped(monkeypatch, tmp_path):
    # e.g. Hugging Face's `datasets` package next to ours in site-packages.
    site = tmp_path / "site-packages"
    (site / "datasets" / "clustering").mkdir(parents=True)
    (site / "mvlearn_plus" / "_datasets" / "clustering").mkdir(parents=True)
    (site / "mvlearn_plus" / "_datasets" / "clustering" / "webkb.md").write_text("ours")
    monkeypatch.setattr(_base, "_card_roots", lambda: [site / "datasets",
                                                       site / "mvlearn_plus" / "_datasets"])
    assert _base._read_card("clustering/webkb.md") == "ours"


def test_import_is_light():
    code = (
        "import sys, mvlearn_plus.datasets\n"
        "heavy = [m for m in ('h5py', 'torch', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
