"""How the defaults of MGBCC and VGMGC are chosen: a small grid on designated tuning datasets.

The procedure below was written down before any of its runs; only the tuning datasets' labels
take part in it, and every report marks those datasets as *tuned on*
(``benchmarks/deep_clustering.py`` counts its targets on the other datasets only).

Tuning datasets (named before running, small so the whole grid stays cheap)
---------------------------------------------------------------------------
* **MGBCC: 3Sources and WebKB** (169 and 203 samples, text). The issue proposed BBCSport and
  3Sources; BBCSport was left out on cost: one fit of the paper's MLP encoder on it costs 372 s
  of CPU at one thread (measured, 150 epochs), so its two seeds alone would take half of the
  25-minute budget. BBCSport stays marked as tuned on in the reports anyway: the earlier
  linear default was chosen on its labels.
* **VGMGC: BBCSport and 3Sources** (544 and 169 nodes, one Gaussian kNN graph per view, the
  two feature datasets the official README gives training commands for). The issue proposed
  ACM and BBCSport; ACM was left out on cost: a VGMGC fit on ACM costs about four BBCSport
  fits (413 s against 98 s per fit in ``deep_clustering.md``), so four ACM fits alone would
  exceed the budget. ACM and Cora stay marked as tuned on in the reports anyway: the earlier
  pretraining schedule was chosen on their labels.

Grid (every other parameter at the estimator's default)
-------------------------------------------------------
* MGBCC, the encoder: ``linear`` = ``hidden_dims=()`` (one linear map per view, the official
  BBCSport setting and the earlier default) against ``paper MLP`` =
  ``hidden_dims=(2000, 500, 500)`` (the paper's ``d_v -> 2000 -> 500 -> 500 -> latent``).
* VGMGC, the self-training (DEC) weight ``l_t = min(kl_step * t, kl_max)`` after pretraining:
  ``paper`` = ``kl_step=5, kl_max=1000`` (the official schedule: the weight grows by 5 per
  epoch towards 1000, so it reaches 500 in the 100 clustering epochs of the default budget)
  against ``capped`` = ``kl_step=0.05, kl_max=0.1`` (the earlier default, IDEC's
  ``gamma = 0.1``).

Rule
----
Seeds 0 and 1. For every setting, the mean ACC over the two seeds on each tuning dataset, then
the mean of those per-dataset means; the setting with the highest value is the default. A
difference below ``TIE = 0.005`` (the benchmark's "matches" tolerance) is a tie, and a tie goes
to the setting listed first: the cheaper one for MGBCC (``linear``: a small fraction of the
MLP's compute), the published one for VGMGC (``paper``: both cost the same, and it departs
less from the method as published). NMI is reported beside ACC but takes no part in the pick.

Cost: measured before sizing the grid, CPU seconds per fit at one thread (150 epochs):
MGBCC paper MLP about 225 (3Sources) and 370 (BBCSport), linear about 10; VGMGC about 123
(BBCSport). The whole grid (16 fits) was sized at about 25 minutes of CPU; the report gives
the CPU and wall time of every fit. Measured afterwards: about 42 minutes, over that budget,
because a VGMGC fit on 3Sources costs about 190 s rather than the half of BBCSport's that was
assumed, and because the runs shared two cores with other work (CPU time grows under
contention too).

Every fit is appended to ``benchmarks/results/tune_deep.jsonl`` (fits already there are
skipped: the script is resumable); ``tune_deep.md`` is rebuilt at the end (or with
``--report-only``).

Usage::

    .venv/bin/python benchmarks/tune_deep.py                      # both estimators
    .venv/bin/python benchmarks/tune_deep.py --estimators MGBCC   # one of them
    .venv/bin/python benchmarks/tune_deep.py --report-only
"""

from __future__ import annotations

import os

# One thread: the budget above is measured at one thread, and the runs must not crowd the
# machine they share.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _common import append_jsonl, code_version, load_jsonl, load_preprocessed  # noqa: E402

from mvlearn_plus.metrics import evaluate_clustering  # noqa: E402

RESULTS = HERE / "results"
JSONL = RESULTS / "tune_deep.jsonl"
REPORT = RESULTS / "tune_deep.md"

SEEDS = (0, 1)
TIE = 0.005

