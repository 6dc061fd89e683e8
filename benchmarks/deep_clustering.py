"""Deep multi-view clustering: MGBCC and VGMGC beside MGF, mPAC and the baselines.

Runs, for seeds 0..4:

* on every catalogued feature dataset with at most 2,000 samples (preprocessed once with
  ``preprocess_views(kind="auto")``, as in every other benchmark): ``MGBCC`` and ``VGMGC`` at
  their defaults (VGMGC builds one Gaussian kNN graph per view), their official-behaviour rows
  (``variant="reference"``), ``MGF``, ``mPAC``, and the baselines k-means and kNN spectral
  clustering on the concatenation and mvlearn's ``MultiviewSpectralClustering`` (when installed);
* on the graph datasets ACM, Cora and Citeseer: ``VGMGC``, ``VGMGC (reference)`` and the graph
  baselines k-means on the node features, regularised spectral clustering on the sum of the
  graphs (the graphs are disconnected; plain spectral clustering returns their small components)
  and k-means on propagated features ``sum_v (D^-1/2 (A_v + I) D^-1/2)^k X`` with ``k = 2``
  fixed in advance (``PROPAGATION_STEPS``; SGC's filter, never chosen with labels).

The reference rows use the official code's behaviour and, where its README gives a training
command for the dataset (ACM, Cora, Citeseer, 3Sources, BBCSport), that command's
hyper-parameters (``OFFICIAL_VGMGC``), with the same epoch budget as ours (the official runs stop
on the best *true* accuracy, which no row here does).

Every run is appended to ``benchmarks/results/deep_clustering.jsonl`` (runs already there are
skipped: the script is resumable); the first seed of each pair runs in a child process capped at
``--cap`` seconds, and a pair whose first fit takes longer than ``--slow`` seconds runs only its
first ``--slow-seeds`` seeds. The report ``deep_clustering.md`` and the plot
``deep_clustering_acc.png`` are rebuilt at the end (or with ``--report-only``).

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/deep_clustering.py
    .venv/bin/python benchmarks/deep_clustering.py --datasets acm,bbcsport --seeds 0-1
    .venv/bin/python benchmarks/deep_clustering.py --report-only
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _common import (  # noqa: E402
    aggregate,
    append_jsonl,
    code_version,
    load_jsonl,
    load_preprocessed,
    markdown_table,
    method_registry,
    mvlearn_available,
    parse_seeds,
    plot_scores,
    regularized_spectral_clustering,
    run_capped,
    supersede_records,
)
from tune_deep import TUNING_DATASETS, tuned_on  # noqa: E402

from mvlearn_plus.datasets import list_datasets, load_dataset  # noqa: E402
from mvlearn_plus.metrics import evaluate_clustering  # noqa: E402

RESULTS = HERE / "results"
JSONL = RESULTS / "deep_clustering.jsonl"
REPORT = RESULTS / "deep_clustering.md"
PLOT = RESULTS / "deep_clustering_acc.png"

MAX_FEATURE_SAMPLES = 2000
GRAPH_DATASETS = ["acm", "cora", "citeseer"]
DEEP = ["MGBCC", "VGMGC"]
FEATURE_BASELINES = ["k-means (concat)", "spectral (concat)", "mvlearn MVSC"]
GRAPH_BASELINES = ["k-means (features)", "spectral (sum of graphs)", "k-means (propagated)"]
#: Propagation steps of the propagated-feature baseline, fixed before looking at any result:
#: two, the usual order of SGC-style low-pass filters (SGC's default on Cora and Citeseer).
PROPAGATION_STEPS = 2
FEATURE_METHODS = ["MGBCC", "MGBCC (reference)", "VGMGC", "VGMGC (reference)", "MGF", "mPAC",
                   *FEATURE_BASELINES]
GRAPH_METHODS = ["VGMGC", "VGMGC (reference)", *GRAPH_BASELINES]
#: Ablations of VGMGC's own mechanisms (issue 28), each one switch off at the defaults; run on
#: request (``--methods``) on datasets no default was tuned on, and reported against the
#: default row on the same seeds.
ABLATIONS = {
    "VGMGC (lambda_emd=0)": dict(lambda_emd=0.0),
    "VGMGC (no self-training)": dict(self_training=False),
    "VGMGC (no consensus graph)": dict(graph_k=0),
}
MATCH_TOL = 0.005
#: The last commit that changed what each estimator computes; a row with a record from before
#: it is marked in the report (it shows the earlier code until rerun with --supersede).
MODEL_CHANGED = {
    "VGMGC": ("c6f0714", "sparse path estimating the dense objective, switch at 500 nodes"),
    "VGMGC (reference)": ("c6f0714", "the same split of the code; the official variant may "
                                     "differ"),
    "MGBCC": ("1a532a1", "ball seeding by inverse-CDF draws: same distribution, another "
                         "random stream"),
}

#: The official README's training commands (spec 4.6); toolbox defaults elsewhere.
OFFICIAL_VGMGC = {
    "acm": dict(order=8, weight_soft=0.9, min_belief=0.7, max_belief=0.99, lambda_emd=1.0,
                kl_step=5.0, threshold=0.8, temperature=5.0),
    "cora": dict(order=10, weight_soft=1.0, min_belief=0.2, max_belief=0.99, lambda_emd=0.2,
                 kl_step=5.0, threshold=0.5, temperature=1.0),
    "citeseer": dict(order=8, weight_soft=1.0, min_belief=0.2, max_belief=0.99, lambda_emd=1.0,
                     kl_step=5.0, threshold=0.5, temperature=1.0),
    "3sources": dict(order=1, weight_soft=1.0, min_belief=0.2, max_belief=0.99, lambda_emd=10.0,
                     kl_step=5.0, threshold=0.5, temperature=1.0, knn_k=15),
    "bbcsport": dict(order=2, weight_soft=1.0, min_belief=0.2, max_belief=0.99, lambda_emd=100.0,
                     kl_step=5.0, threshold=0.5, temperature=1.0, knn_k=20),
}

#: Published numbers (spec 3.8 and 4.10): ACC / NMI in %, and how they were selected.
OFFICIAL_NUMBERS = [
    ("MGBCC", "bbcsport", "95.59 / 86.86", "best epoch of one run, **selected with true labels**"),
    ("MGBCC", "bbcsport", "74.45 / 78.47", "final epoch of the same run (no epoch selection; how "
     "its settings were chosen is not recorded)"),
    ("MGBCC", "cora", "about 60.4 / 41.4", "early sweep, best epoch, **selected with true "
     "labels**; not run here (Cora is a graph data set, MGBCC takes feature views)"),
    ("MGBCC", "caltech101-20", "80.64 / 76.41", "best epoch of the best of 768 grid rows, "
     "**selected with true labels**; data set not catalogued"),
    ("VGMGC", "acm", "94.3 / 77.3", "best-ACC checkpoint, **selected with true labels**"),
    ("VGMGC", "cora", "73.5 / 55.6", "best-ACC checkpoint, **selected with true labels**; "
     "official data: the citation graph twice (ours: citation + PPR)"),
    ("VGMGC", "citeseer", "70.1 / 45.2", "best-ACC checkpoint, **selected with true labels**; "
     "official data: 3,327 nodes with 15 unlabelled ones (ours: 3,312) and the graph twice"),
    ("VGMGC", "bbcsport", "98.3 / 94.6", "best-ACC checkpoint, **selected with true labels**"),
    ("VGMGC", "3sources", "94.7 / 86.5", "best-ACC checkpoint, **selected with true labels**"),
]


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------
def _mgbcc(views, c, seed, **params):
    from mvlearn_plus.cluster import GranularBallContrastiveClustering

    model = GranularBallContrastiveClustering(n_clusters=c, random_state=seed, device="cpu",
                                              **params).fit(views)
    return model.labels_, {"final_loss": model.loss_history_[-1]["loss"]}


def _vgmgc(X, graphs, c, seed, **params):
    from mvlearn_plus.cluster import VariationalGraphGeneratorClustering

    with warnings.catch_warnings():
        # the reference rows warn that theta = 0.8 empties the official graph: that is measured
        warnings.filterwarnings("ignore", message="variant='reference'", category=UserWarning)
        model = VariationalGraphGeneratorClustering(
            n_clusters=c, random_state=seed, device="cpu", **params
        ).fit(X, graphs=graphs)
    return model.labels_, {
        "final_loss": model.loss_history_[-1]["loss"],
        "algorithm": model.algorithm_,
        "consensus_edges": int(model.consensus_graph_.nnz // 2),
        "view_weights": [round(float(w), 4) for w in model.view_weights_],
    }


def _graph_kmeans(data, c, seed):
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import normalize

    return KMeans(c, n_init=10, random_state=seed).fit_predict(normalize(data.data)), {}


def _graph_propagated_kmeans(data, c, seed):
    # k-means on sum_v (D^-1/2 (A_v + I) D^-1/2)^k X, L2-normalised like the raw-feature row.
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import normalize

    from mvlearn_plus.graphs import propagate_features

    propagated = propagate_features(data.graphs, data.data, n_steps=PROPAGATION_STEPS)
    if hasattr(propagated, "toarray"):
        # Propagation fills the sparse features in (Cora 68 %, ACM 91 %): k-means runs several
        # times faster on the dense block, which is small at these sizes.
        propagated = propagated.toarray()
    return KMeans(c, n_init=10, random_state=seed).fit_predict(normalize(propagated)), {}


def _graph_spectral(data, c, seed):
    # Regularised: the graphs are disconnected (see regularized_spectral_clustering).
    return regularized_spectral_clustering(data.graphs, c, seed), {}


def _predates(commit: str, method: str) -> bool:
    """Whether a record made at commit predates the last change of method's model."""
    import subprocess

    if method not in MODEL_CHANGED:
        return False
    if not commit:
        # Records without a commit come from before commits were recorded: older than any
        # change listed here.
        return True
    changed = MODEL_CHANGED[method][0]
    result = subprocess.run(["git", "merge-base", "--is-ancestor", changed, commit],
                            cwd=HERE.parent, capture_output=True)
    # 0: the record descends from the change; 1: it does not; else the commit is unknown
    # here (rewritten history), so nothing says it is current.
    return result.returncode != 0


