"""Multi-view graph data sets: ACM, Cora and Citeseer (downloaded), and the user's ``.npz`` files.

A graph data set is a :class:`sklearn.utils.Bunch` with ``data`` (node features, CSR float64),
``graphs`` (list of ``(n, n)`` CSR adjacency matrices, one per graph view), ``graph_names``,
``target`` (0-based int64), ``n_clusters``, ``name``, ``kind="graph"`` and ``DESCR``. It goes
straight into :class:`mvlearn_plus.cluster.VariationalGraphGeneratorClustering`::

    data = load_dataset("acm")
    VariationalGraphGeneratorClustering(n_clusters=data.n_clusters).fit(data.data,
                                                                         graphs=data.graphs)

Loaders read files and build fixed graph transforms (the personalised-PageRank view of the
citation graphs, spec 4.5); they fit nothing.
"""

from __future__ import annotations

import collections
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ._fetch import RemoteFile, github_file

__all__ = ["GRAPH_DATASETS", "GraphDatasetInfo", "load_npz", "read_acm", "read_planetoid"]


@dataclass(frozen=True)
class GraphDatasetInfo:
    """Description of one downloadable graph data set.

    Attributes
    ----------
    name : str
        ``load_dataset(name)`` key.
    title : str
    files : tuple of RemoteFile
        The published files the reader needs (downloaded into the data home on first use).
    n_samples, n_features, n_classes : int
        What the loader returns (used by the tests and to warn about replaced files).
    graph_names : tuple of str
    reader : callable
        ``reader(data_home) -> (features, graphs, target)``.
    """

    name: str
    title: str
    files: tuple[RemoteFile, ...]
    n_samples: int
    n_features: int
    n_classes: int
    graph_names: tuple
    reader: Callable

    @property
    def card(self) -> str:
        return f"graph/{self.name}.md"


# --------------------------------------------------------------------------------------------
# ACM (a MATLAB file with one dense matrix per meta-path graph)
# --------------------------------------------------------------------------------------------
def read_acm(root: Path):
    """Features, the PAP and PLP graphs and labels of ``graph/ACM3025.mat``."""
    import scipy.io

    path = root / "graph" / "ACM3025.mat"
    try:
        raw = scipy.io.loadmat(path, variable_names=["feature", "PAP", "PLP", "label"])
    except Exception as exc:  # noqa: BLE001 - any decoding failure means the file is unusable
        raise ValueError(f"{str(path)!r} could not be read as a MATLAB file: {exc}") from exc
    missing = [k for k in ("feature", "PAP", "PLP", "label") if k not in raw]
    if missing:
        raise ValueError(f"{str(path)!r} lacks the variables {missing}.")
    features = sp.csr_matrix(raw["feature"].astype(np.float64))
    graphs = [sp.csr_matrix(raw[key].astype(np.float64)) for key in ("PAP", "PLP")]
    target = np.argmax(raw["label"], axis=1).astype(np.int64)
    return features, graphs, target


# --------------------------------------------------------------------------------------------
# Planetoid citation graphs (Python-2 pickles)
# --------------------------------------------------------------------------------------------
class _PlanetoidUnpickler(pickle.Unpickler):
    """Loads only the objects the Planetoid files contain (CSR, arrays, a dict of lists)."""

    def find_class(self, module, name):
        allowed = {
            ("scipy.sparse.csr", "csr_matrix"): sp.csr_matrix,
            ("scipy.sparse._csr", "csr_matrix"): sp.csr_matrix,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("collections", "defaultdict"): collections.defaultdict,
            ("__builtin__", "list"): list,
            ("builtins", "list"): list,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if name == "_reconstruct" and module in ("numpy.core.multiarray",
                                                 "numpy._core.multiarray"):
            # numpy's array reconstructor, found the same way under numpy 1 and 2.
            return np.ndarray.__reduce__(np.zeros(0))[0]
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} from a Planetoid file (only sparse matrices, "
            "arrays and adjacency lists are expected)"
        )


def _read_pickle(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"Planetoid file not found: {str(path)!r}.")
    try:
        with open(path, "rb") as fh:
            return _PlanetoidUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable Planetoid pickle: {exc}") from exc


