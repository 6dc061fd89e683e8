import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import ortho_group

from mvlearn_plus.cluster._self_expression import (
    GramEigen,
    LocalGram,
    ridge_with_prior_zero_diagonal,
)
from mvlearn_plus.graphs import (
    gpi,
    knn_search,
    laplacian,
    normalized_adjacency,
    pkn_graph,
    polar_factor,
    propagate_features,
    spectral_embedding,
)


def _brute_knn(X, k):
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(D, idx, axis=1)


def test_knn_search_matches_brute_force_and_excludes_self():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 4))
    idx, dist = knn_search(X, 5, backend="sklearn")
    ref_idx, ref_dist = _brute_knn(X, 5)
    assert not np.any(idx == np.arange(60)[:, None])
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-10)


def test_knn_search_sparse_and_duplicates():
    X = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 2.0], [3.0, 3.0]])
    idx, dist = knn_search(sp.csr_matrix(X), 2)
    assert idx.shape == (5, 2)
    assert not np.any(idx == np.arange(5)[:, None])
    # the duplicate of sample 0 is its nearest neighbour at distance 0
    assert idx[0, 0] == 1 and dist[0, 0] == pytest.approx(0.0)


def test_knn_search_rejects_too_many_neighbours():
    with pytest.raises(ValueError, match="n_neighbors"):
        knn_search(np.zeros((4, 2)), 4)


def test_pkn_graph_weights():
    # one point with neighbours at squared distances 1, 2, 4 (k = 2): weights (4-1)/(8-3), (4-2)/5
    idx = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    dist = np.array([[1.0, 2.0, 4.0]] * 4)
    W = pkn_graph(idx, dist, 2).toarray()
    assert np.allclose(W, W.T)
    assert np.allclose(np.diag(W), 0)
    rowwise = np.zeros((4, 4))
    rowwise[np.arange(4)[:, None], idx[:, :2]] = [0.6, 0.4]
    np.testing.assert_allclose(W, (rowwise + rowwise.T) / 2)


def test_pkn_graph_equal_distances_fall_back_to_uniform():
    idx = np.array([[1, 2], [0, 2], [0, 1]])
    W = pkn_graph(idx, np.zeros((3, 2)), 1).toarray()
    assert np.all(np.isfinite(W))
    np.testing.assert_allclose(W.sum(), 3.0)


def test_laplacians():
    W = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 2], [0, 2, 0.0]]))
    L = laplacian(W).toarray()
    np.testing.assert_allclose(L.sum(axis=1), 0)
    Ls = laplacian(W, normalized=True).toarray()
    d = np.array([1, 3, 2.0])
    np.testing.assert_allclose(Ls, np.eye(3) - W.toarray() / np.sqrt(np.outer(d, d)))
    # an isolated node has degree 1 in the normalisation, so no inf/nan
    W0 = sp.csr_matrix(np.array([[0, 0], [0, 0.0]]))
    assert np.all(np.isfinite(normalized_adjacency(W0).toarray()))