def run_one(dataset: str, method: str, seed: int) -> dict:
    """Load, fit and score one (dataset, method, seed); module level so a child can run it."""
    graph = dataset in GRAPH_DATASETS
    if graph:
        data = load_dataset(dataset)
        y, c = data.target, data.n_clusters
    else:
        views, y, _ = load_preprocessed(dataset)
        c = int(np.unique(y).size)
    reference = dict(variant="reference", max_epochs=150, **OFFICIAL_VGMGC.get(dataset, {}))
    start = time.perf_counter()
    if method == "MGBCC":
        labels, extra = _mgbcc(views, c, seed)
    elif method == "MGBCC (reference)":
        labels, extra = _mgbcc(views, c, seed, variant="reference")
    elif method == "VGMGC":
        labels, extra = _vgmgc(data.data, data.graphs, c, seed) if graph else _vgmgc(
            views, None, c, seed)
    elif method == "VGMGC (reference)":
        labels, extra = (_vgmgc(data.data, data.graphs, c, seed, **reference) if graph
                         else _vgmgc(views, None, c, seed, **reference))
    elif method in ABLATIONS:
        labels, extra = (_vgmgc(data.data, data.graphs, c, seed, **ABLATIONS[method]) if graph
                         else _vgmgc(views, None, c, seed, **ABLATIONS[method]))
    elif method == "k-means (features)":
        labels, extra = _graph_kmeans(data, c, seed)
    elif method == "spectral (sum of graphs)":
        labels, extra = _graph_spectral(data, c, seed)
    elif method == "k-means (propagated)":
        labels, extra = _graph_propagated_kmeans(data, c, seed)
    else:
        labels, extra = method_registry()[method].run(views, c, seed), {}
    elapsed = time.perf_counter() - start
    scores = evaluate_clustering(y, np.asarray(labels))
    return {"dataset": dataset, "method": method, "seed": seed, "time": elapsed, **scores,
            **extra, **code_version()}


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def feature_datasets() -> list:
    sizes = {d: int(load_dataset(d).target.size) for d in list_datasets(kind="features")}
    return sorted((d for d, n in sizes.items() if n <= MAX_FEATURE_SAMPLES),
                  key=lambda d: (sizes[d], d))