def read_planetoid(folder: Path, name: str):
    """Features, citation graph and labels of the Planetoid files ``ind.<name>.*``.

    The full feature matrix is ``vstack(allx, tx)`` with the test rows moved to the positions
    listed in ``test.index``. Nodes that the files give neither features nor a label (Citeseer's
    15 isolated test-range gaps) are removed together with their rows and columns of the graph.
    The adjacency lists become a symmetric binary matrix (duplicates merged; self-loops kept).
    """
    parts = {key: _read_pickle(folder / f"ind.{name}.{key}")
             for key in ("allx", "ally", "tx", "ty", "graph")}
    index_path = folder / f"ind.{name}.test.index"
    if not index_path.is_file():
        raise FileNotFoundError(f"Planetoid file not found: {str(index_path)!r}.")
    test_index = np.array([int(line) for line in index_path.read_text().split()], dtype=np.int64)
    allx, tx = sp.csr_matrix(parts["allx"]), sp.csr_matrix(parts["tx"])
    ally, ty = np.asarray(parts["ally"]), np.asarray(parts["ty"])
    n_train = allx.shape[0]
    n = max(int(test_index.max()) + 1, n_train + tx.shape[0])
    features = sp.lil_matrix((n, allx.shape[1]))
    labels = np.zeros((n, ally.shape[1]))
    features[:n_train] = allx
    labels[:n_train] = ally
    features[test_index] = tx
    labels[test_index] = ty
    features = features.tocsr()

    graph = parts["graph"]
    rows = [i for i, neighbours in graph.items() for _ in neighbours]
    cols = [j for neighbours in graph.values() for j in neighbours]
    A = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    A = ((A + A.T) > 0).astype(np.float64).tocsr()

    known = labels.sum(axis=1) > 0
    if not np.all(known):
        keep = np.flatnonzero(known)
        features, labels, A = features[keep], labels[keep], A[keep][:, keep]
    return features.astype(np.float64), A, np.argmax(labels, axis=1).astype(np.int64)


def _citation_reader(name: str):
    def reader(root: Path):
        from mvlearn_plus.graphs import personalized_pagerank

        features, citation, target = read_planetoid(root / "graph" / "planetoid", name)
        return features, [citation, personalized_pagerank(citation, alpha=0.2, n_steps=10,
                                                          top_k=32)], target

    return reader


_PLANETOID = ("kimiyoung/planetoid", "af6abf468a772cc055bec88c52e4d6f51b7c37e3")
# (SHA-256, size) of the Planetoid parts the reader uses (x, y, ... are not read).
_PLANETOID_FILES = {
    "cora": {
        "allx": ("9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543", 257305),
        "ally": ("2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71", 47959),
        "tx": ("b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a", 148025),
        "ty": ("41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad", 28135),
        "graph": ("58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d", 59847),
        "test.index": ("297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875", 5000),
    },
    "citeseer": {
        "allx": ("2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668", 595021),
        "ally": ("f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95", 55623),
        "tx": ("539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21", 260321),
        "ty": ("55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce", 24135),
        "graph": ("d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7", 61987),
        "test.index": ("2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4", 5000),
    },
}


def _planetoid_files(name: str) -> tuple[RemoteFile, ...]:
    return tuple(
        github_file(f"graph/planetoid/ind.{name}.{part}", *_PLANETOID, f"data/ind.{name}.{part}",
                    sha256, size)
        for part, (sha256, size) in _PLANETOID_FILES[name].items()
    )


_ACM_FILE = github_file("graph/ACM3025.mat", "cjpcool/VGMGC", "567f513ccb8e", "data/ACM3025.mat",
                        "b10e486a49892307a56a3d9ad48128a948d2bf2da19db9e6e7f79c6622529fdc",
                        1790625)

GRAPH_DATASETS = {
    info.name: info
    for info in (
        GraphDatasetInfo(
            "acm", "ACM papers (PAP and PLP meta-path graphs)", (_ACM_FILE,),
            3025, 1870, 3, ("PAP", "PLP"), read_acm,
        ),
        GraphDatasetInfo(
            "cora", "Cora citation graph (Planetoid) with a personalised-PageRank view",
            _planetoid_files("cora"),
            2708, 1433, 7, ("citation", "ppr"), _citation_reader("cora"),
        ),
        GraphDatasetInfo(
            "citeseer", "Citeseer citation graph (Planetoid) with a personalised-PageRank view",
            _planetoid_files("citeseer"),
            3312, 3703, 6, ("citation", "ppr"), _citation_reader("citeseer"),
        ),
    )
}


