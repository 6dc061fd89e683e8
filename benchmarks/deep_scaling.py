"""Scaling of the deep estimators: fit time and peak memory versus n.

* **MGBCC** on the synthetic data of ``scaling.py`` (3 views x 50 dims, 10 planted clusters,
  noise 2.5, z-scored) for n = 1,000 ... 100,000, at its defaults except ``max_epochs`` (20,
  the same at every n, so that the time per fit shows how an epoch grows with n); and once at
  n = 100,000 with all defaults, which is what the target is judged on: the full 150 epochs
  (98 mini-batches each; ``max_steps=None``), and beside it the optional step cap
  ``max_steps=3000`` (31 epochs at this n), reported as an option, not as the target's fit.
* **VGMGC** on a synthetic attributed multi-graph: 10 planted clusters, three graph views
  drawn as stochastic block models (average degree 12; in each a different share of the edges,
  25 %, 40 % or 55 %, gets a uniformly random end, about nine tenths of which fall in
  another cluster) and 100 binary node features (each cluster switches on its own
  20 words with probability 0.15, every word is on with probability 0.02). ``algorithm="sparse"``
  at every n (the dense path is ``O(n^2)``), all other parameters at their defaults
  (150 epochs), n = 1,000 ... 20,000.

Every fit runs in a fresh child process with 2 threads; its peak memory is the child's
``ru_maxrss`` (interpreter, torch and data included; a child that only imports and builds the
data gives the baseline). One seed per n. Targets (issue): VGMGC's sparse path trains a
20,000-node graph with 3 views in under 10 minutes and 8 GB; MGBCC fits n = 100,000 (3 x 50
dims) in under 10 minutes.

Outputs ``benchmarks/results/deep_scaling.jsonl`` (resumable), ``deep_scaling.md`` and
``deep_scaling.png``.

Usage::

    .venv/bin/python benchmarks/deep_scaling.py
    .venv/bin/python benchmarks/deep_scaling.py --max-n 5000
    .venv/bin/python benchmarks/deep_scaling.py --report-only
"""

from __future__ import annotations

import os

