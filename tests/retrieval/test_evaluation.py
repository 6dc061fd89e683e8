"""Tests of retrieval.evaluation against a brute-force reference written here (spec 2.2-2.4, 7)."""

import ast
import math
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from retrieval import evaluation as ev
from retrieval import metrics as metrics_module
from retrieval.rerank import DEFAULT_SCORE_TIE_TOL
from retrieval.evaluation import (
    build_index,
    coco_1k_metrics,
    coco_5k_metrics,
    compare_to_exact,
    flickr_1k_metrics,
    fold_metrics,
    rerank_metrics,
    retrieval_metrics,
    search,
    shortlist_recall_loss,
    shortlist_rerank,
)

@pytest.fixture(autouse=True, scope="module")
def _faiss_single_thread():
    # After conftest's torch.set_num_threads(2), FAISS k-means (IVF/PQ training) ran ~10x slower on
    # the busy 2-core CI machine (OpenMP spin-waiting); one FAISS thread keeps the file fast.
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


RECALL_KEYS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"]
ALL_KEYS = RECALL_KEYS + ["i2t_medr", "i2t_meanr", "t2i_medr", "t2i_meanr"]


# ------------------------------------------------------------------------------------------------
# Brute-force reference: full score matrix, explicit loops, nothing shared with the library.
# ------------------------------------------------------------------------------------------------
def reference_metrics(images, texts, ids, ks=(1, 5, 10), tol=None):
    # Scores closer than the float32 rounding bound tie (retrieval_metrics' documented rule).
    tol = ev.tie_tolerance(np.shape(images)[1]) if tol is None else tol
    v = np.asarray(images, dtype=np.float32)
    t = np.asarray(texts, dtype=np.float32)
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)
    t = (t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32).astype(np.float64)
    s = v @ t.T
    n_i, n_t = s.shape
    r_i2t = []
    for i in range(n_i):
        best = max(s[i, c] for c in range(n_t) if ids[c] == i)
        r_i2t.append(sum(1 for c in range(n_t) if ids[c] != i and s[i, c] >= best - tol))
    r_t2i = []
    for c in range(n_t):
        pos = s[ids[c], c]
        r_t2i.append(sum(1 for i in range(n_i) if i != ids[c] and s[i, c] >= pos - tol))
    r_i2t, r_t2i = np.array(r_i2t), np.array(r_t2i)
    out = {}
    for name, r in (("i2t", r_i2t), ("t2i", r_t2i)):
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * np.mean(r < k)
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    for name, r in (("i2t", r_i2t), ("t2i", r_t2i)):
        out[f"{name}_medr"] = math.floor(np.median(r)) + 1
        out[f"{name}_meanr"] = np.mean(r) + 1
    return out


def assert_metrics_equal(got, expected, keys=ALL_KEYS):
    for key in keys:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def make_problem(rng, n_images, caps_per_image, d=16, noise=1.5, shuffle=True):
    """Images and captions = noisy copies of their image; captions shuffled."""
    images = rng.normal(size=(n_images, d)).astype(np.float32)
    counts = np.full(n_images, caps_per_image) if np.isscalar(caps_per_image) else caps_per_image
    ids = np.repeat(np.arange(n_images), counts)
    if shuffle:
        ids = rng.permutation(ids)
    texts = images[ids] + noise * rng.normal(size=(ids.size, d)).astype(np.float32)
    return images, texts.astype(np.float32), ids


def clustered(rng, n, d, n_centres, spread):
    centres = rng.normal(size=(n_centres, d))
    x = centres[rng.integers(n_centres, size=n)] + spread * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Metrics against the reference
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_reference_five_captions_shuffled(seed):
    rng = np.random.default_rng(seed)
    images, texts, ids = make_problem(rng, 40, 5)
    got = retrieval_metrics(images, texts, ids)
    ref = reference_metrics(images, texts, ids)
    assert_metrics_equal(got, ref)
    assert 0 < got["i2t_r1"] < 100 and 0 < got["t2i_r1"] < 100  # a non-trivial case
    assert set(got) == set(ALL_KEYS)


