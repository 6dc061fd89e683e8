"""Clustering quality of MGF and mPAC against baselines on every catalogued feature dataset.

Runs, on each of the 14 catalogued datasets (smallest first) and for seeds 0..9:

* ``MGF`` and ``mPAC`` at their defaults (issue 23: kNN graphs at every size; MGF's adaptive
  rank weight, mPAC's normalised indicator with random restarts), and the official behaviour
  of each (``variant="reference"``, dense, run up to 3000 samples);
* ``MGF (previous default)`` and ``mPAC (previous default)``: the defaults before issue 23
  (dense up to 3000 samples and kNN above; MGF with ``gamma=0.01``, mPAC with the one-hot
  indicator started from the consensus of the per-view partitions), on the current code;
* the baselines of ``benchmarks/_common.py``: k-means and kNN spectral clustering on the
  row-normalised concatenation of the preprocessed views, mvlearn's
  ``MultiviewSpectralClustering``, and the best single view (selected with the labels: oracle).

Every run goes through ``_common.run_benchmark`` (one dataset, one method, one seed at a time),
so preprocessing, scoring and timing are those of the demo. Each run is appended as one JSON
line to ``benchmarks/results/clustering_quality.jsonl`` and runs already there are skipped, so
the script can be interrupted and restarted, or split with ``--datasets``.

Slow pairs: when the first fit of a pair takes more than ``--slow`` seconds (60), only the first
``--slow-seeds`` seeds (3) are run for it (the table says "(k seeds)"); in practice this is
mvlearn, whose fits take minutes on the larger or many-view datasets.

Per-run safety: the first seed of a (dataset, method) pair is run in a child process with a
wall-clock cap (``--cap``, 600 s) when the dataset has at least 1000 samples or the method is
mvlearn's; if it does not finish in time the pair is recorded as skipped (with the reason) and
the other seeds are not run. The table then shows "n/a (reason)".

At the end (or with ``--report-only``) it writes ``benchmarks/results/clustering_quality.md``
(table, target check, what each fix gains) and ``clustering_acc.png`` / ``clustering_nmi.png``.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/clustering_quality.py
    .venv/bin/python benchmarks/clustering_quality.py --datasets 3sources,webkb --seeds 0-2
    .venv/bin/python benchmarks/clustering_quality.py --report-only
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402
from _common import (  # noqa: E402
    REFERENCE_MAX_SAMPLES,
    Method,
    aggregate,
    markdown_table,
    plot_scores,
    run_benchmark,
)

from mvlearn_plus.cluster import (  # noqa: E402
    MultiGraphFusionClustering,
    PartitionAlignmentClustering,
)

from mvlearn_plus.datasets import list_datasets, load_dataset  # noqa: E402


def _auto_dense_max() -> int:
    """Largest n up to which the previous defaults used the dense path (3000)."""
    for module in ("mvlearn_plus.cluster._base", "mvlearn_plus.cluster._mgf"):
        try:
            return int(getattr(__import__(module, fromlist=["DENSE_MAX_SAMPLES"]),
                               "DENSE_MAX_SAMPLES"))
        except (ImportError, AttributeError):
            continue
    return 3000


MGF_DENSE_MAX = MPAC_DENSE_MAX = _auto_dense_max()
RESULTS = HERE / "results"
JSONL = RESULTS / "clustering_quality.jsonl"
REPORT = RESULTS / "clustering_quality.md"

ORACLE = "best single view (oracle)"
BASELINES = ["k-means (concat)", "spectral (concat)", "mvlearn MVSC"]
OURS = ["MGF", "mPAC"]
#: The defaults before issue 23, beside the new ones.
PREVIOUS = ["MGF (previous default)", "mPAC (previous default)"]
METHODS = [
    "MGF", "MGF (reference)", "MGF (previous default)",
    "mPAC", "mPAC (reference)", "mPAC (previous default)",
    *BASELINES,
]
ALL_METHODS = METHODS + [ORACLE]
PLOT_METHODS = ["MGF", "MGF (previous default)", "mPAC", "mPAC (previous default)", *BASELINES,
                ORACLE]
#: Issue 23's target: each estimator matches or beats the best baseline on this many datasets.
TARGET_DATASETS = 8

#: "Matches" the best baseline: mean within this of it.
MATCH_TOL = 0.005
#: First seed of a pair runs in a capped child process from this many samples on (always for
#: mvlearn, whose dense O(n^3) iterations are the slowest).
GUARD_MIN_SAMPLES = 1000
GUARDED_METHODS = {"mvlearn MVSC"}


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------
def _ours(cls, **params):
    return lambda views, c, seed: cls(n_clusters=c, random_state=seed, **params).fit_predict(views)


#: The previous defaults' parameters (the path is chosen by size in ``_previous``).
MGF_PREVIOUS = {"gamma": 0.01}
MPAC_PREVIOUS = {"indicator": "one-hot", "init": "consensus"}


def _previous(cls, params):
    """The estimator as its defaults were before issue 23: dense up to 3000 samples, kNN above."""
    def fit_predict(views, c, seed):
        algorithm = "dense" if views[0].shape[0] <= MGF_DENSE_MAX else "knn"
        return cls(n_clusters=c, random_state=seed, algorithm=algorithm,
                   **params).fit_predict(views)
    return fit_predict


def extra_methods() -> dict:
    """The previous defaults, beside the current ones."""
    return {
        "MGF (previous default)": Method(
            "MGF (previous default)", _previous(MultiGraphFusionClustering, MGF_PREVIOUS)),
        "mPAC (previous default)": Method(
            "mPAC (previous default)", _previous(PartitionAlignmentClustering, MPAC_PREVIOUS)),
    }


@contextlib.contextmanager
def extended_registry():
    """Let ``_common.run_benchmark`` see the extra methods (it looks the registry up by name)."""
    original = _common.method_registry
    extra = extra_methods()
    _common.method_registry = lambda: {**original(), **extra}
    try:
        yield
    finally:
        _common.method_registry = original


def all_methods() -> dict:
    with extended_registry():
        return _common.method_registry()


def not_applicable_reason(method: str, n: int):
    """Why a (dataset, method) pair is not run at all, or None."""
    if method == ORACLE:
        return None
    spec = all_methods()[method]
    if spec.max_samples is None or n <= spec.max_samples:
        return None
    if "reference" in method:
        return f"official code is dense O(n^3); run up to {REFERENCE_MAX_SAMPLES} samples"
    return f"n > {spec.max_samples}"


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def run_one(dataset: str, method: str, seed: int) -> dict:
    """One run through ``_common.run_benchmark``; returns its record."""
    with extended_registry():
        if method == ORACLE:
            records = run_benchmark([dataset], [], [seed], with_best_single_view=True,
                                    progress=False)
        else:
            records = run_benchmark([dataset], [method], [seed], with_best_single_view=False,
                                    progress=False)
    if len(records) != 1:
        raise RuntimeError(f"expected one record, got {len(records)}")
    return records[0]


def _child(dataset, method, seed, conn):
    try:
        conn.send(("ok", run_one(dataset, method, seed)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc(limit=5)))
    finally:
        conn.close()


def run_guarded(dataset: str, method: str, seed: int, cap: float):
    """Run in a spawned child; returns ("ok", record), ("error", tb) or ("timeout", None)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(dataset, method, seed, child), daemon=True)
    start = time.perf_counter()
    proc.start()
    child.close()
    # Loading data and imports happen before the fit: allow them a little extra.
    if parent.poll(cap + 60):
        status, payload = parent.recv()
        proc.join(30)
        return status, payload
    proc.kill()
    proc.join(30)
    return "timeout", time.perf_counter() - start


