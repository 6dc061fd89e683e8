"""The catalogued graph data sets, load_npz, graph layouts in load_mat, and the graph helpers."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import scipy.sparse as sp

from mvlearn_plus.datasets import list_datasets, load_dataset, load_mat, load_npz
from mvlearn_plus.datasets import get_data_home
from mvlearn_plus.datasets._fetch import fetch
from mvlearn_plus.datasets._graphs import GRAPH_DATASETS, read_planetoid
from mvlearn_plus.graphs import add_self_loops, gaussian_knn_graph, personalized_pagerank
from mvlearn_plus.utils import check_graphs

CARDS = Path(__file__).resolve().parents[2] / "datasets"


def _graph_files(name: str) -> Path:
    """The data home holding a graph data set's files (downloaded if they must be)."""
    home = get_data_home()
    for remote in GRAPH_DATASETS[name].files:
        fetch(remote, data_home=home)
    return home / "graph"

# From the data README (/work/shared/data/README.md), written out independently of the loader:
# name -> (nodes, features, classes, class sizes, graph names, stored edge counts of graph 0).
EXPECTED = {
    "acm": (3025, 1870, 3, [1061, 965, 999], ["PAP", "PLP"], 29281),
    "cora": (2708, 1433, 7, None, ["citation", "ppr"], 2 * 5278),
    "citeseer": (3312, 3703, 6, None, ["citation", "ppr"], None),
}

# The published files, byte for byte (never re-saved); x and y of Planetoid are not read.
SHA256 = {
    "ACM3025.mat": "b10e486a49892307a56a3d9ad48128a948d2bf2da19db9e6e7f79c6622529fdc",
    "planetoid/ind.citeseer.allx": "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
    "planetoid/ind.citeseer.ally": "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
    "planetoid/ind.citeseer.graph": "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
    "planetoid/ind.citeseer.test.index": "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
    "planetoid/ind.citeseer.tx": "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
    "planetoid/ind.citeseer.ty": "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
    "planetoid/ind.citeseer.x": "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
    "planetoid/ind.citeseer.y": "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
    "planetoid/ind.cora.allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
    "planetoid/ind.cora.ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
    "planetoid/ind.cora.graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
    "planetoid/ind.cora.test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
    "planetoid/ind.cora.tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
    "planetoid/ind.cora.ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
    "planetoid/ind.cora.x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
    "planetoid/ind.cora.y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
}


def test_graph_datasets_are_listed_apart_from_feature_datasets():
    graphs = list_datasets(kind="graph")
    assert graphs == ["acm", "citeseer", "cora"]
    features = list_datasets(kind="features")
    assert not set(graphs) & set(features)
    assert sorted(graphs + features) == list_datasets()
    with pytest.raises(ValueError, match="kind"):
        list_datasets(kind="images")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_graph_dataset_loads_with_its_card(name):
    n, d, c, sizes, graph_names, edges = EXPECTED[name]
    data = load_dataset(name)
    assert data.kind == "graph" and data.name == name
    assert data.data.shape == (n, d) and sp.issparse(data.data)
    assert data.target.dtype == np.int64 and data.target.shape == (n,)
    assert data.n_clusters == c and set(np.unique(data.target)) == set(range(c))
    if sizes is not None:
        assert np.bincount(data.target).tolist() == sizes
    assert data.graph_names == graph_names
    for graph in data.graphs:
        assert sp.issparse(graph) and graph.shape == (n, n)
        assert (graph != graph.T).nnz == 0 and graph.data.min() >= 0
    if edges is not None:
        assert data.graphs[0].nnz == edges
    assert data.DESCR.startswith("# ") and "## Source" in data.DESCR
    assert (CARDS / "graph" / f"{name}.md").is_file()


def test_citeseer_drops_the_featureless_unlabelled_nodes():
    features, graph, target = read_planetoid(_graph_files("citeseer") / "planetoid", "citeseer")
    assert features.shape[0] == graph.shape[0] == target.shape[0] == 3312
    assert np.all(np.asarray(features.sum(axis=1)).ravel() > 0)


def test_cora_ppr_view_is_sparse_and_follows_the_citation_graph():
    data = load_dataset("cora")
    citation, ppr = data.graphs
    assert ppr.nnz <= 2 * 32 * citation.shape[0]
    # every node's strongest PPR entry is itself or a citation neighbour
    rows = np.arange(citation.shape[0])
    strongest = np.asarray(ppr.argmax(axis=1)).ravel()
    neighbour = np.asarray(citation[rows, strongest]).ravel() > 0
    assert np.mean((strongest == rows) | neighbour) > 0.99


def test_planetoid_reader_refuses_unexpected_pickled_objects(tmp_path):
    folder = tmp_path / "planetoid"
    folder.mkdir()
    published = _graph_files("cora") / "planetoid"
    for part in ("allx", "ally", "tx", "ty", "graph"):
        (folder / f"ind.cora.{part}").write_bytes(
            (published / f"ind.cora.{part}").read_bytes())
    (folder / "ind.cora.test.index").write_text(
        (published / "ind.cora.test.index").read_text())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "ind.cora.graph").write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(ValueError, match="refusing to load .*print"):
        read_planetoid(folder, "cora")
    (folder / "ind.cora.graph").unlink()
    with pytest.raises(FileNotFoundError, match="ind.cora.graph"):
        read_planetoid(folder, "cora")