def test_metrics_match_reference_varying_captions_and_custom_ks():
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 8, size=35)
    images, texts, ids = make_problem(rng, 35, counts, noise=1.0)
    ks = (1, 2, 3, 7)
    got = retrieval_metrics(images, texts, ids, ks=ks)
    ref = reference_metrics(images, texts, ids, ks=ks)
    keys = [f"{d}_r{k}" for d in ("i2t", "t2i") for k in ks]
    assert_metrics_equal(got, ref, keys + ["rsum", "i2t_medr", "i2t_meanr", "t2i_medr", "t2i_meanr"])


def test_small_batches_and_blocks_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(4)
    images, texts, ids = make_problem(rng, 30, 5)
    ref = retrieval_metrics(images, texts, ids)
    # Tiny query batches and matmul blocks exercise every block boundary.
    monkeypatch.setattr(metrics_module, "_MAX_BLOCK_ENTRIES", 37)
    got = retrieval_metrics(images, texts, ids, batch_size=7)
    assert_metrics_equal(got, ref)


def test_torch_tensors_accepted():
    rng = np.random.default_rng(5)
    images, texts, ids = make_problem(rng, 20, 5)
    got = retrieval_metrics(torch.from_numpy(images).requires_grad_(), torch.from_numpy(texts),
                            torch.from_numpy(ids))
    assert_metrics_equal(got, retrieval_metrics(images, texts, ids))


def test_hand_computed_ranks():
    # Three images on the axes, one caption each; caption c of image c, except the captions
    # are placed so that the ranks are known by hand.
    images = np.eye(3, dtype=np.float32)
    texts = np.array([[1, 0, 0], [0.9, 0.5, 0], [0, 0.2, 1]], dtype=np.float32)
    ids = np.array([0, 1, 2])
    m = retrieval_metrics(images, texts, ids, ks=(1, 2))
    # i2t: image 0 -> caption 0 (1.0) beats caption 1 (0.87): rank 0. Image 1 -> caption 1 (0.49)
    # loses to nothing else (caption 2: 0.196, caption 0: 0): rank 0. Image 2: caption 2 first: 0.
    # t2i: caption 1's image 1 scores 0.49 < image 0's 0.87: rank 1; others rank 0.
    assert m["i2t_r1"] == 100.0
    assert m["t2i_r1"] == pytest.approx(200 / 3)
    assert m["t2i_r2"] == 100.0
    assert m["t2i_medr"] == 1.0 and m["t2i_meanr"] == pytest.approx(1 + 1 / 3)
    assert m["rsum"] == pytest.approx(100 + 100 + 200 / 3 + 100)


# ------------------------------------------------------------------------------------------------
# Ties (pessimistic) and the short-list rule
# ------------------------------------------------------------------------------------------------
def test_all_equal_embeddings_give_zero_recall():
    n_i = 20
    images = np.ones((n_i, 8), dtype=np.float32)
    ids = np.repeat(np.arange(n_i), 5)
    texts = np.ones((ids.size, 8), dtype=np.float32)
    m = retrieval_metrics(images, texts, ids)
    assert m["rsum"] == 0.0
    # Every negative ties with the positive and ranks ahead of it.
    assert m["i2t_meanr"] == ids.size - 5 + 1
    assert m["t2i_meanr"] == n_i - 1 + 1
    assert m["i2t_medr"] == ids.size - 5 + 1