def load_records(path=None) -> list:
    path = JSONL if path is None else path
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            records.append(json.loads(line))
    return records


def append_record(record: dict, path=None) -> None:
    path = JSONL if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def dataset_sizes(datasets) -> dict:
    return {d: int(np.asarray(load_dataset(d).target).size) for d in datasets}


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", flush=True)


def run_all(datasets, methods, seeds, cap, slow=60.0, slow_seeds=3, retry_failed=False) -> None:
    existing = load_records()
    if retry_failed:
        kept = [r for r in existing if r.get("status", "ok") == "ok"]
        if len(kept) != len(existing):
            JSONL.write_text("".join(json.dumps(r) + "\n" for r in kept))
        existing = kept
    done = {(r["dataset"], r["method"], r["seed"]) for r in existing}
    failed_pairs = {(r["dataset"], r["method"]) for r in existing
                    if r.get("status", "ok") != "ok"}
    first_times = {(r["dataset"], r["method"]): r["time"] for r in existing
                   if r["seed"] == min(seeds) and r.get("status", "ok") == "ok"}
    sizes = dataset_sizes(datasets)
    for dataset in datasets:
        n = sizes[dataset]
        for method in methods:
            reason = not_applicable_reason(method, n)
            if reason is not None:
                continue
            for seed in seeds:
                if (dataset, method, seed) in done or (dataset, method) in failed_pairs:
                    continue
                first = first_times.get((dataset, method))
                if (first is not None and first > slow and seed not in seeds[:slow_seeds]):
                    continue  # a slow pair: only the first slow_seeds seeds
                guarded = seed == min(seeds) and (
                    n >= GUARD_MIN_SAMPLES or method in GUARDED_METHODS
                ) and not any(
                    (dataset, method, s) in done for s in seeds
                )
                wall = time.perf_counter()
                if guarded:
                    status, payload = run_guarded(dataset, method, seed, cap)
                else:
                    try:
                        status, payload = "ok", run_one(dataset, method, seed)
                    except Exception:  # noqa: BLE001 - recorded, the benchmark goes on
                        status, payload = "error", traceback.format_exc(limit=5)
                wall = time.perf_counter() - wall
                base = {"dataset": dataset, "method": method, "seed": seed, "n_samples": n,
                        "date": datetime.datetime.now().isoformat(timespec="seconds"),
                        "guarded": guarded, "commit": _common.code_version("mvlearn_plus")}
                if status == "ok":
                    record = {**payload, **base, "status": "ok"}
                    if record["time"] > cap:
                        record = {**base, "status": "skipped", "time": record["time"],
                                  "reason": f"fit took {record['time']:.0f} s > {cap:.0f} s cap"}
                elif status == "timeout":
                    record = {**base, "status": "skipped", "time": wall,
                              "reason": f"fit > {cap / 60:.0f} min cap on 2 cores"}
                else:
                    last = payload.strip().splitlines()[-1][:200]
                    record = {**base, "status": "error", "time": wall,
                              "reason": f"error: {last}", "traceback": payload}
                append_record(record)
                done.add((dataset, method, seed))
                if seed == min(seeds) and record["status"] == "ok":
                    first_times[(dataset, method)] = record["time"]
                if record["status"] != "ok":
                    failed_pairs.add((dataset, method))
                    log(f"{dataset:12s} {method:22s} seed {seed}: {record['status'].upper()} "
                        f"({record['reason']})")
                    break
                log(f"{dataset:12s} {method:22s} seed {seed}: ACC {record['acc']:.3f} "
                    f"NMI {record['nmi']:.3f} fit {record['time']:.2f}s"
                    + (" [guarded]" if guarded else ""))


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _reasons(records, datasets, sizes) -> dict:
    reasons = {}
    for r in records:
        if r.get("status", "ok") != "ok":
            reasons[(r["dataset"], r["method"])] = r["reason"]
    for d in datasets:
        for m in METHODS:
            why = not_applicable_reason(m, sizes[d])
            if why is not None:
                reasons[(d, m)] = why
    return reasons