def test_catalogue_pins_the_published_graph_files():
    pinned = {remote.path: remote for info in GRAPH_DATASETS.values() for remote in info.files}
    read = {f"graph/{path}" for path in SHA256 if not path.endswith((".x", ".y"))}
    assert set(pinned) == read
    home = get_data_home()
    for path, remote in pinned.items():
        assert remote.sha256 == SHA256[path[len("graph/"):]]
        local = fetch(remote, data_home=home)
        assert hashlib.sha256(local.read_bytes()).hexdigest() == remote.sha256
        assert local.stat().st_size == remote.size


# ---------------------------------------------------------------------------------- load_npz
def _write_npz(path, n=12, directed=False, dense_attributes=False, onehot=False):
    rng = np.random.RandomState(0)
    A = sp.random(n, n, density=0.3, random_state=1, format="csr")
    A.data[:] = 1.0
    if not directed:
        A = A.maximum(A.T).tocsr()
    X = sp.csr_matrix(rng.rand(n, 5) < 0.4, dtype=np.float64)
    labels = np.arange(n) % 3 + 4
    arrays = dict(adj_data=A.data, adj_indices=A.indices, adj_indptr=A.indptr, adj_shape=A.shape)
    if dense_attributes:
        arrays["attr_matrix"] = X.toarray()
    else:
        arrays.update(attr_data=X.data, attr_indices=X.indices, attr_indptr=X.indptr,
                      attr_shape=X.shape)
    if onehot:
        Y = sp.csr_matrix(np.eye(3)[labels - 4])
        arrays.update(labels_data=Y.data, labels_indices=Y.indices, labels_indptr=Y.indptr,
                      labels_shape=Y.shape)
    else:
        arrays["labels"] = labels
    np.savez(path, **arrays)
    return A, X, labels - 4


@pytest.mark.parametrize("dense_attributes", [False, True])
@pytest.mark.parametrize("onehot", [False, True])
def test_load_npz_reads_the_csr_part_layout(tmp_path, dense_attributes, onehot):
    A, X, y = _write_npz(tmp_path / "g.npz", dense_attributes=dense_attributes, onehot=onehot)
    data = load_npz(tmp_path / "g.npz")
    assert (data.graphs[0] != A).nnz == 0
    np.testing.assert_array_equal(data.data.toarray(), X.toarray())
    np.testing.assert_array_equal(data.target, y)
    assert data.kind == "graph" and data.n_clusters == 3 and data.name == "g"


def test_load_npz_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such .npz"):
        load_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "noadj.npz", labels=np.arange(3))
    with pytest.raises(ValueError, match="adj is incomplete"):
        load_npz(tmp_path / "noadj.npz")
    A, X, y = _write_npz(tmp_path / "ok.npz")
    arrays = dict(np.load(tmp_path / "ok.npz"))
    arrays["labels"] = arrays["labels"][:-1]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(ValueError, match="12 nodes in the adjacency but 12 attribute rows and 11"):
        load_npz(tmp_path / "short.npz")


def test_a_directed_npz_graph_is_symmetrised_by_the_estimator(tmp_path):
    pytest.importorskip("torch")
    from mvlearn_plus.cluster import VariationalGraphGeneratorClustering

    _write_npz(tmp_path / "d.npz", n=30, directed=True)
    data = load_npz(tmp_path / "d.npz")
    with pytest.warns(UserWarning, match="not symmetric"):
        VariationalGraphGeneratorClustering(
            n_clusters=3, max_epochs=2, pretrain_epochs=1, hidden_dim=8, latent_dim=8,
            random_state=0, device="cpu",
        ).fit(data.data, graphs=data.graphs)


# ---------------------------------------------------------------------- load_mat graph layouts
def test_load_mat_reads_a_cell_array_of_sparse_graphs_next_to_x_and_y(tmp_path):
    n = 20
    rng = np.random.RandomState(0)
    A = sp.random(n, n, density=0.2, random_state=0, format="csc")
    A = A + A.T
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = A, sp.identity(n, format="csc")
    X = rng.rand(n, 5)
    sio.savemat(tmp_path / "g.mat", {"adj": cell, "X": X, "Y": np.arange(n) % 3 + 1})
    data = load_mat(tmp_path / "g.mat")
    assert data.kind == "graph" and len(data.graphs) == 2
    assert all(sp.issparse(g) and g.shape == (n, n) for g in data.graphs)
    np.testing.assert_allclose(data.graphs[0].toarray(), A.toarray())
    np.testing.assert_allclose(data.data, X)
    assert len(data.views) == 1 and "Graphs: 2 adjacency matrices" in data.DESCR
    np.testing.assert_array_equal(data.target, np.arange(n) % 3)