def _two_block_graph(n=400, seed=0):
    rng = np.random.RandomState(seed)
    labels = np.repeat([0, 1, 2], [n // 3, n // 3, n - 2 * (n // 3)])
    same = labels[:, None] == labels[None, :]
    W = rng.uniform(size=(n, n)) * np.where(same, 1.0, 0.02)
    W = np.triu(W, 1)
    return W + W.T, labels


@pytest.mark.parametrize("normalized", [True, False])
def test_spectral_embedding_dense_and_iterative_agree(normalized):
    W, _ = _two_block_graph()
    F_dense, vals_dense = spectral_embedding(W, 3, normalized=normalized)
    F_iter, vals_iter = spectral_embedding(
        sp.csr_matrix(W), 3, normalized=normalized, random_state=0, dense_max_samples=0
    )
    np.testing.assert_allclose(vals_dense, vals_iter, atol=1e-6)
    # same subspace: the projector onto the eigenvectors agrees
    np.testing.assert_allclose(F_dense @ F_dense.T, F_iter @ F_iter.T, atol=1e-5)
    F_warm, _ = spectral_embedding(
        sp.csr_matrix(W), 3, normalized=normalized, initial=F_iter + 1e-3, dense_max_samples=0
    )
    np.testing.assert_allclose(F_warm @ F_warm.T, F_dense @ F_dense.T, atol=1e-4)
    assert vals_dense[0] == pytest.approx(0.0, abs=1e-8)


def test_sparse_graphs_above_the_sparse_limit_skip_the_dense_solver(monkeypatch):
    """A sparse graph between SPARSE_DENSE_EIGEN_MAX_SAMPLES and DENSE_EIGEN_MAX_SAMPLES takes
    the iterative solver (the dense one costs O(n^3) on every MGF iteration) and agrees with
    the dense solve of the same graph."""
    import mvlearn_plus.graphs as graphs

    n = graphs.SPARSE_DENSE_EIGEN_MAX_SAMPLES + 100
    assert n < graphs.DENSE_EIGEN_MAX_SAMPLES
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(loc=3.0 * k, size=(n // 3 + (k < n % 3), 5)) for k in range(3)])
    idx, dist = knn_search(X, 11)
    graph = pkn_graph(idx, dist, 10)
    calls = []
    real_eigh = graphs.scipy.linalg.eigh
    monkeypatch.setattr(graphs.scipy.linalg, "eigh",
                        lambda *a, **k: calls.append(1) or real_eigh(*a, **k))
    F_sparse, vals_sparse = spectral_embedding(graph, 3, random_state=0)
    assert not calls, "the sparse graph was densified"
    F_dense, vals_dense = spectral_embedding(graph.toarray(), 3)
    assert calls, "a dense graph of this size goes to LAPACK"
    np.testing.assert_allclose(vals_sparse, vals_dense, atol=1e-6)
    np.testing.assert_allclose(F_sparse @ F_sparse.T, F_dense @ F_dense.T, atol=1e-5)


def test_normalized_adjacency_keeps_exact_symmetry_and_leaves_the_graph_alone():
    A = sp.random(200, 200, density=0.05, random_state=0, format="csr")
    W = (A + A.T).tocsr()
    before = W.copy()
    N = normalized_adjacency(W)
    d = np.asarray(W.sum(axis=1)).ravel()
    scale = 1.0 / np.sqrt(np.where(d > 0, d, 1.0))
    np.testing.assert_allclose(N.toarray(), scale[:, None] * W.toarray() * scale[None, :],
                               rtol=1e-12)
    # exactly symmetric (not a rounding apart), so spectral_embedding needs no symmetrising sum
    assert (N != N.T).nnz == 0
    assert (W != before).nnz == 0


@pytest.mark.parametrize("normalized", [True, False])
def test_sparse_spectral_embedding_symmetrises_asymmetric_graphs(normalized):
    W, _ = _two_block_graph()
    rng = np.random.RandomState(0)
    # asymmetric noise of the order of a rounding error, and a visibly asymmetric graph
    noisy = sp.csr_matrix(W * (1.0 + 1e-13 * rng.rand(*W.shape)))
    asymmetric = sp.csr_matrix(np.triu(W) * 2.0)
    for graph in (noisy, asymmetric):
        F_sparse, vals_sparse = spectral_embedding(
            graph, 3, normalized=normalized, random_state=0, dense_max_samples=0
        )
        F_dense, vals_dense = spectral_embedding(graph.toarray(), 3, normalized=normalized)
        np.testing.assert_allclose(vals_sparse, vals_dense, atol=1e-6)
        np.testing.assert_allclose(F_sparse @ F_sparse.T, F_dense @ F_dense.T, atol=1e-5)


def test_polar_factor_solves_procrustes():
    rng = np.random.RandomState(0)
    M = rng.normal(size=(5, 5))
    R = polar_factor(M)
    np.testing.assert_allclose(R.T @ R, np.eye(5), atol=1e-12)
    best = np.trace(R.T @ M)
    for seed in range(20):
        Q = ortho_group.rvs(5, random_state=seed)
        assert np.trace(Q.T @ M) <= best + 1e-12


@pytest.mark.parametrize("singular_values", [(3.0, 2.0, 1.0, 0.5), (1.0, 1.0, 1e-2, 1e-5)])
def test_polar_factor_gram_route_matches_svd(singular_values):
    # The first matrix takes the Gram route, the second (cond 1e5) the SVD fallback.
    rng = np.random.RandomState(3)
    U = np.linalg.qr(rng.normal(size=(200, 4)))[0]
    V = ortho_group.rvs(4, random_state=4)
    M = U @ np.diag(singular_values) @ V.T
    np.testing.assert_allclose(polar_factor(M), U @ V.T, atol=1e-9)
    np.testing.assert_allclose(polar_factor(M.T), V @ U.T, atol=1e-9)


def test_gpi_decreases_objective_and_finds_eigenvectors():
    W, _ = _two_block_graph(90)
    L = laplacian(W)
    rng = np.random.RandomState(1)
    F0 = np.linalg.qr(rng.normal(size=(90, 3)))[0]
    B = 0.01 * rng.normal(size=(90, 3))
    objective = lambda F: np.trace(F.T @ L @ F) - 2 * np.trace(F.T @ B)  # noqa: E731
    eta = 2 * W.sum(axis=1).max()
    values = [objective(F0)]
    F = F0
    for _ in range(20):
        F, _ = gpi(L, B, F, eta=eta, max_iter=1)
        values.append(objective(F))
    assert np.all(np.diff(values) <= 1e-9)
    F, _ = gpi(L, np.zeros((90, 3)), F0, eta=eta, max_iter=5000, tol=1e-12)
    smallest = np.sort(np.linalg.eigvalsh(L))[:3].sum()
    assert np.trace(F.T @ L @ F) == pytest.approx(smallest, rel=1e-4, abs=1e-6)


def test_zero_diagonal_ridge_matches_constrained_least_squares():
    rng = np.random.RandomState(0)
    n, d, mu, c = 12, 5, 0.7, 0.3
    X = rng.normal(size=(n, d))
    prior = rng.uniform(size=(n, n))
    Z = ridge_with_prior_zero_diagonal(GramEigen(X), mu, prior, c)
    K = X @ X.T
    for j in range(n):
        others = np.delete(np.arange(n), j)
        A = K[np.ix_(others, others)] + mu * np.eye(n - 1)
        b = K[others, j] + c * prior[others, j]
        np.testing.assert_allclose(Z[others, j], np.linalg.solve(A, b), atol=1e-10)
        assert Z[j, j] == 0.0


def test_local_gram_solves_local_systems():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 6))
    idx, _ = knn_search(X, 4)
    local = LocalGram(sp.csr_matrix(X), idx)
    rhs = rng.normal(size=(30, 4))
    z = local.solve(rhs, 0.5)
    for j in range(30):
        G = X[idx[j]] @ X[idx[j]].T
        np.testing.assert_allclose(z[j], np.linalg.solve(G + 0.5 * np.eye(4), rhs[j]), rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(local.inner[j], X[idx[j]] @ X[j], atol=1e-5)


def _clustered(n=3000, dim=16, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 8, n)
    return rng.normal(size=(8, dim))[y] * 3.0 + rng.normal(size=(n, dim)), y


def test_knn_search_approximate_index_is_close_to_exact_and_deterministic():
    pytest.importorskip("faiss")
    X, y = _clustered()
    exact_idx, _ = knn_search(X, 10, method="exact")
    idx, dist = knn_search(X, 10, method="approximate")
    again, _ = knn_search(X, 10, method="approximate")
    np.testing.assert_array_equal(idx, again)
    assert idx.shape == (3000, 10) and idx.min() >= 0
    assert not np.any(idx == np.arange(3000)[:, None])
    # every listed distance is exact and the lists are sorted
    true = ((X[:, None, :] - X[idx]) ** 2).sum(-1)
    np.testing.assert_allclose(dist, true, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(dist, axis=1) >= -1e-6)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, exact_idx)])
    assert recall > 0.8, recall
    # the neighbours stay inside the planted clusters as often as the exact ones
    assert np.mean(y[idx] == y[:, None]) > 0.95


