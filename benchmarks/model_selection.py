"""Label-free model selection (issue 24): LabelFreeSelector against fixed choices and label-picked ones.

For each catalogued feature dataset and seed, one ``LabelFreeSelector`` fit (default
candidates, ``n_clusters`` = number of classes) gives every candidate's labels, criteria and fit
time. Every selection rule is then applied to those same fits: the default (mean rank of four
criteria with the degenerate guard), each criterion alone, and the rank without the guard. They
are compared with each fixed candidate, the best simple baseline picked per dataset with the
labels, and the oracle. The rule, the comparisons and the target were written in
``benchmarks/README.md`` before the run.

Results: ``results/model_selection.jsonl`` (one record per dataset and seed, resumable),
``results/model_selection.md`` and ``results/model_selection.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from _common import load_preprocessed

from mvlearn_plus.datasets import list_datasets
from mvlearn_plus.metrics import evaluate_clustering
from mvlearn_plus.model_selection import (
    CRITERIA,
    LabelFreeSelector,
    consensus_criterion,
    rank_criteria,
    select_partition,
)

logger = logging.getLogger("benchmarks.model_selection")

RESULTS = Path(__file__).resolve().parent / "results"
JSONL = RESULTS / "model_selection.jsonl"
REPORT = RESULTS / "model_selection.md"
PLOT = RESULTS / "model_selection.png"

#: The simple baselines among the candidates; the best of them per dataset, picked with the
#: labels, is the bar of the target.
BASELINES = ("k-means (concat)", "spectral kNN=5 (concat)", "spectral kNN=10 (concat)",
             "spectral kNN=20 (concat)")
#: "Matches" the label-picked baseline: mean ACC within this of it.
MATCH_TOLERANCE = 0.01
TARGET_COUNT = 12
DEFAULT_RULE = "rank (default)"
RULES = (DEFAULT_RULE, *CRITERIA, "rank without guard")


def _parse_seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def _pick(scores: dict, rule: str) -> str:
    return select_partition(scores, "rank" if rule == DEFAULT_RULE else rule)


def _rank_without_guard(selector: LabelFreeSelector) -> str:
    names = list(selector.scores_)
    table = np.array([[selector.scores_[n][c] for c in CRITERIA] for n in names])
    table[:, 3] = consensus_criterion([selector.candidate_labels_[n] for n in names])
    ranks = rank_criteria(table)
    best = min(range(len(names)), key=lambda i: (ranks[i], -table[i, 3]))
    return names[best]


def run_one(dataset: str, seed: int) -> dict:
    views, y, data = load_preprocessed(dataset)
    start = time.perf_counter()
    selector = LabelFreeSelector(n_clusters=data.n_clusters, random_state=seed).fit(views)
    total = time.perf_counter() - start
    # Labels are read only from here on, after every selection is made.
    picks = {rule: _pick(selector.scores_, rule) for rule in RULES[:-1]}
    picks["rank without guard"] = _rank_without_guard(selector)
    assert picks[DEFAULT_RULE] == selector.best_name_
    candidates = {}
    for name, row in selector.scores_.items():
        scores = evaluate_clustering(y, selector.candidate_labels_[name])
        candidates[name] = {**row, "acc": scores["acc"], "nmi": scores["nmi"]}
    return {"dataset": dataset, "seed": seed, "n_samples": int(y.size),
            "n_clusters": int(data.n_clusters), "fit_time": total,
            "selection_time": selector.selection_time_, "picks": picks,
            "failed": selector.failed_, "candidates": candidates,
            "date": datetime.now().isoformat(timespec="seconds")}


def load_records() -> list[dict]:
    if not JSONL.exists():
        return []
    return [json.loads(line) for line in JSONL.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ report
def summarise(records: list[dict], datasets: list[str]) -> dict:
    """Per dataset: mean/std ACC and NMI of every rule and candidate, and the label-picked bars."""
    out = {}
    for dataset in datasets:
        runs = [r for r in records if r["dataset"] == dataset]
        if not runs:
            continue
        names = list(runs[0]["candidates"])
        entry = {"n": runs[0]["n_samples"], "seeds": len(runs), "rules": {}, "candidates": {}}
        for name in names:
            accs = [r["candidates"][name]["acc"] for r in runs if name in r["candidates"]]
            nmis = [r["candidates"][name]["nmi"] for r in runs if name in r["candidates"]]
            times = [r["candidates"][name]["fit_time"] for r in runs if name in r["candidates"]]
            entry["candidates"][name] = (np.mean(accs), np.std(accs), np.mean(nmis),
                                         np.mean(times))
        for rule in RULES:
            accs = [r["candidates"][r["picks"][rule]]["acc"] for r in runs]
            nmis = [r["candidates"][r["picks"][rule]]["nmi"] for r in runs]
            regret = [max(c["acc"] for c in r["candidates"].values())
                      - r["candidates"][r["picks"][rule]]["acc"] for r in runs]
            picked = [r["picks"][rule] for r in runs]
            entry["rules"][rule] = (np.mean(accs), np.std(accs), np.mean(nmis), np.mean(regret),
                                    max(set(picked), key=picked.count))
        baselines = {b: entry["candidates"][b] for b in BASELINES if b in entry["candidates"]}
        best = max(baselines, key=lambda b: baselines[b][0])
        entry["best_baseline"] = (best, *baselines[best])
        oracle = [max(c["acc"] for c in r["candidates"].values()) for r in runs]
        oracle_nmi = [max(c["nmi"] for c in r["candidates"].values()) for r in runs]
        entry["oracle"] = (np.mean(oracle), np.std(oracle), np.mean(oracle_nmi))
        entry["fit_time"] = np.mean([r["fit_time"] for r in runs])
        entry["selection_time"] = np.mean([r["selection_time"] for r in runs])
        entry["slowest"] = np.mean([max(c["fit_time"] for c in r["candidates"].values())
                                    for r in runs])
        out[dataset] = entry
    return out


def write_report(records: list[dict], datasets: list[str]) -> None:
    summary = summarise(records, datasets)
    done = [d for d in datasets if d in summary]
    seeds = sorted({r["seed"] for r in records})
    lines = [
        "# Label-free model selection on the catalogued datasets",
        "",
        f"`benchmarks/model_selection.py`, seeds {seeds[0]}..{seeds[-1]} "
        f"({len(done)} of {len(datasets)} datasets done), mean ± std over seeds. The rule, the "
        "comparisons and the target were fixed in `benchmarks/README.md` before this run. "
        "**Caveat fixed in advance**: the criteria, their rank combination and the guard "
        "threshold were chosen in issue 24's feasibility run on these same 14 datasets, so the "
        "counts below are optimistic; the selector must be judged on data nobody here tuned on.",
        "",
        "## Target: the default rule against the best simple baseline picked with labels",
        "",
        f"Match = mean ACC within {MATCH_TOLERANCE} of the label-picked baseline or above. "
        "Regret = the oracle's ACC (best candidate of each run, by ACC) minus the rule's.",
        "",
        "| rule | datasets matched or beaten | mean ACC | mean NMI | mean regret |",
        "|---|---|---|---|---|",
    ]
    counts = {}
    for rule in RULES:
        matched = [d for d in done if summary[d]["rules"][rule][0]
                   >= summary[d]["best_baseline"][1] - MATCH_TOLERANCE]
        counts[rule] = len(matched)
        acc = np.mean([summary[d]["rules"][rule][0] for d in done])
        nmi = np.mean([summary[d]["rules"][rule][2] for d in done])
        regret = np.mean([summary[d]["rules"][rule][3] for d in done])
        lines.append(f"| {rule} | {len(matched)} of {len(done)} | {acc:.3f} | {nmi:.3f} | "
                     f"{regret:.3f} |")
    names = list(summary[done[0]]["candidates"]) if done else []
    for name in names:
        present = [d for d in done if name in summary[d]["candidates"]]
        matched = [d for d in present if summary[d]["candidates"][name][0]
                   >= summary[d]["best_baseline"][1] - MATCH_TOLERANCE]
        acc = np.mean([summary[d]["candidates"][name][0] for d in present])
        nmi = np.mean([summary[d]["candidates"][name][2] for d in present])
        regret = np.mean([summary[d]["oracle"][0] - summary[d]["candidates"][name][0]
                          for d in present])
        lines.append(f"| fixed: {name} | {len(matched)} of {len(present)} | {acc:.3f} | "
                     f"{nmi:.3f} | {regret:.3f} |")
    if done:
        acc = np.mean([summary[d]["best_baseline"][1] for d in done])
        nmi = np.mean([summary[d]["best_baseline"][3] for d in done])
        regret = np.mean([summary[d]["oracle"][0] - summary[d]["best_baseline"][1] for d in done])
        lines.append(f"| best simple baseline, picked with labels | {len(done)} by definition | "
                     f"{acc:.3f} | {nmi:.3f} | {regret:.3f} |")
        acc = np.mean([summary[d]["oracle"][0] for d in done])
        nmi = np.mean([summary[d]["oracle"][2] for d in done])
        lines.append(f"| oracle (best candidate per run, by ACC) | - | {acc:.3f} | {nmi:.3f} | 0 |")
        default_acc = np.mean([summary[d]["rules"][DEFAULT_RULE][0] for d in done])
        bar_acc = np.mean([summary[d]["best_baseline"][1] for d in done])
        met = counts[DEFAULT_RULE] >= TARGET_COUNT and default_acc >= bar_acc
        lines += ["", f"**Target ({TARGET_COUNT} of 14 and mean ACC at least the label-picked "
                  f"baseline's): {'met' if met and len(done) == 14 else 'missed' if len(done) == 14 else 'pending'}** "
                  f"({counts[DEFAULT_RULE]} of {len(done)}; mean ACC {default_acc:.3f} against "
                  f"{bar_acc:.3f})."]

    lines += ["", "## Per dataset (ACC)", "",
              "| dataset | n | seeds | default rule | picked most often | best baseline (picked "
              "with labels) | oracle | match |", "|---|---|---|---|---|---|---|---|"]
    for d in done:
        s = summary[d]
        rule = s["rules"][DEFAULT_RULE]
        base = s["best_baseline"]
        match = "yes" if rule[0] >= base[1] - MATCH_TOLERANCE else "**no**"
        lines.append(f"| {d} | {s['n']} | {s['seeds']} | {rule[0]:.3f} ± {rule[1]:.3f} | {rule[4]} | "
                     f"{base[1]:.3f} ± {base[2]:.3f} ({base[0]}) | {s['oracle'][0]:.3f} | {match} |")

    lines += ["", "## Every rule per dataset (mean ACC)", "",
              "| dataset | " + " | ".join(RULES) + " |", "|---|" + "---|" * len(RULES)]
    for d in done:
        lines.append(f"| {d} | " + " | ".join(f"{summary[d]['rules'][r][0]:.3f}" for r in RULES)
                     + " |")

    lines += ["", "## Every candidate per dataset (mean ACC)", "",
              "| dataset | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for d in done:
        cells = [f"{summary[d]['candidates'][n][0]:.3f}" if n in summary[d]["candidates"]
                 else "n/a" for n in names]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")

    lines += ["", "## What selection costs", "",
              "Seconds per fit, mean over seeds: the whole `LabelFreeSelector.fit` (every "
              "candidate one after the other, `n_jobs=None`, plus the criteria), the criteria "
              "alone, and the slowest single candidate.", "",
              "| dataset | selector fit | criteria | slowest candidate | ratio to the slowest |",
              "|---|---|---|---|---|"]
    for d in done:
        s = summary[d]
        lines.append(f"| {d} | {s['fit_time']:.1f} | {s['selection_time']:.1f} | "
                     f"{s['slowest']:.1f} | {s['fit_time'] / s['slowest']:.1f}x |")
    failures = [(r["dataset"], r["seed"], r["failed"]) for r in records if r["failed"]]
    if failures:
        lines += ["", "Candidates that failed (skipped by the selector): "
                  + "; ".join(f"{d} seed {s}: {f}" for d, s, f in failures)]
    REPORT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(summary, done)


def _plot(summary: dict, done: list[str]) -> None:
    if not done:
        return
    import matplotlib.pyplot as plt

    x = np.arange(len(done))
    width = 0.27
    fig, ax = plt.subplots(figsize=(max(8, 0.8 * len(done)), 4.5))
    bars = [("default rule (no labels)", [summary[d]["rules"][DEFAULT_RULE] for d in done], 0),
            ("best baseline, picked with labels",
             [summary[d]["best_baseline"][1:] for d in done], 1),
            ("oracle", [summary[d]["oracle"] for d in done], 2)]
    for label, values, i in bars:
        ax.bar(x + (i - 1) * width, [v[0] for v in values], width,
               yerr=[v[1] for v in values], label=label, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(done, rotation=35, ha="right")
    ax.set_ylabel("ACC (mean ± std over seeds)")
    ax.set_title("LabelFreeSelector against the label-picked baseline and the oracle")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", help="comma-separated names (default: all, small first)")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    RESULTS.mkdir(exist_ok=True)
    all_datasets = list_datasets(kind="features")
    sizes = {d: load_preprocessed(d)[1].size for d in all_datasets}
    all_datasets.sort(key=lambda d: (sizes[d], d))
    datasets = args.datasets.split(",") if args.datasets else all_datasets
    seeds = _parse_seeds(args.seeds)
    if not args.report_only:
        done = {(r["dataset"], r["seed"]) for r in load_records()}
        for seed in seeds:
            for dataset in datasets:
                if (dataset, seed) in done:
                    continue
                record = run_one(dataset, seed)
                with JSONL.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(record) + "\n")
                logger.info("%s seed %d: picked %s in %.0f s", dataset, seed,
                            record["picks"][DEFAULT_RULE], record["fit_time"])
                write_report(load_records(), all_datasets)
    write_report(load_records(), all_datasets)


if __name__ == "__main__":
    main()