def methods_for(dataset: str) -> list:
    if dataset in GRAPH_DATASETS:
        return [*GRAPH_METHODS, *ABLATIONS]
    return [m for m in [*FEATURE_METHODS, *ABLATIONS]
            if m != "mvlearn MVSC" or mvlearn_available()]


def run_all(datasets, seeds, cap, slow, slow_seeds, only_methods=None) -> None:
    # Ablations run only when named: they cost three default fits each.
    only_methods = only_methods or [m for m in [*FEATURE_METHODS, *GRAPH_METHODS]]
    records = load_jsonl(JSONL)
    done = {(r["dataset"], r["method"], r["seed"]) for r in records}
    failed = {(r["dataset"], r["method"]) for r in records if r.get("status", "ok") != "ok"}
    first = {(r["dataset"], r["method"]): r["time"] for r in records
             if r["seed"] == seeds[0] and r.get("status", "ok") == "ok"}
    for dataset in datasets:
        for method in methods_for(dataset):
            if only_methods and method not in only_methods:
                continue
            for index, seed in enumerate(seeds):
                key = (dataset, method)
                if (dataset, method, seed) in done or key in failed:
                    continue
                if key in first and first[key] > slow and index >= slow_seeds:
                    continue
                base = {"dataset": dataset, "method": method, "seed": seed,
                        "date": datetime.datetime.now().isoformat(timespec="seconds")}
                wall = time.perf_counter()
                if index == 0:
                    status, payload = run_capped(run_one, (dataset, method, seed), cap)
                else:
                    try:
                        status, payload = "ok", run_one(dataset, method, seed)
                    except Exception:  # noqa: BLE001 - recorded; the benchmark goes on
                        status, payload = "error", traceback.format_exc(limit=5)
                wall = time.perf_counter() - wall
                if status == "ok":
                    record = {**payload, **base, "status": "ok"}
                elif status == "timeout":
                    record = {**base, "status": "skipped", "time": wall,
                              "reason": f"fit > {cap / 60:.0f} min cap on 2 cores"}
                else:
                    record = {**base, "status": "error", "time": wall,
                              "reason": payload.strip().splitlines()[-1][:200],
                              "traceback": payload}
                append_jsonl(record, JSONL)
                done.add((dataset, method, seed))
                if record["status"] != "ok":
                    failed.add(key)
                    log(f"{dataset:11s} {method:26s} seed {seed}: {record['status']} "
                        f"({record['reason']})")
                    break
                if index == 0:
                    first[key] = record["time"]
                log(f"{dataset:11s} {method:26s} seed {seed}: ACC {record['acc']:.3f} "
                    f"NMI {record['nmi']:.3f} fit {record['time']:.1f}s")


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _verdicts(agg, datasets, ours, baselines_of, reasons):
    """Datasets where ``ours`` matches or beats the best baseline; a dataset without a result
    for ``ours`` (stopped, failed, not run) counts as a miss. Datasets whose labels chose a
    default of ``ours`` (``tune_deep.tuned_on``) are not counted."""
    passed, failed = [], []
    for d in datasets:
        if d in tuned_on(ours):
            continue
        if (d, ours) not in agg:
            failed.append((d, reasons.get((d, ours), "not run")))
            continue
        gaps = {}
        for metric in ("acc", "nmi"):
            candidates = [(agg[(d, b)][metric][0], b) for b in baselines_of(d) if (d, b) in agg]
            if not candidates:
                gaps = None
                break
            best, name = max(candidates)
            gaps[metric] = (agg[(d, ours)][metric][0] - best, name, best)
        if gaps is None:
            continue
        if all(g[0] >= -MATCH_TOL for g in gaps.values()):
            passed.append(d)
        else:
            failed.append((d, gaps))
    return passed, failed