def _isotropic_blobs(n=20000, dim=24):
    """Ten overlapping isotropic blobs: neighbours are hard to find, so the index's setting
    decides the recall."""
    rng = np.random.RandomState(0)
    y = rng.randint(0, 10, n)
    return rng.normal(size=(10, dim))[y] + 1.5 * rng.normal(size=(n, dim))


def _recall_on_unseen_queries(X, idx, n_queries=300):
    """Recall@10 of the self-search lists ``idx`` on queries a calibration did not see."""
    others = np.random.RandomState(7).choice(len(X), n_queries, replace=False)
    exact, _ = knn_search(X, 10, query=X[others], method="exact")
    # the exact query search finds the point itself first; the self-search list excludes it
    return np.mean([np.intersect1d(f, e[1:]).size / 9 for f, e in zip(idx[others], exact)])


def test_knn_search_approximate_probes_enough_lists_for_the_recall_target(monkeypatch):
    pytest.importorskip("faiss")
    import mvlearn_plus.graphs as graphs

    # Here the target needs 1/8 of the lists, where the exact search is cheaper (below); allow
    # the index any fraction to test its calibration.
    monkeypatch.setattr(graphs, "IVF_MAX_PROBE_FRACTION", 1.0)
    # Isotropic 24-dimensional blobs with 512 inverted lists: 16 probed lists find well under
    # 90 % of the true neighbours, so the number of probes is what decides the recall.
    X = _isotropic_blobs()
    fixed, calibrated = {}, {}
    knn_search(X, 10, method="approximate", recall_target=0.0, info=fixed)
    idx, _ = knn_search(X, 10, method="approximate", info=calibrated)
    assert fixed["n_probes"] == 16 and fixed["calibration_recall"] < 0.85, fixed
    assert calibrated["n_probes"] > 16 and calibrated["calibration_recall"] >= 0.9, calibrated
    assert _recall_on_unseen_queries(X, idx) >= 0.85
    # With the default fraction, a target that needs over 10 % of the lists is searched exactly.
    monkeypatch.undo()
    fallback = {}
    exact_all, _ = knn_search(X, 10, method="exact")
    np.testing.assert_array_equal(knn_search(X, 10, method="approximate", info=fallback)[0],
                                  exact_all)
    assert fallback["method"] == "exact" and "faster" in fallback["reason"]