def test_duplicated_embeddings_match_reference():
    rng = np.random.default_rng(6)
    images, texts, ids = make_problem(rng, 30, 5, noise=0.5)
    images[7] = images[3]  # duplicate images: the t2i positive ties with a negative
    texts[ids == 4] = texts[np.flatnonzero(ids == 9)[0]]  # captions of 4 copy one caption of 9
    got = retrieval_metrics(images, texts, ids)
    ref = reference_metrics(images, texts, ids)
    assert_metrics_equal(got, ref)
    # A caption of image 3 ties with image 7 (and vice versa): never at rank 0 under pessimistic
    # ties, so with only these captions t2i R@1 is 0 while R@2 can be positive.
    caps = np.flatnonzero((ids == 3) | (ids == 7))
    r = reference_metrics(images, texts, ids, ks=(1,))
    assert r["t2i_r1"] <= 100 * (1 - caps.size / ids.size) + 1e-9


def test_shortlist_rule_exact_with_ties_at_the_cut():
    # Embeddings drawn from a few directions only: massive exact ties, including at the list cut.
    rng = np.random.default_rng(7)
    dirs = rng.normal(size=(4, 6)).astype(np.float32)
    for seed in range(5):
        r = np.random.default_rng(seed)
        n_i = 25
        images = dirs[r.integers(4, size=n_i)]
        counts = r.integers(1, 6, size=n_i)
        ids = r.permutation(np.repeat(np.arange(n_i), counts))
        texts = dirs[r.integers(4, size=ids.size)]
        for ks in [(1, 5, 10), (1, 2, 3), (4,)]:
            got = retrieval_metrics(images, texts, ids, ks=ks)
            ref = reference_metrics(images, texts, ids, ks=ks)
            keys = [f"{d}_r{k}" for d in ("i2t", "t2i") for k in ks] + ["rsum"]
            assert_metrics_equal(got, ref, keys + ["i2t_medr", "i2t_meanr", "t2i_medr",
                                                   "t2i_meanr"])


def test_full_ranks_options():
    rng = np.random.default_rng(8)
    images, texts, ids = make_problem(rng, 20, 5)
    skipped = retrieval_metrics(images, texts, ids, full_ranks=False)
    assert math.isnan(skipped["i2t_medr"]) and math.isnan(skipped["t2i_meanr"])
    auto_small = retrieval_metrics(images, texts, ids, max_rank_pairs=10)
    assert math.isnan(auto_small["t2i_medr"])
    forced = retrieval_metrics(images, texts, ids, full_ranks=True, max_rank_pairs=10)
    ref = reference_metrics(images, texts, ids)
    assert_metrics_equal(forced, ref)
    assert_metrics_equal(skipped, ref, RECALL_KEYS)


# ------------------------------------------------------------------------------------------------
# COCO folds and dataset shortcuts
# ------------------------------------------------------------------------------------------------
def test_fold_metrics_per_fold_and_mean():
    rng = np.random.default_rng(9)
    images, texts, ids = make_problem(rng, 36, 5)
    out = fold_metrics(images, texts, ids, n_folds=3, fold_size=12)
    assert len(out["folds"]) == 3
    for f, fold in enumerate(out["folds"]):
        lo, hi = 12 * f, 12 * (f + 1)
        caps = np.flatnonzero((ids >= lo) & (ids < hi))
        assert_metrics_equal(fold, reference_metrics(images[lo:hi], texts[caps], ids[caps] - lo))
    for key in ALL_KEYS:
        assert out[key] == pytest.approx(np.mean([fold[key] for fold in out["folds"]]))
    # Extra images are ignored: the first 2 folds of 12 of the same problem.
    two = fold_metrics(images, texts, ids, n_folds=2, fold_size=12)
    assert two["folds"][1]["rsum"] == out["folds"][1]["rsum"]


def test_fold_and_dataset_count_errors():
    rng = np.random.default_rng(10)
    images, texts, ids = make_problem(rng, 20, 2)
    with pytest.raises(ValueError, match="need 30 images"):
        fold_metrics(images, texts, ids, n_folds=3, fold_size=10)
    with pytest.raises(ValueError, match="need 5000 images"):
        coco_1k_metrics(images, texts, ids)
    with pytest.raises(ValueError, match="5000 test images"):
        coco_5k_metrics(images, texts, ids)
    with pytest.raises(ValueError, match="1000 test images"):
        flickr_1k_metrics(images, texts, ids)