#: Threads per fit: 2 unless DEEP_SCALING_THREADS says otherwise (1 when other work shares the
#: cores: torch's OpenMP threads spin-wait and a 2-thread fit on a busy 2-core machine ran
#: 30 times slower than alone, n = 1,000 MGBCC 195 s against 6.4 s).
THREADS = os.environ.get("DEEP_SCALING_THREADS", "2")
if not THREADS.isdigit() or int(THREADS) < 1:
    raise SystemExit(f"DEEP_SCALING_THREADS must be a positive integer, got {THREADS!r}")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = THREADS
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (HERE, ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _common import append_jsonl, code_version, load_jsonl, supersede_records  # noqa: E402

RESULTS = HERE / "results"
JSONL = RESULTS / "deep_scaling.jsonl"
REPORT = RESULTS / "deep_scaling.md"
PLOT = RESULTS / "deep_scaling.png"

MGBCC_NS = (1000, 5000, 20000, 50000, 100000)
VGMGC_NS = (1000, 2000, 5000, 10000, 20000)
MGBCC_EPOCHS = 20
#: The target fit: MGBCC with every default (150 epochs, no step cap) at n = 100,000; beside it
#: the documented option ``max_steps=3000``.
FULL_MGBCC, TARGET_MGBCC_N = "MGBCC (defaults)", 100000
CAPPED_MGBCC, CAPPED_STEPS = "MGBCC (max_steps=3000)", 3000
N_CLUSTERS = 10
GRAPH_DEGREE, GRAPH_NOISE = 12, (0.25, 0.40, 0.55)
N_WORDS, WORDS_PER_CLUSTER = 100, 20
TARGET_TIME_S, VGMGC_TARGET_MEM_MB = 600.0, 8192.0


def make_graph_data(n: int, seed: int):
    """Attributed multi-graph SBM (see the module docstring); ``O(n * degree)`` to build."""
    import scipy.sparse as sp

    rng = np.random.RandomState(seed)
    y = np.arange(n) % N_CLUSTERS
    rng.shuffle(y)
    members = [np.flatnonzero(y == c) for c in range(N_CLUSTERS)]
    graphs = []
    for noise in GRAPH_NOISE:
        m = n * GRAPH_DEGREE // 2
        sources = rng.randint(n, size=m)
        cross = rng.rand(m) < noise
        targets = np.empty(m, dtype=np.int64)
        targets[cross] = rng.randint(n, size=int(cross.sum()))
        for c in range(N_CLUSTERS):
            inside = ~cross & (y[sources] == c)
            targets[inside] = rng.choice(members[c], size=int(inside.sum()))
        keep = sources != targets
        A = sp.csr_matrix((np.ones(int(keep.sum())), (sources[keep], targets[keep])),
                          shape=(n, n))
        graphs.append(((A + A.T) > 0).astype(np.float64).tocsr())
    words = np.zeros((N_CLUSTERS, N_WORDS))
    for c in range(N_CLUSTERS):
        words[c, rng.choice(N_WORDS, WORDS_PER_CLUSTER, replace=False)] = 0.15
    X = (rng.rand(n, N_WORDS) < np.maximum(words[y], 0.02)).astype(np.float64)
    return X, graphs, y


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(spec: dict) -> dict:
    """Inside the child: build the data, fit once, report time, memory and scores."""
    from mvlearn_plus.metrics import evaluate_clustering

    method, n, seed = spec["method"], spec["n"], spec["seed"]
    if method.startswith("MGBCC"):
        from scaling import make_data

        views, y = make_data(n, seed)
    else:
        X, graphs, y = make_graph_data(n, seed)
    out = {"rss_before_fit_mb": _rss_mb()}
    if method.endswith("baseline"):
        import torch  # noqa: F401 - part of every fitting child

        out["peak_rss_mb"] = _rss_mb()
        return out
    start = time.perf_counter()
    if method.startswith("MGBCC"):
        from mvlearn_plus.cluster import GranularBallContrastiveClustering

        model = GranularBallContrastiveClustering(
            n_clusters=N_CLUSTERS, max_epochs=spec.get("epochs", MGBCC_EPOCHS),
            max_steps=spec.get("max_steps"), random_state=seed, device="cpu",
        ).fit(views)
    else:
        from mvlearn_plus.cluster import VariationalGraphGeneratorClustering

        model = VariationalGraphGeneratorClustering(
            n_clusters=N_CLUSTERS, algorithm="sparse", random_state=seed, device="cpu"
        ).fit(X, graphs=graphs)
        out["consensus_edges"] = int(model.consensus_graph_.nnz // 2)
    out["time"] = time.perf_counter() - start
    out["peak_rss_mb"] = _rss_mb()
    out["epochs"] = int(model.n_epochs_)
    scores = evaluate_clustering(y, model.labels_)
    out.update(acc=scores["acc"], nmi=scores["nmi"])
    return out


def run_child(spec: dict, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            capture_output=True, text=True, timeout=timeout, env=env,
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "reason": f"killed after {timeout:.0f} s",
                "wall": time.perf_counter() - start}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"status": "error", "reason": f"exit {proc.returncode}: {' | '.join(tail)[:300]}",
                "wall": time.perf_counter() - start}
    return {"status": "ok", "wall": time.perf_counter() - start, **json.loads(lines[-1])}


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def run_all(max_n: int, timeout: float, retry_failed: bool = False, families=None,
            beside: str | None = None) -> None:
    records = load_jsonl(JSONL)
    done = {(r["method"], r["n"]) for r in records
            if r["status"] == "ok" or not retry_failed}
    jobs = [(m, n) for family, ns in (("MGBCC", MGBCC_NS), ("VGMGC", VGMGC_NS)) for n in ns
            for m in (f"{family} baseline", family)]
    jobs += [(CAPPED_MGBCC, TARGET_MGBCC_N), (FULL_MGBCC, TARGET_MGBCC_N)]
    for method, n in jobs:
        if n > max_n or (method, n) in done:
            continue
        if families and method.split()[0] not in families:
            continue
        spec = {"method": method, "n": n, "seed": 0}
        if method in (FULL_MGBCC, CAPPED_MGBCC):
            spec["epochs"] = 150
        if method == CAPPED_MGBCC:
            spec["max_steps"] = CAPPED_STEPS
        result = run_child(spec, timeout if method != FULL_MGBCC else 3 * timeout)
        record = {"method": method, "n": n, "seed": 0, **result, "threads": int(THREADS),
                  **code_version(),
                  **({"beside": beside} if beside else {}),
                  "date": datetime.datetime.now().isoformat(timespec="seconds")}
        append_jsonl(record, JSONL)
        if result["status"] != "ok":
            log(f"{method:16s} n={n:6d}: {result['status']} ({result['reason']})")
        elif "time" in result:
            log(f"{method:16s} n={n:6d}: fit {result['time']:7.1f} s, peak RSS "
                f"{result['peak_rss_mb']:6.0f} MB, ACC {result['acc']:.3f}")


def write_report() -> None:
    import matplotlib.pyplot as plt

    all_records = load_jsonl(JSONL)
    by = {(r["method"], r["n"]): r for r in all_records}
    lines = [
        "# Scaling of the deep estimators (MGBCC, VGMGC)",
        "",
        f"Generated {datetime.date.today().isoformat()} by `benchmarks/deep_scaling.py` on "
        f"{platform.machine()}, one fresh process per fit, 2 threads per fit unless the row "
        "says t1 (one thread), nothing else "
        "running except where a row is marked * (other work ran beside it, which can only "
        "lengthen its time: " + "; ".join(sorted({r["beside"] for r in all_records
                                                   if isinstance(r.get("beside"), str)}
                                                  or {"low-priority unit tests on one thread"}))
        + "). Peak RSS includes the interpreter, torch and the data; the baseline column is "
        "a child that only imports and builds the data.",
        "",
    ]

    def row(n, r, b):
        if r is None:
            return f"| {n:,} | not run | | | | | |"
        if r["status"] != "ok":
            return f"| {n:,} | {r['status']}: {r['reason']} | | | | | |"
        base = f"{b['peak_rss_mb']:.0f}" if b and b["status"] == "ok" else "n/a"
        mark = (" *" if r.get("beside") else "") + (" (t1)" if r.get("threads") == 1 else "")
        return (f"| {n:,}{mark} | {r['time']:.1f} | {1000 * r['time'] / n:.2f} | "
                f"{r['peak_rss_mb']:.0f} | {base} | {r['acc']:.3f} | {r['nmi']:.3f} |")

    for family, ns, note in (
        ("MGBCC", MGBCC_NS, f"3 views x 50 dims, 10 clusters, defaults, {MGBCC_EPOCHS} epochs"),
        ("VGMGC", VGMGC_NS, "3 SBM graph views + 100 binary features, 10 clusters, sparse path, "
                            "defaults (150 epochs)"),
    ):
        lines += [f"## {family} ({note})", "",
                  "| n | fit time (s) | time / n (ms) | peak RSS (MB) | baseline RSS (MB) | ACC | "
                  "NMI |", "|---|---|---|---|---|---|---|"]
        lines += [row(n, by.get((family, n)), by.get((f"{family} baseline", n))) for n in ns]
        if family == "MGBCC":
            full = by.get((FULL_MGBCC, TARGET_MGBCC_N)) or {}
            per_epoch = by.get(("MGBCC", TARGET_MGBCC_N))
            extrapolated = (f" Without the step cap, 150 epochs would take about "
                            f"{150 * per_epoch['time'] / MGBCC_EPOCHS / 60:.0f} min by extrapolation from the "
                            f"{MGBCC_EPOCHS}-epoch fit above." if per_epoch and
                            per_epoch.get("status") == "ok" else "")
            trained = (f"{full['epochs']} trained" if full.get("epochs")
                       else "not measured yet")
            lines += ["", f"At n = {TARGET_MGBCC_N:,}: all defaults (the full 150 epochs; "
                      f"{trained}) and the optional cap "
                      f"`max_steps={CAPPED_STEPS}` "
                      f"({(by.get((CAPPED_MGBCC, TARGET_MGBCC_N)) or {}).get('epochs', '?')} "
                      f"epochs).{extrapolated}", "",
                      "| n | fit time (s) | time / n (ms) | peak RSS (MB) | baseline RSS (MB) | "
                      "ACC | NMI |", "|---|---|---|---|---|---|---|"]
            for name in (FULL_MGBCC, CAPPED_MGBCC):
                lines.append(row(TARGET_MGBCC_N, by.get((name, TARGET_MGBCC_N)),
                                 by.get(("MGBCC baseline", TARGET_MGBCC_N)))
                             .replace(f"| {TARGET_MGBCC_N:,}", f"| {TARGET_MGBCC_N:,} ({name})",
                                      1))
        lines.append("")
    lines += ["## Targets", ""]
    for method, n, mem in ((FULL_MGBCC, TARGET_MGBCC_N, None),
                           ("VGMGC", 20000, VGMGC_TARGET_MEM_MB)):
        r = by.get((method, n))
        budget = f"{TARGET_TIME_S / 60:.0f} min" + (f" and {mem / 1024:.0f} GB" if mem else "")
        if r is None:
            twenty = by.get(("MGBCC", n)) if method == FULL_MGBCC else None
            estimate = (f" Estimated {150 * twenty['time'] / MGBCC_EPOCHS / 60:.0f} min from the "
                        f"{MGBCC_EPOCHS}-epoch fit (per-step cost times the 150-epoch "
                        "schedule; that fit ran on "
                        f"{twenty.get('commit') or twenty.get('date', '?')[:10]}, before the "
                        "ball-seeding speed-up, so it overstates the time, but not by the factor of 4 the target "
                        "needs): it would **miss**; the step cap `max_steps=3000` meets the "
                        "time as a documented option (row above)."
                        if twenty and twenty.get("status") == "ok" else "")
            lines.append(f"* {method} at n = {n:,} (target: under {budget}): not measured "
                         f"yet.{estimate}")
            continue
        if r["status"] != "ok":
            lines.append(f"* {method} at n = {n:,} (target: under {budget}): **FAIL** "
                         f"({r['status']}: {r['reason']}).")
            continue
        ok = r["time"] < TARGET_TIME_S and (mem is None or r["peak_rss_mb"] < mem)
        lines.append(f"* {method} at n = {n:,}: {r['time']:.0f} s, {r['peak_rss_mb']:.0f} MB "
                     f"peak RSS, ACC {r['acc']:.3f} (target: under {budget}): "
                     f"**{'PASS' if ok else 'FAIL'}**.")
        if method == FULL_MGBCC and not ok:
            epochs = r.get("epochs", 150)
            lines.append(
                f"  {r['time'] / epochs:.1f} s per epoch of {int(np.ceil(n / 1024))} mini-batches. "
                "Each step splits every view's 1,024 codes (256 dims) into about 341 granular "
                "balls by k-means (k-means++ seeding, then up to 20 Lloyd steps, each a "
                "1,024 x 341 x 256 product) and contrasts the ball centres: about 2 GFLOP a "
                "view, so the schedule, not the implementation, sets the time on 2 CPU cores. "
                f"The cap `max_steps={CAPPED_STEPS}` meets the time at 31 epochs (row above); "
                "a GPU is what the full schedule needs at this n.")
        if method == "VGMGC" and not ok and r["peak_rss_mb"] < mem:
            epochs = r.get("epochs", 150)
            lines.append(
                f"  Memory is within budget; time is not. VGMGC is full-batch: each of its "
                f"{epochs} epochs runs every node through the paper's 512-wide dense layers "
                "(generator, three view encoders and decoders: about 3 million multiply-adds "
                "per node forward, three times that with the backward pass), so an epoch is "
                f"linear in n and compute-bound: {r['time'] / epochs:.1f} s per epoch here. "
                "The sparse graph part (candidate edges, propagation, edge losses) took about a "
                "tenth of the time in a profile at n = 2,000, and the view-weight k-means about "
                "a fifth. Meeting the target on this CPU needs narrower layers or fewer epochs, "
                "both of which change the model.")
    REPORT.write_text("\n".join(lines) + "\n")
    records = [r for r in all_records if r["status"] == "ok"]
    by_ok = {(r["method"], r["n"]): r for r in records}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for family, ns in (("MGBCC", MGBCC_NS), ("VGMGC", VGMGC_NS)):
        xs = [n for n in ns if (family, n) in by_ok]
        if not xs:
            continue
        label = f"{family} ({MGBCC_EPOCHS} epochs)" if family == "MGBCC" else f"{family} (sparse)"
        axes[0].loglog(xs, [by_ok[(family, n)]["time"] for n in xs], "o-", label=label)
        axes[1].loglog(xs, [by_ok[(family, n)]["peak_rss_mb"] for n in xs], "o-", label=label)
    full = by_ok.get((FULL_MGBCC, TARGET_MGBCC_N))
    if full:
        axes[0].loglog([TARGET_MGBCC_N], [full["time"]], "s", label=FULL_MGBCC)
        axes[1].loglog([TARGET_MGBCC_N], [full["peak_rss_mb"]], "s", label=FULL_MGBCC)
    for ax, ylabel in zip(axes, ("fit time (s)", "peak RSS (MB)")):
        ax.set_xlabel("n (samples / nodes)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].axhline(TARGET_TIME_S, color="grey", ls="--", lw=1)
    fig.suptitle("Deep estimators: fit time and memory vs n (2 CPU threads)")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    log(f"wrote {REPORT} and {PLOT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-n", type=int, default=100000)
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds per child")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--families", default=None,
                        help="comma-separated: MGBCC, VGMGC (default: both)")
    parser.add_argument("--supersede", action="store_true",
                        help="first move the records of --families to "
                             "deep_scaling.superseded.jsonl, so they run at this commit")
    parser.add_argument("--beside", default=None,
                        help="what else ran on the machine (recorded; the row is marked *)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the fits recorded as failed or timed out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return
    families = [f.strip() for f in args.families.split(",")] if args.families else None
    if args.supersede:
        if not families:
            raise SystemExit("--supersede needs --families")
        moved = supersede_records(JSONL, lambda r: r["method"].split()[0] in families)
        log(f"moved {moved} records to the superseded file")
    if not args.report_only:
        run_all(args.max_n, args.timeout, args.retry_failed, families, args.beside)
    write_report()


if __name__ == "__main__":
    main()