def test_knn_search_hnsw_widens_its_beam_for_the_recall_target(monkeypatch):
    pytest.importorskip("faiss")
    import faiss

    import mvlearn_plus.graphs as graphs

    # A sparse graph (8 links, beam 16 while building) over isotropic 24-dimensional blobs:
    # the narrowest search beam finds well under 90 % of the true neighbours, so the beam
    # width is what decides the recall. One FAISS thread builds the graph deterministically.
    monkeypatch.setattr(graphs, "HNSW_LINKS", 8)
    monkeypatch.setattr(graphs, "HNSW_EF_CONSTRUCTION", 16)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        X = _isotropic_blobs()
        narrow, calibrated = {}, {}
        knn_search(X, 10, method="hnsw", recall_target=0.0, info=narrow)
        idx, dist = knn_search(X, 10, method="hnsw", info=calibrated)
        again, _ = knn_search(X, 10, method="hnsw")
    finally:
        faiss.omp_set_num_threads(threads)
    assert narrow["index"] == "hnsw" and narrow["calibration_recall"] < 0.8, narrow
    assert calibrated["ef_search"] > narrow["ef_search"], calibrated
    assert calibrated["calibration_recall"] >= 0.9 and calibrated["method"] == "approximate"
    np.testing.assert_array_equal(idx, again)
    assert not np.any(idx == np.arange(len(X))[:, None])
    np.testing.assert_allclose(dist, ((X[:, None, :] - X[idx]) ** 2).sum(-1), rtol=1e-6)
    assert _recall_on_unseen_queries(X, idx) >= 0.85


def test_knn_search_hnsw_falls_back_to_exact_when_the_beam_cannot_reach_the_target(
        monkeypatch):
    pytest.importorskip("faiss")
    import mvlearn_plus.graphs as graphs

    monkeypatch.setattr(graphs, "HNSW_LINKS", 4)
    monkeypatch.setattr(graphs, "HNSW_EF_CONSTRUCTION", 8)
    monkeypatch.setattr(graphs, "HNSW_MAX_EF_SEARCH", 16)
    X, _ = _clustered(n=2000, dim=24)
    info = {}
    idx, dist = knn_search(X, 10, method="hnsw", recall_target=0.999, info=info)
    assert info["method"] == "exact" and "not reached" in info["reason"], info
    exact_idx, exact_dist = knn_search(X, 10, method="exact")
    np.testing.assert_array_equal(idx, exact_idx)
    np.testing.assert_array_equal(dist, exact_dist)


def test_knn_search_exact_fallback_resolves_ties_like_the_exact_search(monkeypatch):
    pytest.importorskip("faiss")
    import mvlearn_plus.graphs as graphs

    # Binary data ties at every distance: when the IVF search falls back to the exact index,
    # rows whose ties run past the candidate list must get the same full re-search as an
    # exact search does, or the lists differ at the last tie.
    # (FAISS's flat index happens to order exact float32 ties by index, so the lists agree
    # here even without it: count the re-searched rows instead.)
    monkeypatch.setattr(graphs, "IVF_MAX_PROBE_FRACTION", 0.0)
    re_searched = []

    def counting_exact_row(*args):
        re_searched.append(1)
        return exact_row(*args)

    exact_row = graphs._exact_row
    monkeypatch.setattr(graphs, "_exact_row", counting_exact_row)
    X = (np.random.RandomState(0).rand(3000, 12) < 0.3).astype(np.float64)
    info = {}
    fallback = knn_search(X, 10, method="approximate", info=info)
    assert info["method"] == "exact"
    n_fallback = len(re_searched)
    exact = knn_search(X, 10, method="exact")
    assert n_fallback == len(re_searched) - n_fallback > 0
    np.testing.assert_array_equal(fallback[0], exact[0])
    np.testing.assert_array_equal(fallback[1], exact[1])