def test_flickr_1k_runs_on_1000_images():
    rng = np.random.default_rng(11)
    images, texts, ids = make_problem(rng, 1000, 1, d=8, noise=0.3)
    m = flickr_1k_metrics(images, texts, ids, full_ranks=False)
    assert m["i2t_r10"] > 50


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------
def test_validation_errors():
    rng = np.random.default_rng(12)
    images, texts, ids = make_problem(rng, 10, 2)
    zero = images.copy()
    zero[4] = 0
    with pytest.raises(ValueError, match="row 4 is a zero vector"):
        retrieval_metrics(zero, texts, ids)
    nan = texts.copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        retrieval_metrics(images, nan, ids)
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(images[0], texts, ids)
    with pytest.raises(ValueError, match="dimension"):
        retrieval_metrics(images[:, :5], texts, ids)
    with pytest.raises(ValueError, match="integers"):
        retrieval_metrics(images, texts, ids.astype(float))
    bad = ids.copy()
    bad[2] = 10
    with pytest.raises(ValueError, match=r"text_image_ids\[2\] = 10"):
        retrieval_metrics(images, texts, bad)
    with pytest.raises(ValueError, match="entries but there are"):
        retrieval_metrics(images, texts, ids[:-1])
    orphan = np.where(ids == 6, 5, ids)
    with pytest.raises(ValueError, match="no caption.*image 6"):
        retrieval_metrics(images, texts, orphan)
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(images, texts, ids, ks=(0, 5))
    with pytest.raises(ValueError, match="full_ranks"):
        retrieval_metrics(images, texts, ids, full_ranks="yes")
    with pytest.raises(ValueError, match="Unknown index kind"):
        retrieval_metrics(images, texts, ids, index="lsh")
    with pytest.raises(ValueError, match="Unknown parameter"):
        build_index(images, "hnsw", nprobe=3)
    if faiss.get_num_gpus() == 0:
        with pytest.raises(RuntimeError, match="no GPU"):
            build_index(images, "flat", use_gpu=True)


EVALUATION_MODULES = ["evaluation", "_inputs", "gpu_placement", "indices", "metrics", "rerank"]


def _imported_roots(path):
    tree = ast.parse(Path(path).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_evaluation_modules_do_not_import_torch():
    folder = Path(ev.__file__).parent
    for module in EVALUATION_MODULES:
        names = _imported_roots(folder / f"{module}.py")
        roots = {name.split(".")[0] for name in names}
        assert "torch" not in roots, module
        assert roots <= {"__future__", "logging", "math", "os", "time", "typing", "faiss",
                         "numpy", "retrieval"}, module
        # Within the package they only lean on each other, one way (no cycles).
        assert {n for n in names if n.startswith("retrieval")} <= {
            f"retrieval.{m}" for m in EVALUATION_MODULES}, module


def test_evaluation_keeps_every_public_name():
    from retrieval import indices, metrics, rerank

    for module in (indices, metrics, rerank):
        for name in module.__all__:
            assert getattr(ev, name) is getattr(module, name), name


# ------------------------------------------------------------------------------------------------
# FAISS indices
# ------------------------------------------------------------------------------------------------
def test_search_batches_and_padding():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    index = build_index(x)
    s1, i1 = search(index, x, 5, batch_size=7)
    s2, i2 = search(index, x, 5, batch_size=100)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-6)
    _, padded = search(index, x[:2], 60)
    assert (padded[:, 50:] == -1).all()


def test_ivf_falls_back_to_flat_on_tiny_galleries():
    x = np.random.default_rng(14).normal(size=(20, 4)).astype(np.float32)
    assert isinstance(build_index(x, "ivf"), faiss.IndexFlatIP)