def _annotated_table(ok, datasets, reasons, n_seeds) -> str:
    table = markdown_table(ok, datasets, ALL_METHODS, metrics=("acc", "nmi", "ari", "f_score"))
    agg = aggregate(ok) if ok else {}
    lines = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and (cells[0], cells[1]) in reasons and cells[2] == "n/a":
            cells[2] = f"n/a ({reasons[(cells[0], cells[1])]})"
            line = "| " + " | ".join(cells) + " |"
        elif len(cells) >= 3 and (cells[0], cells[1]) in agg:
            runs = agg[(cells[0], cells[1])]["n_runs"]
            if runs != n_seeds:
                cells[1] = f"{cells[1]} ({runs} seeds)"
                line = "| " + " | ".join(cells) + " |"
        elif len(cells) >= 3 and cells[2] == "n/a":
            cells[2] = "n/a (not run yet)"
            line = "| " + " | ".join(cells) + " |"
        lines.append(line)
    return "\n".join(lines)


def target_section(agg, datasets, estimators=OURS) -> tuple:
    lines = [
        "## Target: MGF and mPAC match or beat the best baseline on ACC and NMI",
        "",
        f"Baselines: {', '.join(BASELINES)} (the oracle best single view is not a baseline "
        f"here). For each metric the best baseline is the one with the highest mean on that "
        f"dataset; \"matches\" means a mean within {MATCH_TOL} of it. The target (issue 23) is "
        f"met on at least {TARGET_DATASETS} of the 14 datasets.",
        "",
    ]
    summary = {}
    for ours in estimators:
        passed, failed, missing = [], [], []
        for d in datasets:
            if (d, ours) not in agg:
                missing.append(d)
                continue
            gaps = {}
            for metric in ("acc", "nmi"):
                cands = [(agg[(d, b)][metric][0], b) for b in BASELINES if (d, b) in agg]
                if not cands:
                    gaps = None
                    break
                best, name = max(cands)
                gaps[metric] = (agg[(d, ours)][metric][0] - best, name, best)
            if gaps is None:
                missing.append(d)
            elif all(g[0] >= -MATCH_TOL for g in gaps.values()):
                passed.append(d)
            else:
                failed.append((d, gaps))
        total = len(passed) + len(failed)
        needed = TARGET_DATASETS
        verdict = "PASS" if len(passed) >= needed and not missing else (
            "FAIL" if not missing else "INCOMPLETE")
        summary[ours] = (len(passed), total, verdict)
        lines.append(f"### {ours}: {len(passed)} of {total} datasets "
                     f"(target >= {needed} of {len(datasets)}): **{verdict}**")
        lines.append("")
        lines.append(f"Matches or beats: {', '.join(passed) if passed else 'none'}.")
        if missing:
            lines.append(f"Not evaluated yet: {', '.join(missing)}.")
        if failed:
            lines.append("")
            lines.append(f"| dataset | {ours} ACC - best baseline ACC | "
                         f"{ours} NMI - best baseline NMI |")
            lines.append("|---|---|---|")
            for d, gaps in failed:
                cells = []
                for metric in ("acc", "nmi"):
                    gap, name, best = gaps[metric]
                    mark = "" if gap >= -MATCH_TOL else " ✗"
                    cells.append(f"{gap:+.3f} (vs {name} {best:.3f}){mark}")
                lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines), summary