# --------------------------------------------------------------------------------------------
# The CSR-part .npz layout of graph benchmarks
# --------------------------------------------------------------------------------------------
def _csr_from_parts(archive, prefix: str, path: Path) -> sp.csr_matrix:
    keys = [f"{prefix}_{part}" for part in ("data", "indices", "indptr", "shape")]
    missing = [k for k in keys if k not in archive]
    if missing:
        raise ValueError(f"{str(path)!r}: {prefix} is incomplete, missing {missing}.")
    try:
        return sp.csr_matrix(
            (archive[keys[0]], archive[keys[1]], archive[keys[2]]),
            shape=tuple(int(s) for s in archive[keys[3]]),
        )
    except ValueError as exc:
        raise ValueError(f"{str(path)!r}: the {prefix}_* arrays do not form a valid CSR "
                         f"matrix: {exc}") from exc


def load_npz(path: str | os.PathLike[str], *, name: str | None = None):
    """Load an attributed graph stored as CSR parts in an ``.npz`` file.

    The layout is the one graph benchmarks use (e.g. shchur/gnn-benchmark): ``adj_data``,
    ``adj_indices``, ``adj_indptr``, ``adj_shape`` for the adjacency; node attributes as
    ``attr_data``/``attr_indices``/``attr_indptr``/``attr_shape`` or a dense ``attr_matrix``;
    labels as a vector ``labels`` or as ``labels_data``/... CSR parts (one-hot, argmax taken).
    The graph is returned as stored (the estimators symmetrise a directed graph with a warning).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.
    name : str, optional
        Name stored in the result; the file stem by default.

    Returns
    -------
    sklearn.utils.Bunch
        ``data`` (CSR float64 attributes), ``graphs`` (``[A]``, CSR float64),
        ``graph_names`` (``["adjacency"]``), ``target`` (0-based int64), ``n_clusters``,
        ``name``, ``kind="graph"``, ``filename`` and ``DESCR``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not an ``.npz`` archive, lacks the adjacency, attributes or labels, or their
        sizes disagree.
    """
    from sklearn.utils import Bunch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No such .npz file: {str(path)!r}.")
    try:
        with np.load(path, allow_pickle=False) as opened:
            archive = {key: opened[key] for key in opened.files}
    except Exception as exc:  # noqa: BLE001 - zip and format errors all mean "unreadable"
        raise ValueError(f"{str(path)!r} is not a readable .npz archive: {exc}") from exc
    adjacency = _csr_from_parts(archive, "adj", path).astype(np.float64)
    if "attr_data" in archive:
        features = _csr_from_parts(archive, "attr", path).astype(np.float64)
    elif "attr_matrix" in archive:
        features = sp.csr_matrix(np.asarray(archive["attr_matrix"], dtype=np.float64))
    else:
        raise ValueError(f"{str(path)!r} has no node attributes (attr_* or attr_matrix); "
                         f"keys found: {sorted(archive)}.")
    if "labels_data" in archive:
        onehot = _csr_from_parts(archive, "labels", path)
        unlabelled = np.flatnonzero(onehot.getnnz(axis=1) == 0)
        if unlabelled.size:
            raise ValueError(
                f"{str(path)!r}: {unlabelled.size} nodes have no label (all-zero rows of the "
                f"one-hot label matrix, e.g. node {unlabelled[0]}); remove them or give them a "
                "class."
            )
        labels = np.asarray(onehot.argmax(axis=1)).ravel()
    elif "labels" in archive:
        labels = np.asarray(archive["labels"]).ravel()
    else:
        raise ValueError(f"{str(path)!r} has no labels (labels or labels_*); keys found: "
                         f"{sorted(archive)}.")
    n = adjacency.shape[0]
    if adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"{str(path)!r}: the adjacency is not square: {adjacency.shape}.")
    if features.shape[0] != n or labels.shape[0] != n:
        raise ValueError(
            f"{str(path)!r}: {n} nodes in the adjacency but {features.shape[0]} attribute rows "
            f"and {labels.shape[0]} labels."
        )
    classes, target = np.unique(labels, return_inverse=True)
    stem = path.stem
    return Bunch(
        data=features,
        graphs=[adjacency],
        graph_names=["adjacency"],
        target=target.astype(np.int64),
        n_clusters=int(classes.size),
        name=name if name is not None else stem,
        kind="graph",
        filename=str(path),
        DESCR=(f"Attributed graph loaded from {str(path)!r}: {n} nodes, {adjacency.nnz} stored "
               f"edges, {features.shape[1]} attributes, {classes.size} classes.\n"),
    )