@pytest.fixture(scope="module")
def clustered_problem():
    rng = np.random.default_rng(15)
    n_i, d = 1500, 32
    images = clustered(rng, n_i, d, n_centres=40, spread=0.35)
    ids = rng.permutation(np.repeat(np.arange(n_i), 5))
    texts = images[ids] + 0.12 * rng.normal(size=(ids.size, d)).astype(np.float32)
    return images, texts.astype(np.float32), ids


@pytest.mark.parametrize(
    "kind,params",
    [("hnsw", {"efSearch": 64}), ("ivf", {"nprobe": 16}), ("ivfpq", {"nprobe": 16, "m": 16, "nbits": 4})],
)
def test_approximate_indices_keep_recall_on_clustered_data(clustered_problem, kind, params):
    images, texts, ids = clustered_problem
    report = compare_to_exact(images, texts, ids, kind, **params)
    exact, approx = report["exact"], report["approx"]
    assert 0 < exact["i2t_r1"] < 100  # noise makes the task non-trivial
    assert set(report["delta"]) == set(RECALL_KEYS)
    assert report["delta"]["rsum"] == pytest.approx(approx["rsum"] - exact["rsum"])
    assert report["build_s"]["approx"] > 0 and report["search_s"]["exact"] > 0
    if kind == "ivfpq":  # 8 bytes per 32-d vector: a coarse code, only a loose bound
        assert approx["rsum"] > 0.8 * exact["rsum"]
        assert min(report["top10_overlap"].values()) > 0.3
    else:
        assert abs(report["delta"]["rsum"]) < 6.0
        assert max(abs(report["delta"][k]) for k in RECALL_KEYS[:-1]) < 2.0
        assert min(report["top10_overlap"].values()) > 0.9
    # The metrics path gives the same approximate recall.
    direct = retrieval_metrics(images, texts, ids, index=kind, index_params=params,
                               full_ranks=False)
    assert_metrics_equal(direct, approx, RECALL_KEYS)


def test_compare_to_exact_with_flat_is_zero_delta(clustered_problem):
    images, texts, ids = clustered_problem
    report = compare_to_exact(images[:200], texts[ids < 200], ids[ids < 200], "flat")
    assert all(v == 0 for v in report["delta"].values())
    assert report["top10_overlap"] == {"i2t": 1.0, "t2i": 1.0}