def gains_section(agg, datasets) -> str:
    lines = [
        "## What each fix gains: corrected minus reference (official behaviour)",
        "",
        "Mean over seeds of the default estimator minus its `variant=\"reference\"` row, on the "
        f"datasets where the reference ran (n <= {REFERENCE_MAX_SAMPLES}).",
        "",
        "| dataset | MGF ΔACC | MGF ΔNMI | mPAC ΔACC | mPAC ΔNMI |",
        "|---|---|---|---|---|",
    ]
    cols = {k: [] for k in range(4)}
    for d in datasets:
        cells = []
        for i, (ours, metric) in enumerate([("MGF", "acc"), ("MGF", "nmi"),
                                            ("mPAC", "acc"), ("mPAC", "nmi")]):
            ref = f"{ours} (reference)"
            if (d, ours) in agg and (d, ref) in agg:
                delta = agg[(d, ours)][metric][0] - agg[(d, ref)][metric][0]
                cols[i].append(delta)
                cells.append(f"{delta:+.3f}")
            else:
                cells.append("n/a")
        if any(c != "n/a" for c in cells):
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(
        f"**{np.mean(v):+.3f}**" if v else "n/a" for v in cols.values()) + " |")
    return "\n".join(lines)


def previous_section(agg, datasets) -> str:
    """Each estimator's new default minus its previous default, with the seed spread."""
    lines = [
        "## New defaults minus previous defaults",
        "",
        "Mean over seeds of the default minus the `(previous default)` row; in brackets the "
        "larger of the two rows' seed standard deviations. A loss larger than that spread is "
        "marked ✗; time ratio = default / previous fit time.",
        "",
        "| dataset | " + " | ".join(f"{e} ΔACC | {e} ΔNMI | {e} time ratio" for e in OURS)
        + " |",
        "|---|" + "---|" * (3 * len(OURS)),
    ]
    for d in datasets:
        cells = []
        for estimator in OURS:
            previous = f"{estimator} (previous default)"
            if (d, estimator) not in agg or (d, previous) not in agg:
                cells += ["n/a"] * 3
                continue
            for metric in ("acc", "nmi"):
                delta = agg[(d, estimator)][metric][0] - agg[(d, previous)][metric][0]
                spread = max(agg[(d, estimator)][metric][1], agg[(d, previous)][metric][1])
                mark = " ✗" if delta < -max(spread, MATCH_TOL) else ""
                cells.append(f"{delta:+.3f} ({spread:.3f}){mark}")
            ratio = agg[(d, estimator)]["time"][0] / max(agg[(d, previous)]["time"][0], 1e-9)
            cells.append(f"{ratio:.2f}")
        if any(c != "n/a" for c in cells):
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stacked_plot(ok, datasets, metric, path, title):
    """Two rows of datasets (14 side by side are unreadable), stacked into one PNG."""
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    half = (len(datasets) + 1) // 2
    parts = [datasets[:half], datasets[half:]] if len(datasets) > 7 else [datasets]
    images = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, part in enumerate(parts):
            if not part:
                continue
            file = Path(tmp) / f"part{i}.png"
            suffix = f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""
            plot_scores(ok, part, PLOT_METHODS, file, metric=metric, title=title + suffix)
            images.append(mpimg.imread(file))
    width = max(im.shape[1] for im in images)
    padded = []
    for im in images:
        pad = np.ones((im.shape[0], width - im.shape[1], im.shape[2]), dtype=im.dtype)
        padded.append(np.concatenate([im, pad], axis=1))
    plt.imsave(path, np.concatenate(padded, axis=0))