def test_load_mat_reads_numbered_dense_graphs(tmp_path):
    n = 15
    rng = np.random.RandomState(1)
    A1 = (rng.rand(n, n) < 0.3).astype(float)
    sio.savemat(tmp_path / "h.mat", {"adj1": A1, "adj2": A1.T, "X": rng.rand(n, 4),
                                      "y": np.arange(n) % 2})
    data = load_mat(tmp_path / "h.mat")
    assert data.graph_names == ["adj1", "adj2"]
    np.testing.assert_allclose(data.graphs[1].toarray(), A1.T)


def test_load_mat_without_graphs_is_unchanged(tmp_path):
    sio.savemat(tmp_path / "f.mat", {"X1": np.ones((6, 2)), "X2": np.ones((6, 3)),
                                      "Y": np.arange(6) % 2})
    data = load_mat(tmp_path / "f.mat")
    assert "graphs" not in data and data.kind in ("text", "dense") and len(data.views) == 2


# ----------------------------------------------------------------------------- graph helpers
def test_personalized_pagerank_matches_the_matrix_inverse():
    rng = np.random.RandomState(0)
    n = 40
    A = np.triu(rng.rand(n, n) < 0.1, 1)
    A = sp.csr_matrix((A | A.T).astype(float))
    At = A.toarray() + np.eye(n)
    d = At.sum(axis=1)
    At = At / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    exact = 0.2 * np.linalg.inv(np.eye(n) - 0.8 * At)
    full = personalized_pagerank(A, alpha=0.2, n_steps=300, top_k=n, block_size=7).toarray()
    np.testing.assert_allclose(full, np.maximum(exact, exact.T), atol=1e-10)
    truncated = personalized_pagerank(A, top_k=5)
    assert truncated.getnnz(axis=1).min() >= 5 and truncated.nnz <= 2 * 5 * n
    with pytest.raises(ValueError, match="alpha"):
        personalized_pagerank(A, alpha=1.5)


def test_gaussian_knn_graph_properties():
    rng = np.random.RandomState(0)
    X = rng.rand(50, 6)
    S = gaussian_knn_graph(X, 5)
    assert (S != S.T).nnz == 0
    np.testing.assert_array_equal(S.diagonal(), 1.0)
    assert S.getnnz(axis=1).min() >= 5 and S.data.min() > 0 and S.data.max() <= 1
    # sparse input gives the same graph
    S2 = gaussian_knn_graph(sp.csr_matrix(X), 5)
    np.testing.assert_allclose(S.toarray(), S2.toarray(), atol=1e-6)  # FAISS (float32) vs sklearn


def test_add_self_loops_only_where_missing():
    A = sp.csr_matrix(np.array([[0, 2.0, 0], [2.0, 5.0, 0], [0, 0, 0]]))
    looped = add_self_loops(A).toarray()
    np.testing.assert_array_equal(np.diag(looped), [2.0, 5.0, 1.0])


def test_gaussian_knn_graph_matches_a_brute_force_kernel():
    rng = np.random.RandomState(1)
    X = rng.rand(30, 4)
    S = gaussian_knn_graph(X, 6, sigma=0.5).toarray()
    unit = X / X.sum(1, keepdims=True)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    D = ((unit[:, None] - unit[None]) ** 2).sum(-1)
    K = np.exp(-(D / D.max()) ** 2 / 0.25)
    kept = np.zeros_like(K)
    for i in range(30):
        top = np.argsort(D[i])[:6]  # the node itself and its 5 nearest
        kept[i, top] = K[i, top]
    np.testing.assert_allclose(S, (kept + kept.T) / 2 + np.diag(1 - np.diag((kept + kept.T) / 2)),
                               atol=1e-6)


def test_check_graphs_leaves_its_input_unchanged():
    A = sp.csr_matrix((np.array([1.0, 0.0, 2.0, 2.0]), np.array([1, 2, 0, 0]),
                       np.array([0, 2, 4, 4])), shape=(3, 3))
    before = (A.data.copy(), A.indices.copy(), A.indptr.copy())
    with pytest.warns(UserWarning):
        check_graphs([A], 3)
    for got, expected in zip((A.data, A.indices, A.indptr), before):
        np.testing.assert_array_equal(got, expected)


def test_check_graphs_validates_and_symmetrises():
    good = sp.csr_matrix(np.array([[0, 1.0], [1.0, 0]]))
    assert len(check_graphs([good, good.toarray()], 2)) == 2
    with pytest.warns(UserWarning, match="Graph 0 is not symmetric"):
        out = check_graphs([sp.csr_matrix(np.array([[0, 1.0], [0, 0]]))], 2)
    np.testing.assert_array_equal(out[0].toarray(), [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="Graph 0 must be a 2-D"):
        check_graphs([np.ones(3)], 3)
    with pytest.raises(ValueError, match="Graph 0 is None"):
        check_graphs([None], 3)
    with pytest.raises(ValueError, match="Got 1 graphs for 2 feature views"):
        check_graphs([good], 2, n_views=2)