# ------------------------------------------------------------------------------------------------
# Multi-vector path: short list + re-rank
# ------------------------------------------------------------------------------------------------
def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_shortlist_rerank_full_list_equals_exhaustive():
    rng = np.random.default_rng(16)
    images, texts, ids = make_problem(rng, 30, 5)
    v, t = _unit(images), _unit(texts)
    # A rescoring that differs from the pooled order: exact scores of another embedding.
    w = rng.normal(size=(16, 16)).astype(np.float32)
    exact = (v @ w) @ t.T

    def rescore(q, c):
        return exact[q[:, None], c]

    scores, idx = shortlist_rerank(v, t, t.shape[0], rescore, batch_size=7)
    assert idx.shape == (30, t.shape[0])
    np.testing.assert_allclose(scores, -np.sort(-exact, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.tile(np.arange(t.shape[0]), (30, 1)))
    np.testing.assert_allclose(np.take_along_axis(exact, idx, axis=1), scores)


def test_rerank_metrics_with_dot_product_equal_retrieval_metrics():
    rng = np.random.default_rng(17)
    images, texts, ids = make_problem(rng, 30, 5)
    v, t = _unit(images), _unit(texts)
    s = v @ t.T
    i2t = shortlist_rerank(v, t, t.shape[0], lambda q, c: s[q[:, None], c])
    t2i = shortlist_rerank(t, v, v.shape[0], lambda q, c: s.T[q[:, None], c])
    got = rerank_metrics(i2t, t2i, ids)
    assert_metrics_equal(got, reference_metrics(images, texts, ids), RECALL_KEYS)
    assert math.isnan(got["i2t_medr"])


def test_rerank_metrics_counts_missing_positive_as_miss():
    ids = np.array([0, 1])
    # Image 0's list holds only caption 1; image 1's holds its own caption first.
    i2t = (np.array([[0.9], [0.8]]), np.array([[1], [1]]))
    t2i = (np.array([[0.5], [0.7]]), np.array([[1], [1]]))
    m = rerank_metrics(i2t, t2i, ids, ks=(1,))
    assert m["i2t_r1"] == 50.0 and m["t2i_r1"] == 50.0


def _multi_vector_problem(seed, n_i=40, caps=5, d=16, chunks=3):
    """A MaxSim-style score: max over image chunks of chunk . text (not a pooled dot product)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_i, d))
    img_chunks = _unit((centres[:, None, :] + 0.6 * rng.normal(size=(n_i, chunks, d)))
                       .reshape(-1, d)).reshape(n_i, chunks, d)
    ids = rng.permutation(np.repeat(np.arange(n_i), caps))
    texts = _unit(img_chunks[ids, rng.integers(chunks, size=ids.size)]
                  + 0.5 * rng.normal(size=(ids.size, d)))

    def score_fn(img_idx, txt_idx):
        return np.einsum("imd,td->itm", img_chunks[img_idx], texts[txt_idx]).max(axis=2)

    def pair_score_fn(img_idx, txt_idx):
        return np.einsum("pmd,pd->pm", img_chunks[img_idx], texts[txt_idx]).max(axis=1)

    pooled = _unit(img_chunks.mean(axis=1))
    return pooled, texts, ids, score_fn, pair_score_fn


def test_shortlist_recall_loss_exhaustive_reference_and_full_list():
    pooled, texts, ids, score_fn, pair_fn = _multi_vector_problem(18)
    out = shortlist_recall_loss(pooled, texts, ids, score_fn, k_shorts=(5, 20, 200),
                                block_images=7)
    # Exhaustive reference = the brute-force metrics of the dense score matrix.
    s = score_fn(np.arange(40), np.arange(texts.shape[0]))
    n_i, n_t = s.shape
    tol = DEFAULT_SCORE_TIE_TOL  # the documented tie rule of the model-score path
    r_i2t = np.array([(s[i][ids != i] >= s[i][ids == i].max() - tol).sum() for i in range(n_i)])
    r_t2i = np.array([(np.delete(s[:, c], ids[c]) >= s[ids[c], c] - tol).sum()
                      for c in range(n_t)])
    for k in (1, 5, 10):
        assert out["exhaustive"][f"i2t_r{k}"] == pytest.approx(100 * np.mean(r_i2t < k))
        assert out["exhaustive"][f"t2i_r{k}"] == pytest.approx(100 * np.mean(r_t2i < k))
    # k_short >= gallery size (capped at 40 for t2i, 200 for i2t): no loss at all.
    assert all(v == 0 for v in out["shortlist"][200]["delta"].values())
    assert out["shortlist"][5]["delta"]["rsum"] <= out["shortlist"][20]["delta"]["rsum"] + 1e-9
    assert out["shortlist"][20]["speedup"] > 0
    # The pair-score path re-scores the same candidates.
    pair = shortlist_recall_loss(pooled, texts, ids, score_fn, k_shorts=(5,),
                                 pair_score_fn=pair_fn)
    assert_metrics_equal(pair["shortlist"][5]["metrics"], out["shortlist"][5]["metrics"],
                         RECALL_KEYS)


def test_shortlist_loses_recall_only_when_positive_falls_outside():
    rng = np.random.default_rng(19)
    n_i, d = 30, 16
    v = _unit(rng.normal(size=(n_i, d)))
    ids = np.arange(n_i)
    t = v.copy()  # exact score: caption c matches its own image perfectly

    def score_fn(img_idx, txt_idx):
        return v[img_idx] @ t[txt_idx].T

    # Pooled vectors agree with the exact score except for caption 0, whose pooled vector points
    # away from its image: it falls out of every short list that matters.
    t_pooled = t.copy()
    t_pooled[0] = -v[0]
    base = shortlist_recall_loss(v, t, ids, score_fn, k_shorts=(10, n_i), ks=(1,))
    moved = shortlist_recall_loss(v, t_pooled, ids, score_fn, k_shorts=(10, n_i), ks=(1,))
    assert base["exhaustive"]["i2t_r1"] == 100 and base["exhaustive"]["t2i_r1"] == 100
    assert all(x == 0 for x in base["shortlist"][10]["delta"].values())
    # Caption 0 is outside image 0's i2t list and image 0 outside caption 0's t2i list.
    assert moved["shortlist"][10]["delta"]["i2t_r1"] == pytest.approx(-100 / n_i)
    assert moved["shortlist"][10]["delta"]["t2i_r1"] == pytest.approx(-100 / n_i)
    # With the whole gallery listed, re-scoring recovers the exhaustive result.
    assert all(x == 0 for x in moved["shortlist"][n_i]["delta"].values())


def test_shortlist_rerank_validates_rescore_shape():
    v = _unit(np.random.default_rng(20).normal(size=(5, 4)))
    with pytest.raises(ValueError, match="rescore_fn returned shape"):
        shortlist_rerank(v, v, 3, lambda q, c: np.zeros((len(q), 2)))


# ------------------------------------------------------------------------------------------------
# Ties under float rounding
# ------------------------------------------------------------------------------------------------
def test_tie_tolerance_is_a_few_ulps_of_the_score_scale_and_dimension():
    import math

    u = 2.0 ** -24
    for d in (16, 64, 512, 1024):
        assert ev.tie_tolerance(d) == pytest.approx(2 * (math.ceil(math.log2(d)) + 1) * u)
    # 10 float32 ulps of 1 at d = 512 (it was 6.1e-5, ~500 ulps, before issue 25), scaled with
    # the scores (AVSE's MaxSim sums span [-q, q]).
    assert ev.tie_tolerance(512) == pytest.approx(1.19e-6, rel=1e-2)
    assert ev.tie_tolerance(512, scale=8.0) == pytest.approx(8 * ev.tie_tolerance(512))
    from retrieval.rerank import DEFAULT_SCORE_TIE_TOL, _check_tie_tol

    assert DEFAULT_SCORE_TIE_TOL == ev.tie_tolerance(512)
    assert _check_tie_tol(None, np.array([[-6.0, 3.0]])) == ev.tie_tolerance(512, scale=6.0)
    # Measured: the same unit-vector score computed by blocks of different shapes stays inside it.
    rng = np.random.default_rng(0)
    x = _unit(rng.normal(size=(300, 512)))
    y = _unit(rng.normal(size=(301, 512)))
    full = x @ y.T
    for rows in (1, 7, 64):
        for a in range(0, 300, rows):
            assert np.abs(x[a:a + rows] @ y.T - full[a:a + rows]).max() <= ev.tie_tolerance(512)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_rounding_level_gaps_tie_pessimistically(direction):
    # A negative caption equal to the positive up to float rounding (one ulp-sized nudge, above
    # or below) ties with it whichever side the rounding fell: the image's rank is 1, not 0.
    rng = np.random.default_rng(8)
    d = 64
    images = _unit(rng.normal(size=(10, d)))
    ids = np.arange(10)
    texts = _unit(images + 0.03 * rng.normal(size=(10, d)))
    # Move the copy of caption 0 towards (or away from) image 0 by about 1e-6 in score: far
    # above float32 resolution, far below the tolerance (7.9e-6 at d = 64).
    t0, v0 = texts[0].astype(np.float64), images[0].astype(np.float64)
    towards = v0 - (v0 @ t0) * t0
    twin = t0 + direction * 2e-6 * towards / np.linalg.norm(towards)
    assert 2e-7 < abs(float(twin @ v0 / np.linalg.norm(twin) - t0 @ v0)) < 3e-6
    texts = np.vstack([texts, twin.astype(np.float32)])
    ids = np.append(ids, 1)  # the twin belongs to image 1: a negative for image 0
    for batch_size in (1, 3, 4096):
        m = retrieval_metrics(images, texts, ids, ks=(1, 2), batch_size=batch_size)
        assert m["i2t_r1"] == pytest.approx(90.0)  # image 0 lost R@1 to the tie
        assert m["i2t_r2"] == 100.0
    exact = retrieval_metrics(images, texts, ids, ks=(1, 2), tie_tol=0.0)
    # Without the tolerance the nudge alone decides.
    assert exact["i2t_r1"] == (90.0 if direction > 0 else 100.0)


def test_duplicated_captions_give_the_same_metrics_at_every_batch_size(monkeypatch):
    # Captions copied across images (as COCO has): bit-identical embeddings scored in blocks of
    # several shapes and by FAISS must always tie; the metrics may not depend on batch_size.
    rng = np.random.default_rng(9)
    images, texts, ids = make_problem(rng, 60, 5, d=512, noise=0.8)
    copies = rng.choice(texts.shape[0], size=80, replace=False)
    texts[copies[40:]] = texts[copies[:40]]
    results = []
    for batch_size, block in [(4096, 1 << 24), (1, 511), (7, 3001), (33, 1 << 12)]:
        monkeypatch.setattr(metrics_module, "_MAX_BLOCK_ENTRIES", block)
        results.append(retrieval_metrics(images, texts, ids, batch_size=batch_size))
    for other in results[1:]:
        assert_metrics_equal(other, results[0])
    assert_metrics_equal(results[0], reference_metrics(images, texts, ids))


def test_tie_tol_validated_and_rerank_ties():
    images = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="tie_tol"):
        retrieval_metrics(images, images, np.arange(3), tie_tol=-1.0)
    # Image 0's negative caption scores 1e-7 below its positive: a tie by default (rank 1),
    # a win with tie_tol=0 (rank 0).
    i2t = (np.array([[0.5, 0.5 - 1e-7], [1.0, 0.0]]), np.array([[0, 1], [1, 0]]))
    t2i = (np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[0, 1], [1, 0]]))
    ids = np.array([0, 1])
    assert rerank_metrics(i2t, t2i, ids, ks=(1,))["i2t_r1"] == 50.0
    assert rerank_metrics(i2t, t2i, ids, ks=(1,), tie_tol=0.0)["i2t_r1"] == 100.0
    with pytest.raises(ValueError, match="tie_tol"):
        rerank_metrics(i2t, t2i, ids, ks=(1,), tie_tol=float("nan"))


# ------------------------------------------------------------------------------------------------
# GPU placement
# ------------------------------------------------------------------------------------------------
def test_gpu_placement_keeps_each_rank_on_its_own_gpu(monkeypatch):
    from retrieval import gpu_placement

    monkeypatch.setattr(gpu_placement, "faiss_gpu_count", lambda: 4)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert gpu_placement.resolve_faiss_gpus("auto") == [0, 1, 2, 3]
    assert gpu_placement.resolve_faiss_gpus(False) == []
    assert gpu_placement.resolve_faiss_gpus([1, 2]) == [1, 2]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert gpu_placement.resolve_faiss_gpus("auto") == [1]
    assert gpu_placement.resolve_faiss_gpus(True) == [1]
    monkeypatch.setenv("LOCAL_RANK", "5")  # fewer visible devices than local ranks: wraps
    assert gpu_placement.resolve_faiss_gpus("auto") == [1]
    with pytest.raises(ValueError, match="GPU 7"):
        gpu_placement.resolve_faiss_gpus(7)
    with pytest.raises(ValueError, match="use_gpu"):
        gpu_placement.resolve_faiss_gpus("all")
    monkeypatch.setattr(gpu_placement, "faiss_gpu_count", lambda: 0)
    assert gpu_placement.resolve_faiss_gpus("auto") == []
    with pytest.raises(RuntimeError, match="sees none"):
        gpu_placement.resolve_faiss_gpus(0)