#: Datasets whose labels this procedure reads, per estimator.
TUNING_DATASETS = {
    "MGBCC": ("3sources", "webkb"),
    "VGMGC": ("bbcsport", "3sources"),
}
#: Datasets whose labels chose earlier defaults (before this procedure) that are still in
#: force; reports mark them as tuned on too (see deep_clustering.md's notes).
EARLIER_PILOT_DATASETS = {
    "MGBCC": ("bbcsport",),
    "VGMGC": ("acm", "cora"),
}
#: Settings per estimator, in tie-break order (a tie goes to the first).
GRID = {
    "MGBCC": {
        "linear": dict(hidden_dims=()),
        "paper MLP": dict(hidden_dims=(2000, 500, 500)),
    },
    "VGMGC": {
        "paper": dict(kl_step=5.0, kl_max=1000.0),
        "capped": dict(kl_step=0.05, kl_max=0.1),
    },
}


def tuned_on(estimator: str) -> tuple:
    """Every dataset whose labels chose a default of ``estimator`` now in force."""
    return TUNING_DATASETS[estimator] + EARLIER_PILOT_DATASETS[estimator]


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def fit_one(estimator: str, setting: str, dataset: str, seed: int) -> dict:
    """Fit one grid point on one dataset and score it (labels only score, after the fit)."""
    import torch

    torch.set_num_threads(1)
    views, y, _ = load_preprocessed(dataset)
    c = int(np.unique(y).size)
    params = GRID[estimator][setting]
    wall, cpu = time.perf_counter(), time.process_time()
    if estimator == "MGBCC":
        from mvlearn_plus.cluster import GranularBallContrastiveClustering

        model = GranularBallContrastiveClustering(
            n_clusters=c, random_state=seed, device="cpu", **params).fit(views)
        extra = {}
    else:
        from mvlearn_plus.cluster import VariationalGraphGeneratorClustering

        model = VariationalGraphGeneratorClustering(
            n_clusters=c, random_state=seed, device="cpu", **params).fit(views)
        extra = {"final_kl_weight": float(model.loss_history_[-1]["kl_weight"]),
                 "algorithm": model.algorithm_}
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    scores = evaluate_clustering(y, np.asarray(model.labels_))
    return {"estimator": estimator, "setting": setting, "dataset": dataset, "seed": seed,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
            "time": wall, "cpu_time": cpu, "final_loss": float(model.loss_history_[-1]["loss"]),
            **scores, **extra, **code_version(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def run(estimators, seeds=SEEDS) -> None:
    done = {(r["estimator"], r["setting"], r["dataset"], r["seed"]) for r in load_jsonl(JSONL)}
    for estimator in estimators:
        # Seed-major, so an interrupted run still has every setting on every dataset once.
        for seed in seeds:
            for dataset in TUNING_DATASETS[estimator]:
                for setting in GRID[estimator]:
                    if (estimator, setting, dataset, seed) in done:
                        continue
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        record = fit_one(estimator, setting, dataset, seed)
                    append_jsonl(record, JSONL)
                    log(f"{estimator} {setting:10s} {dataset:9s} seed {seed}: ACC "
                        f"{record['acc']:.3f} NMI {record['nmi']:.3f} cpu "
                        f"{record['cpu_time']:.0f}s wall {record['time']:.0f}s")


def pick(records, estimator):
    """The chosen setting and the per-setting summary (mean over datasets of seed means)."""
    summary = {}
    for setting in GRID[estimator]:
        per_dataset = {}
        for dataset in TUNING_DATASETS[estimator]:
            rows = [r for r in records if (r["estimator"], r["setting"], r["dataset"])
                    == (estimator, setting, dataset)]
            if rows:
                per_dataset[dataset] = rows
        complete = len(per_dataset) == len(TUNING_DATASETS[estimator]) and all(
            len(rows) == len(SEEDS) for rows in per_dataset.values())
        score = float(np.mean([np.mean([r["acc"] for r in rows])
                               for rows in per_dataset.values()])) if per_dataset else None
        summary[setting] = {"rows": per_dataset, "score": score, "complete": complete}
    if not all(s["complete"] for s in summary.values()):
        return None, summary
    best = None
    for setting in GRID[estimator]:  # tie-break order: the first within TIE wins
        score = summary[setting]["score"]
        top = max(s["score"] for s in summary.values())
        if score >= top - TIE:
            best = setting
            break
    return best, summary


def write_report() -> None:
    # One record per grid point and seed (two processes may both have run one).
    unique = {}
    for r in load_jsonl(JSONL):
        unique.setdefault((r["estimator"], r["setting"], r["dataset"], r["seed"]), r)
    records = list(unique.values())
    lines = [
        "# Tuning the deep estimators' defaults on designated datasets",
        "",
        f"Generated {datetime.date.today().isoformat()} by `benchmarks/tune_deep.py` on "
        f"{platform.machine()} with {os.cpu_count()} cores, one thread per fit "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}). The procedure (datasets, "
        "grid, rule) is the script's docstring, written before the runs. Cells: mean ± std "
        f"over seeds {', '.join(map(str, SEEDS))}.",
        "",
        "**Rule.** For each setting, the mean ACC over seeds on each tuning dataset, then the "
        "mean over the tuning datasets; the highest wins. Differences below "
        f"{TIE} are ties, and a tie goes to the setting listed first (MGBCC: the cheaper "
        "linear encoder; VGMGC: the published schedule). Only the tuning datasets' labels are "
        "read; every other report marks them as *tuned on* and counts targets without them.",
        "",
    ]
    total_cpu = sum(r["cpu_time"] for r in records) / 60
    for estimator in GRID:
        best, summary = pick(records, estimator)
        datasets = TUNING_DATASETS[estimator]
        lines += [f"## {estimator}", "",
                  f"Tuning datasets: {', '.join(datasets)}. Earlier defaults still in force "
                  f"were chosen on: {', '.join(EARLIER_PILOT_DATASETS[estimator])} (also "
                  "marked tuned on).", ""]
        header = ("| setting | parameters | " + " | ".join(
            f"{d} ACC | {d} NMI" for d in datasets) + " | mean ACC | CPU s per fit |")
        lines += [header, "|" + "---|" * (3 + 2 * len(datasets)) + "---|"]
        for setting, params in GRID[estimator].items():
            entry = summary[setting]
            cells = []
            for d in datasets:
                rows = entry["rows"].get(d, [])
                for metric in ("acc", "nmi"):
                    if rows:
                        values = [r[metric] for r in rows]
                        note = "" if len(rows) == len(SEEDS) else f" ({len(rows)} seed)"
                        cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}{note}")
                    else:
                        cells.append("n/a")
            cpu = [r["cpu_time"] for rows in entry["rows"].values() for r in rows]
            score = "n/a" if entry["score"] is None else f"{entry['score']:.3f}"
            mark = f"**{setting}**" if setting == best else setting
            shown = ", ".join(f"{k}={tuple(v) if isinstance(v, tuple) else v}"
                              for k, v in params.items())
            lines.append(f"| {mark} | `{shown}` | " + " | ".join(cells) + f" | {score} | "
                         + (f"{np.mean(cpu):.0f}" if cpu else "n/a") + " |")
        lines.append("")
        if best is None:
            lines.append("**Pick: none yet** (the grid is incomplete; rerun the script, it "
                         "resumes).")
        else:
            lines.append(f"**Pick: {best}** (`{GRID[estimator][best]}`), the estimator's default.")
        if estimator == "VGMGC":
            weights = sorted({round(r["final_kl_weight"], 3) for r in records
                              if r["estimator"] == "VGMGC"})
            lines.append("")
            lines.append(f"Final self-training weights reached: {weights}.")
        lines.append("")
    lines += [f"Sum of the recorded CPU time: {total_cpu:.1f} min over {len(records)} fits. "
              "Raw records: [tune_deep.jsonl](tune_deep.jsonl).", ""]
    REPORT.write_text("\n".join(lines))
    log(f"wrote {REPORT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--estimators", default="MGBCC,VGMGC")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)),
                        help="a subset of the procedure's seeds, to run them in two processes")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if not set(seeds) <= set(SEEDS):
        raise SystemExit(f"the procedure's seeds are {SEEDS}; got {seeds}")
    estimators = [e.strip() for e in args.estimators.split(",")]
    unknown = set(estimators) - set(GRID)
    if unknown:
        raise SystemExit(f"unknown estimators {sorted(unknown)}; choose from {sorted(GRID)}")
    if not args.report_only:
        run(estimators, seeds)
    write_report()


if __name__ == "__main__":
    main()