def write_report(datasets, seeds, cap, slow=60.0, slow_seeds=3) -> None:
    records = load_records()
    sizes = dataset_sizes(datasets)
    records = [r for r in records if r["dataset"] in datasets]
    ok = [r for r in records if r.get("status", "ok") == "ok" and r["seed"] in seeds]
    agg = aggregate(ok) if ok else {}
    reasons = _reasons(records, datasets, sizes)
    mgf, mpac = MultiGraphFusionClustering(), PartitionAlignmentClustering()
    try:
        import mvlearn
        mvlearn_version = mvlearn.__version__
    except ImportError:  # its rows then come from earlier runs (the JSONL says which)
        mvlearn_version = "not installed for this report"
    import sklearn

    params = {
        "MGF": {k: v for k, v in mgf.get_params().items() if k not in ("verbose", "random_state",
                                                                        "n_clusters")},
        "mPAC": {k: v for k, v in mpac.get_params().items() if k not in ("verbose",
                                                                          "random_state",
                                                                          "n_clusters")},
    }
    total_fit = sum(r["time"] for r in records)
    dates = sorted(r["date"] for r in records if "date" in r)
    target, summary = target_section(agg, datasets, OURS + PREVIOUS)
    header = [
        "# Clustering quality on the catalogued feature datasets",
        "",
        f"* Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"{platform.system()}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, mvlearn {mvlearn_version}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}.",
        f"* Date: runs from {dates[0] if dates else '?'} to {dates[-1] if dates else '?'}; "
        f"report written {datetime.datetime.now():%Y-%m-%d %H:%M}.",
        f"* Seeds: {', '.join(map(str, seeds))} ({len(seeds)} per method and dataset; rows with "
        "fewer say so). Cells are mean ± std over seeds; bold = best non-oracle mean.",
        "* Preprocessing (identical for every method, `mvlearn_plus.preprocessing."
        "preprocess_views(kind=\"auto\")`): a view that is non-negative with under 10 % "
        "non-zeros is text (tf-idf, then L2 row normalisation); any other view drops its "
        "constant columns and is z-scored. k-means and spectral (concat) then L2-normalise the "
        "rows of each view and concatenate them.",
        "* \"best single view (oracle)\": kNN spectral clustering (10 neighbours) on each view, "
        "the view with the highest ACC **against the true labels** is kept, per seed; it is "
        "reported for reference only, never counted as a baseline.",
        "* Defaults fixed for all datasets (no per-dataset tuning); the number of clusters is the "
        "number of classes. MGF: " + ", ".join(f"{k}={v!r}" for k, v in params["MGF"].items())
        + ". mPAC: " + ", ".join(f"{k}={v!r}" for k, v in params["mPAC"].items()) + ".",
        "* Baselines: k-means (n_init=10) and kNN spectral clustering (10 neighbours, "
        "n_init=10) on the concatenation; mvlearn 0.5.0 `MultiviewSpectralClustering` with its "
        "defaults (rbf affinity, 10 iterations, n_init=10). `(reference)` rows reproduce the "
        f"official code (dense, run up to {REFERENCE_MAX_SAMPLES} samples); `(previous default)` "
        f"rows are the defaults before issue 23 on the current code (dense up to {MGF_DENSE_MAX} "
        f"samples, kNN above; MGF {MGF_PREVIOUS}, mPAC {MPAC_PREVIOUS}).",
        f"* Fit time is in seconds per fit (wall clock). A fit that cannot finish within "
        f"{cap / 60:.0f} minutes is run for the first seed only and shown as n/a with the reason; "
        f"a pair whose first fit takes over {slow:.0f} s is run for the first {slow_seeds} seeds "
        "only (marked \"(k seeds)\"; in practice mvlearn on many views or n >= 1000). "
        f"Sum of all recorded fit times: {total_fit / 60:.1f} min.",
        "* Raw records: [clustering_quality.jsonl](clustering_quality.jsonl). Plots: "
        "[ACC](clustering_acc.png), [NMI](clustering_nmi.png).",
        "",
        "| estimator | datasets where it matches or beats the best baseline on ACC and NMI |",
        "|---|---|",
    ]
    for ours in OURS + PREVIOUS:
        if ours in summary:
            p, t, v = summary[ours]
            header.append(f"| {ours} | {p} of {t} ({v}) |")
    text = "\n".join(header) + "\n\n## Results\n\n" + _annotated_table(
        ok, datasets, reasons, len(seeds)) + "\n\n" + target + "\n" + gains_section(
        agg, datasets) + "\n\n" + previous_section(agg, datasets) + "\n"
    REPORT.write_text(text)
    log(f"wrote {REPORT}")
    if ok:
        for metric, name in (("acc", "clustering_acc.png"), ("nmi", "clustering_nmi.png")):
            _stacked_plot(ok, datasets, metric, RESULTS / name,
                          f"{metric.upper()} on the catalogued datasets (mean ± std over seeds)")
            log(f"wrote {RESULTS / name}")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
