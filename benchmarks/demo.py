"""The README's main job: every clustering estimator against baselines on real benchmark data (downloaded on first use).

1. MGF and mPAC against k-means and spectral clustering on four catalogued datasets: a table of
   ACC / NMI / ARI / pairwise F (mean ± std over 3 seeds) and fit times, and a bar chart. A
   ``LabelFreeSelector`` row (one seed: it fits eight or nine candidates) shows which clustering the
   label-free selection picks on each dataset.
2. The deep estimators, one seed each: MGBCC on BBCSport (its defaults) and VGMGC on the ACM
   graphs (reduced to ``--vgmgc-epochs`` epochs so that the part stays under a minute and a half
   on 2 cores), beside the baselines of each dataset; a second table and a plot of their training
   losses and scores.

Everything is saved to ``--output`` (``results.md``, ``acc.png``, ``deep.png``). The full
benchmarks (all datasets, more seeds, official-behaviour rows) are ``clustering_quality.py`` and
``deep_clustering.py``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import (load_preprocessed, markdown_table, plot_scores,
                     regularized_spectral_clustering, run_benchmark)

#: MNIST-4 (4,000 samples) is the largest: at the defaults of issue 23 MGF fits it in a few
#: seconds, Handwritten (2,000 samples, 6 views) took about a minute a fit.
DATASETS = ["bbcsport", "3sources", "webkb", "mnist4"]
METHODS = ["MGF", "mPAC", "k-means (concat)", "spectral (concat)"]
#: Datasets of the deep part (MGBCC on BBCSport, VGMGC on ACM).
DEEP_DATASETS = ["acm"]


SELECTOR = "LabelFreeSelector (seed 0)"


def run_selector(dataset: str) -> tuple[dict, str]:
    """LabelFreeSelector with its default candidates, one seed (it fits all of them).

    Returns the table record and the name of the candidate it picked.
    """
    from _common import _record

    from mvlearn_plus.model_selection import LabelFreeSelector, default_candidates

    views, y, data = load_preprocessed(dataset)
    candidates = default_candidates(y.size)
    start = time.perf_counter()
    selector = LabelFreeSelector(n_clusters=data.n_clusters, estimators=candidates,
                                 random_state=0).fit(views)
    record = _record(dataset, SELECTOR, 0, y, selector.labels_, time.perf_counter() - start)
    return record, selector.best_name_


def run_spectral_part(seeds):
    """MGF, mPAC and the baselines on DATASETS, and LabelFreeSelector (one seed); the records,
    the dataset labels and what the selector picked per dataset."""
    records = []
    picks = {}
    for dataset in DATASETS:
        part = run_benchmark([dataset], METHODS, seeds)
        selector_record, picks[dataset] = run_selector(dataset)
        part.append(selector_record)
        records += part
    return records, list(DATASETS), picks


def fetch_data(names: list[str]) -> None:
    """Say what the first run downloads (total size, sources), then fetch it."""
    from mvlearn_plus.datasets import get_data_home, list_datasets, load_dataset

    rows = [row for row in list_datasets(details=True) if row["name"] in names]
    missing = [row for row in rows if not row["cached"]]
    if not missing:
        print(f"Data: {', '.join(names)} found in {get_data_home()}.")
        return
    total = sum(row["download_size"] for row in missing) / 1e6
    print(f"Data: downloading {total:.1f} MB into {get_data_home()} "
          f"(set MVLEARN_PLUS_DATA to use another folder):")
    for row in missing:
        print(f"  {row['name']}: {row['download_size'] / 1e6:.1f} MB from {row['source']}")
    for row in missing:
        load_dataset(row["name"])


def pretraining(epochs: int) -> int:
    """VGMGC's default ratio of pretraining to training epochs (50 of 150)."""
    return max(1, epochs // 3)


def run_deep(vgmgc_epochs: int, seed: int = 0):
    """MGBCC on BBCSport and VGMGC on ACM; returns table rows and the fitted models."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import normalize

    from mvlearn_plus.cluster import (
        GranularBallContrastiveClustering,
        VariationalGraphGeneratorClustering,
    )
    from mvlearn_plus.datasets import load_dataset
    from mvlearn_plus.metrics import evaluate_clustering

    rows, models = [], {}

    def score(dataset, method, labels, elapsed, y):
        rows.append((dataset, method, evaluate_clustering(y, labels), elapsed))

    views, y, data = load_preprocessed("bbcsport")
    start = time.perf_counter()
    mgbcc = GranularBallContrastiveClustering(n_clusters=data.n_clusters, random_state=seed,
                                              device="cpu").fit(views)
    score("bbcsport", "MGBCC (150 epochs)", mgbcc.labels_, time.perf_counter() - start, y)
    models["MGBCC on BBCSport"] = mgbcc

    acm = load_dataset("acm")
    start = time.perf_counter()
    vgmgc = VariationalGraphGeneratorClustering(
        n_clusters=acm.n_clusters, max_epochs=vgmgc_epochs,
        pretrain_epochs=pretraining(vgmgc_epochs), random_state=seed, device="cpu",
    ).fit(acm.data, graphs=acm.graphs)
    score("acm", f"VGMGC ({vgmgc_epochs} epochs)", vgmgc.labels_, time.perf_counter() - start,
          acm.target)
    models["VGMGC on ACM"] = vgmgc

    start = time.perf_counter()
    labels = KMeans(acm.n_clusters, n_init=10, random_state=seed).fit_predict(
        normalize(acm.data))
    score("acm", "k-means (features)", labels, time.perf_counter() - start, acm.target)
    start = time.perf_counter()
    # Regularised spectral clustering: ACM's graphs are disconnected (717 components).
    labels = regularized_spectral_clustering(acm.graphs, acm.n_clusters, seed)
    score("acm", "spectral (sum of graphs)", labels, time.perf_counter() - start, acm.target)
    return rows, models


def deep_table(rows) -> str:
    lines = ["| dataset | method | ACC | NMI | ARI | F1 (macro) | fit time (s) |",
             "|---|---|---|---|---|---|---|"]
    for dataset, method, s, elapsed in rows:
        lines.append(f"| {dataset} | {method} | {s['acc']:.3f} | {s['nmi']:.3f} | "
                     f"{s['ari']:.3f} | {s['f1_macro']:.3f} | {elapsed:.1f} |")
    return "\n".join(lines)


def plot_deep(rows, models, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, (name, model) in zip(axes[:2], models.items()):
        history = model.loss_history_
        epochs = np.arange(1, len(history) + 1)
        ax.plot(epochs, [h["loss"] for h in history], label="total")
        for part in [k for k in history[0] if k not in ("loss", "kl_weight")]:
            ax.plot(epochs, [h[part] for h in history], lw=1, label=part.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.set_title(f"{name}: training loss")
        ax.legend(fontsize=7)
    labels = [f"{d}\n{m}" for d, m, _, _ in rows]
    accs = [s["acc"] for _, _, s, _ in rows]
    colours = ["tab:red" if m.startswith(("MGBCC", "VGMGC")) else "tab:grey" for _, m, _, _ in rows]
    axes[2].barh(range(len(rows)), accs, color=colours)
    axes[2].set_yticks(range(len(rows)))
    axes[2].set_yticklabels(labels, fontsize=7)
    axes[2].invert_yaxis()
    axes[2].set_xlim(0, 1)
    axes[2].set_xlabel("ACC (1 seed)")
    axes[2].set_title("deep estimators (red) vs baselines")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="demo_output",
                        help="folder for results.md, acc.png and deep.png")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--vgmgc-epochs", type=int, default=24,
                        help="VGMGC epochs on ACM (its default is 150)")
    parser.add_argument("--no-deep", action="store_true", help="skip the deep estimators")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    fetch_data(DATASETS + ([] if args.no_deep else DEEP_DATASETS))
    start = time.perf_counter()
    records, dataset_labels, picks = run_spectral_part(range(args.seeds))
    methods = METHODS + [SELECTOR, "best single view (oracle)"]
    table = markdown_table(records, dataset_labels, methods,
                           metrics=("acc", "nmi", "ari", "f_score"))
    spectral_time = time.perf_counter() - start
    text = (
        f"# mvlearn-plus demo: {args.seeds} seeds, mean ± std, bold = best non-oracle\n\n"
        f"{table}\n\n{SELECTOR}: fits its default candidates (MGF and mPAC variants, k-means "
        "and kNN spectral clustering on the concatenation) and keeps the best by label-free criteria, without reading the labels. "
        "It picked: " + "; ".join(f"{d}: {name}" for d, name in picks.items()) + ".\n\n"
        f"Spectral estimators, baselines and selector: {spectral_time:.0f} s.\n"
    )
    plot_scores(records, dataset_labels, methods, out / "acc.png",
                title="Clustering accuracy on catalogued datasets (mean ± std over seeds)")
    if not args.no_deep:
        deep_start = time.perf_counter()
        rows, models = run_deep(args.vgmgc_epochs)
        text += (
            "\n## Deep estimators (seed 0)\n\n"
            f"MGBCC at its defaults; VGMGC with {args.vgmgc_epochs} of its 150 epochs "
            f"({pretraining(args.vgmgc_epochs)} of them pretraining; the full schedule and 5 "
            "seeds are in `benchmarks/results/deep_clustering.md`).\n\n"
            f"{deep_table(rows)}\n\nDeep part: {time.perf_counter() - deep_start:.0f} s.\n"
        )
        plot_deep(rows, models, out / "deep.png")
    text += f"\nTotal time {time.perf_counter() - start:.0f} s.\n"
    print(text)
    (out / "results.md").write_text(text)
    saved = [out / "results.md", out / "acc.png"] + ([] if args.no_deep else [out / "deep.png"])
    print("Saved " + ", ".join(str(p) for p in saved))


if __name__ == "__main__":
    main()