def test_knn_search_auto_switches_to_the_index_above_the_threshold(monkeypatch):
    pytest.importorskip("faiss")
    import mvlearn_plus.graphs as graphs

    X, _ = _clustered(n=2000)
    exact, _ = knn_search(X, 5)
    monkeypatch.setattr(graphs, "APPROXIMATE_KNN_MIN_SAMPLES", 1000)
    auto, _ = knn_search(X, 5)
    np.testing.assert_array_equal(auto, knn_search(X, 5, method="approximate")[0])
    monkeypatch.setattr(graphs, "APPROXIMATE_KNN_MIN_SAMPLES", 5000)
    np.testing.assert_array_equal(knn_search(X, 5)[0], exact)


def test_knn_search_method_errors():
    X = np.random.RandomState(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="method must be one of"):
        knn_search(X, 3, method="annoy")
    for method in ("approximate", "ivf", "hnsw"):
        with pytest.raises(ValueError, match=f"{method}.*FAISS"):
            knn_search(sp.csr_matrix(X), 3, method=method)
        with pytest.raises(ValueError, match=f"{method}.*FAISS"):
            knn_search(X, 3, backend="sklearn", method=method)


def test_exact_knn_lists_do_not_depend_on_faiss():
    pytest.importorskip("faiss")
    # Binary views (like WebKB's) are full of exact ties, which each backend orders its own way.
    rng = np.random.RandomState(0)
    X = (rng.rand(300, 12) < 0.3).astype(np.float64)
    with_faiss = knn_search(X, 8, backend="faiss")
    without = knn_search(X, 8, backend="sklearn")
    np.testing.assert_array_equal(with_faiss[0], without[0])
    np.testing.assert_array_equal(with_faiss[1], without[1])
    # Ties are broken by the smaller index.
    idx, dist = without
    tied = dist[:, 1:] == dist[:, :-1]
    assert np.all(idx[:, 1:][tied] > idx[:, :-1][tied])
    # The same with separate queries, and on continuous data.
    Y = rng.normal(size=(200, 5)).round(1)
    for backend_pair in (("faiss", "sklearn"),):
        a = knn_search(Y, 6, query=Y[:50] + 0.05, backend=backend_pair[0])
        b = knn_search(Y, 6, query=Y[:50] + 0.05, backend=backend_pair[1])
        np.testing.assert_array_equal(a[0], b[0])


def test_propagate_features_matches_dense_powers_and_keeps_sparse_input_sparse():
    rng = np.random.RandomState(0)
    n = 30
    graphs = []
    for density in (0.1, 0.3):
        A = sp.random(n, n, density=density, random_state=rng, format="csr")
        A = A.maximum(A.T)
        A.setdiag(0.0)
        A.eliminate_zeros()
        graphs.append(A.tocsr())
    X = rng.rand(n, 5)
    expected = np.zeros_like(X)
    for A in graphs:
        dense = A.toarray()
        strongest = dense.max(axis=1)
        looped = dense + np.diag(np.where(strongest > 0, strongest, 1.0))
        scale = 1.0 / np.sqrt(looped.sum(axis=1))
        S = scale[:, None] * looped * scale[None, :]
        expected += S @ S @ X
    np.testing.assert_allclose(propagate_features(graphs, X, n_steps=2), expected, rtol=1e-12)
    sparse_result = propagate_features(graphs, sp.csr_matrix(X), n_steps=2)
    assert sp.issparse(sparse_result)
    np.testing.assert_allclose(sparse_result.toarray(), expected, rtol=1e-12)
    # k = 0 is V X; a binary graph gets exactly A + I
    np.testing.assert_allclose(propagate_features(graphs, X, n_steps=0), 2 * X)
    path = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=float))
    looped = path.toarray() + np.eye(3)
    d = looped.sum(axis=1)
    np.testing.assert_allclose(propagate_features(path, np.eye(3), n_steps=1),
                               looped / np.sqrt(np.outer(d, d)))


def test_propagate_features_errors():
    A = sp.identity(4, format="csr")
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        propagate_features([A], np.ones((3, 2)))
    with pytest.raises(ValueError, match="n_steps"):
        propagate_features([A], np.ones((4, 2)), n_steps=-1)
    with pytest.raises(ValueError, match="at least one graph"):
        propagate_features([], np.ones((4, 2)))