def write_report(datasets, seeds, cap, slow, slow_seeds) -> None:
    records = [r for r in load_jsonl(JSONL) if r["seed"] in set(seeds)]
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    if not ok:
        log("no records yet")
        return
    metrics = ("acc", "nmi", "ari", "f1_macro")
    agg = aggregate(ok, metrics=metrics + ("time",))
    reasons = {(r["dataset"], r["method"]): r["reason"] for r in records
               if r.get("status", "ok") != "ok"}
    commits = {(r["method"], r.get("commit", "")) for r in ok}
    stale_commits = {pair for pair in commits if _predates(pair[1], pair[0])}
    stale = {(r["dataset"], r["method"]) for r in ok
             if (r["method"], r.get("commit", "")) in stale_commits}
    features = [d for d in datasets if d not in GRAPH_DATASETS]
    graphs = [d for d in datasets if d in GRAPH_DATASETS]

    def table(group, methods):
        text = markdown_table(ok, group, methods, metrics=metrics)
        lines = []
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) > 2 and (cells[0], cells[1]) in agg:
                runs = agg[(cells[0], cells[1])]["n_runs"]
                method = cells[1]
                if runs != len(seeds):
                    cells[1] = f"{cells[1]} ({runs} seeds)"
                if method in DEEP and cells[0] in tuned_on(method):
                    cells[1] = f"{cells[1]} *(tuned on)*"
                if (cells[0], method) in stale:
                    cells[1] = f"{cells[1]} †"
                line = "| " + " | ".join(cells) + " |"
            elif len(cells) > 2 and cells[2] == "n/a":
                why = reasons.get((cells[0], cells[1]), "not run")
                cells[2] = f"n/a ({why})"
                line = "| " + " | ".join(cells) + " |"
            lines.append(line)
        return "\n".join(lines)

    def target_lines(ours, group, baselines_of, label):
        passed, failed = _verdicts(agg, group, ours, baselines_of, reasons)
        total = len(passed) + len(failed)
        skipped = [d for d in group if d in tuned_on(ours)]
        lines = [f"* **{ours}** matches or beats the best baseline on ACC and NMI on "
                 f"{len(passed)} of {total} {label} datasets it was not tuned on: "
                 f"{', '.join(passed) if passed else 'none'}"
                 + (f" (tuned on, not counted: {', '.join(skipped)})." if skipped else ".")]
        for d, gaps in failed:
            if isinstance(gaps, str):
                lines.append(f"  * {d}: no result ({gaps})")
                continue
            parts = [f"{m.upper()} {g:+.3f} vs {name} {best:.3f}"
                     for m, (g, name, best) in gaps.items()]
            lines.append(f"  * {d}: " + "; ".join(parts))
        return lines, len(passed), total

    def aim(ours, dataset, threshold):
        if (dataset, ours) not in agg:
            why = reasons.get((dataset, ours), "not run yet")
            return f"* {ours} on {dataset}: ACC >= {threshold:.2f}: **missed** ({why})."
        mean, std = agg[(dataset, ours)]["acc"]
        verdict = "**met**" if mean >= threshold else "**missed**"
        return (f"* {ours} on {dataset}: ACC {mean:.3f} ± {std:.3f} over "
                f"{agg[(dataset, ours)]['n_runs']} seeds (aim >= {threshold:.2f}): {verdict}"
                + (" † (measured before the last change of the model; not rerun)"
                   if (dataset, ours) in stale else "")
                + (" (*tuned on*: defaults were chosen with this dataset's labels; see above)."
                   if dataset in tuned_on(ours) else "."))

    def feature_baselines(d):
        return FEATURE_BASELINES

    def graph_baselines(d):
        return GRAPH_BASELINES

    mgbcc_lines, mgbcc_pass, mgbcc_total = target_lines("MGBCC", features, feature_baselines,
                                                        "feature")
    vg_f_lines, vg_f_pass, vg_f_total = target_lines("VGMGC", features, feature_baselines,
                                                     "feature")
    vg_g_lines, vg_g_pass, vg_g_total = target_lines("VGMGC", graphs, graph_baselines, "graph")

    def share(passed, total, fraction, label):
        needed = int(np.ceil(fraction * total)) if total else 0
        return f"{passed} of {total} {label} datasets (aim >= {needed}): " + (
            "**met**" if total and passed >= needed else "**missed**")

    gains = ["| dataset | MGBCC ΔACC | MGBCC ΔNMI | VGMGC ΔACC | VGMGC ΔNMI |", "|---|---|---|---|---|"]
    for d in datasets:
        cells = []
        for ours in DEEP:
            for metric in ("acc", "nmi"):
                ref = f"{ours} (reference)"
                if (d, ours) in agg and (d, ref) in agg:
                    cells.append(f"{agg[(d, ours)][metric][0] - agg[(d, ref)][metric][0]:+.3f}")
                else:
                    cells.append("n/a")
        if any(c != "n/a" for c in cells):
            gains.append(f"| {d} | " + " | ".join(cells) + " |")

    official = ["| method | dataset | published ACC / NMI (%) | how it was selected | ours, "
                "label-free (ACC / NMI, %) |", "|---|---|---|---|---|"]
    for method, dataset, numbers, how in OFFICIAL_NUMBERS:
        ours = agg.get((dataset, method))
        mine = (f"{100 * ours['acc'][0]:.1f} ± {100 * ours['acc'][1]:.1f} / "
                f"{100 * ours['nmi'][0]:.1f} ± {100 * ours['nmi'][1]:.1f}") if ours else "n/a"
        official.append(f"| {method} | {dataset} | {numbers} | {how} | {mine} |")

    ablation = ["| dataset | row | seeds | ACC | NMI | ΔACC vs VGMGC (same seeds) | "
                "ΔNMI vs VGMGC (same seeds) |", "|---|---|---|---|---|---|---|"]
    by_key = {(r["dataset"], r["method"], r["seed"]): r for r in ok}
    for d in datasets:
        for name in ABLATIONS:
            runs = sorted(s for (dd, m, s) in by_key if dd == d and m == name)
            paired = [s for s in runs if (d, "VGMGC", s) in by_key]
            if not runs:
                continue
            row = [by_key[(d, name, s)] for s in runs]
            cells = [f"{np.mean([r[m] for r in row]):.3f} ± {np.std([r[m] for r in row]):.3f}"
                     for m in ("acc", "nmi")]
            for metric in ("acc", "nmi"):
                if paired:
                    diffs = [by_key[(d, name, s)][metric] - by_key[(d, "VGMGC", s)][metric]
                             for s in paired]
                    cells.append(f"{np.mean(diffs):+.3f} ± {np.std(diffs):.3f}")
                else:
                    cells.append("n/a")
            mark = " *(tuned on)*" if d in tuned_on("VGMGC") else ""
            ablation.append(f"| {d}{mark} | {name} | {len(runs)} | " + " | ".join(cells) + " |")

    total_fit = sum(r["time"] for r in ok) / 60
    text = "\n".join([
        "# Deep multi-view clustering: MGBCC and VGMGC",
        "",
        f"Generated {datetime.date.today().isoformat()} by `benchmarks/deep_clustering.py` on "
        f"{platform.machine()} with {os.cpu_count()} cores (OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS')}). Seeds {', '.join(map(str, seeds))}; cells are "
        "mean ± std over seeds; bold = best mean in the dataset. F1 is the macro F1 after the ACC "
        "matching (the VGMGC paper's F1). Fit time in seconds per fit, wall clock: part of the "
        "run shared the 2 cores with other work, so single times can be several times too "
        "long (`deep_scaling.md` has clean timings). "
        f"Sum of the recorded fit times: {total_fit:.0f} min. \"Matches\" a baseline means a "
        f"mean within {MATCH_TOL} of it.",
        "",
        "* **No label selection inside a run.** Every estimator runs a fixed number of epochs "
        "with one global setting for all datasets and keeps its last model; labels only score "
        "the final labels. **The global defaults were chosen with the labels of named "
        "datasets, marked *tuned on* below and left out of every target count:** MGBCC's "
        f"encoder and VGMGC's self-training schedule by `benchmarks/tune_deep.py` "
        f"([tune_deep.md](tune_deep.md); MGBCC on {', '.join(TUNING_DATASETS['MGBCC'])}, "
        f"VGMGC on {', '.join(TUNING_DATASETS['VGMGC'])}); earlier pilot runs still in force "
        "chose MGBCC's batch size and scaling on BBCSport, VGMGC's pretraining schedule on ACM "
        "and Cora (1 to 4 seeds each). Caveat: MGBCC's batch size and scaling were also "
        "checked in an earlier 2-seed sweep over ten feature datasets whose script is not in "
        "the repository, so MGBCC's counts are not fully held out. Each record names the "
        "commit it ran at (`commit` in the JSONL): rows from before a change of defaults show "
        "the earlier defaults until they are rerun.",
        "* `(reference)` rows: `variant=\"reference\"`, the official code's behaviour, run on "
        "seeds 0 and 1. For MGBCC everything else is our default, so the row isolates the "
        "ball k-means (scikit-learn, `n_init=10`, fixed seed, on the host) and the uneven last "
        "mini-batch; it cannot show the largest official defect, choosing the epoch and the "
        "grid point by true accuracy. VGMGC's reference rows use the official README's "
        "per-dataset hyper-parameters where it has a command (ACM, Cora, Citeseer, 3Sources, "
        "BBCSport; toolbox values elsewhere), the official schedule and edge rule, and 150 "
        "epochs like ours (the official runs train up to 10,000 epochs and keep the "
        "checkpoint with the best *true* accuracy, which no row here does).",
        "* Feature datasets: every catalogued dataset with at most "
        f"{MAX_FEATURE_SAMPLES} samples, preprocessed with `preprocess_views(kind=\"auto\")`; "
        "baselines as in `clustering_quality.md` (k-means and kNN spectral clustering on the "
        "concatenation, mvlearn's MultiviewSpectralClustering). VGMGC builds one Gaussian kNN "
        "graph per view there. Graph datasets: baselines are k-means on the (L2-normalised) "
        "node features and regularised spectral clustering (Qin and Rohe, 2013: every degree "
        "raised by the mean degree) on the sum of the graphs; the graphs are disconnected "
        "(ACM's co-author graph has 717 components) and plain spectral clustering returns "
        "their small components (ACM ACC 0.353, Cora 0.301); and k-means on propagated "
        "features, `sum_v (D^-1/2 (A_v + I) D^-1/2)^k X` (`mvlearn_plus.graphs."
        f"propagate_features`) with k = {PROPAGATION_STEPS} fixed in advance (SGC's filter "
        "order; never chosen with labels), L2-normalised like the raw-feature row.",
        f"* A pair whose first fit takes over {slow:.0f} s runs only its first {slow_seeds} "
        f"seeds (marked); a fit over {cap / 60:.0f} min is stopped and shown as n/a.",
        "* † marks a row with a record made before the last change of the model: "
        + "; ".join(f"{name} at `{commit}` ({what})" for name, (commit, what)
                    in MODEL_CHANGED.items())
        + ". Such a row shows the earlier code until it is rerun (`--supersede`).",
        "* Raw records: [deep_clustering.jsonl](deep_clustering.jsonl); plot: "
        "[deep_clustering_acc.png](deep_clustering_acc.png).",
        "",
        "## Aims",
        "",
        aim("MGBCC", "bbcsport", 0.85),
        aim("VGMGC", "acm", 0.90),
        aim("VGMGC", "cora", 0.68),
        "* Counted on the datasets each estimator was not tuned on (MGBCC: all but "
        f"{', '.join(tuned_on('MGBCC'))}; VGMGC: all but {', '.join(tuned_on('VGMGC'))}).",
        "* MGBCC matches or beats the best baseline on "
        f"{share(mgbcc_pass, mgbcc_total, 1 / 2, 'feature')}.",
        "* VGMGC matches or beats the best baseline on "
        f"{share(vg_g_pass, vg_g_total, 2 / 3, 'graph')} ({vg_f_pass} of {vg_f_total} feature "
        "datasets, no aim).",
        "",
        *mgbcc_lines,
        *vg_f_lines,
        *vg_g_lines,
        "",
        "## Published numbers beside ours",
        "",
        *official,
        "",
        "## Feature datasets",
        "",
        table(features, FEATURE_METHODS),
        "",
        "## Graph datasets",
        "",
        table(graphs, GRAPH_METHODS),
        "",
        "## Ablations of VGMGC's own mechanisms",
        "",
        "Each row switches one mechanism off at the defaults: `lambda_emd=0` (the consensus "
        "graph no longer reaches the codes), `self_training=False` (no DEC loss; labels are "
        "k-means on the codes), `graph_k=0` (no consensus graph: `Ahat = I`). Differences are "
        "paired by seed against the default row; std is over those seeds. Datasets whose labels "
        "chose a default are marked.",
        "",
        *(ablation if len(ablation) > 2 else ["No ablation run yet."]),
        "",
        "## Our defaults minus the official configuration (`(reference)` rows)",
        "",
        "Mean over the seeds each row ran. For VGMGC the difference mixes the fixes with the "
        "hyper-parameters (the reference rows use the official per-dataset ones).",
        "",
        *gains,
        "",
    ])
    REPORT.write_text(text)
    log(f"wrote {REPORT}")
    plot_methods = ["MGBCC", "VGMGC", "MGF", "mPAC", "k-means (concat)", "spectral (concat)",
                    "k-means (features)", "spectral (sum of graphs)", "k-means (propagated)"]
    plot_scores(ok, datasets, [m for m in plot_methods if any(r["method"] == m for r in ok)],
                PLOT, title="Deep multi-view clustering: ACC (mean ± std over seeds)")
    log(f"wrote {PLOT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=None, help="comma-separated (default: all)")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all)")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--cap", type=float, default=1800.0, help="seconds per fit (1800)")
    parser.add_argument("--slow", type=float, default=400.0,
                        help="a pair whose first fit takes longer runs --slow-seeds seeds")
    parser.add_argument("--slow-seeds", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--supersede", action="store_true",
                        help="first move the records of --methods on --datasets to "
                             "deep_clustering.superseded.jsonl, so they run at this commit")
    parser.add_argument("--results", default=str(RESULTS),
                        help="folder for the JSONL, the report and the plot")
    args = parser.parse_args()
    global JSONL, REPORT, PLOT
    results = Path(args.results)
    JSONL, REPORT, PLOT = (results / "deep_clustering.jsonl", results / "deep_clustering.md",
                           results / "deep_clustering_acc.png")
    everything = feature_datasets() + GRAPH_DATASETS
    datasets = [d.strip() for d in args.datasets.split(",")] if args.datasets else everything
    unknown = [d for d in datasets if d not in everything]
    if unknown:
        raise SystemExit(f"unknown datasets {unknown}; choose from {everything}")
    seeds = parse_seeds(args.seeds)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    known = set(FEATURE_METHODS) | set(GRAPH_METHODS) | set(ABLATIONS)
    if methods and not set(methods) <= known:
        raise SystemExit(f"unknown methods {sorted(set(methods) - known)}; choose from "
                         f"{sorted(known)}")
    if args.supersede:
        if not (methods and args.datasets):
            raise SystemExit("--supersede needs --datasets and --methods")
        moved = supersede_records(
            JSONL, lambda r: r["dataset"] in datasets and r["method"] in methods)
        log(f"moved {moved} records to the superseded file")
    if not args.report_only:
        log(f"datasets {datasets}; seeds {seeds}; results -> {JSONL}")
        run_all(datasets, seeds, args.cap, args.slow, args.slow_seeds, methods)
    write_report(everything, seeds, args.cap, args.slow, args.slow_seeds)


if __name__ == "__main__":
    main()