_parse_seeds = _common.parse_seeds


def _parse_names(text, allowed, what):
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {unknown}; choose from {list(allowed)}")
    return names


def main() -> None:
    global RESULTS, JSONL, REPORT
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=None,
                        help="comma-separated dataset names (default: all catalogued, small first)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated method names (default: all), e.g. "
                             "'MGF,mPAC (reference),best single view (oracle)'")
    parser.add_argument("--seeds", default="0-9", help="e.g. '0-9' or '0,1,2' (default 0-9)")
    parser.add_argument("--cap", type=float, default=600.0,
                        help="wall-clock cap in seconds for one fit (default 600)")
    parser.add_argument("--slow", type=float, default=60.0,
                        help="a pair whose first fit takes longer than this (s) runs only "
                             "--slow-seeds seeds (default 60)")
    parser.add_argument("--slow-seeds", type=int, default=3,
                        help="seeds run for a slow pair (default 3)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="drop skipped/error records and try those pairs again")
    parser.add_argument("--results", default=str(RESULTS),
                        help="folder for the JSONL, the report and the plots "
                             "(default benchmarks/results)")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild the markdown report and plots from the JSONL")
    parser.add_argument("--supersede", action="store_true",
                        help="first move the records of --methods on --datasets to "
                             "clustering_quality.superseded.jsonl, so they run at this commit")
    args = parser.parse_args()
    RESULTS = Path(args.results)
    JSONL = RESULTS / "clustering_quality.jsonl"
    REPORT = RESULTS / "clustering_quality.md"

    shipped = list_datasets(kind="features")
    sizes = dataset_sizes(shipped)
    all_datasets = sorted(shipped, key=lambda d: (sizes[d], d))
    datasets = (_parse_names(args.datasets, all_datasets, "datasets") if args.datasets
                else all_datasets)
    datasets = sorted(datasets, key=lambda d: (sizes[d], d))
    methods = (_parse_names(args.methods, ALL_METHODS, "methods") if args.methods
               else ALL_METHODS)
    seeds = _parse_seeds(args.seeds)

    start = time.perf_counter()
    if args.supersede and not args.report_only:
        moved = _common.supersede_records(
            JSONL, lambda r: r["dataset"] in datasets and r["method"] in methods)
        log(f"moved {moved} records to the superseded file")
    if not args.report_only:
        log(f"datasets {datasets}; methods {methods}; seeds {seeds}; results -> {JSONL}")
        run_all(datasets, methods, seeds, args.cap, slow=args.slow, slow_seeds=args.slow_seeds,
                retry_failed=args.retry_failed)
        log(f"runs finished in {(time.perf_counter() - start) / 60:.1f} min")
    # The report always covers every catalogued dataset and the standard seeds.
    write_report(all_datasets, seeds, args.cap, args.slow, args.slow_seeds)


if __name__ == "__main__":
    main()
