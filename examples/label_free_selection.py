"""Choosing a clustering without labels: what LabelFreeSelector saw and what it picked.

On two datasets the selector fits its default candidates (MGF and mPAC variants, k-means and kNN
spectral clustering on the concatenated views), scores each partition by four label-free
criteria and keeps the best mean rank. The plot shows, per candidate, the criteria (what the
selector saw, each rescaled to [0, 1] across the candidates) beside the accuracy computed
afterwards with the true labels (what it could not see), with the pick marked.

    python examples/label_free_selection.py --output label_free_selection.png
"""

from __future__ import annotations

import argparse

import matplotlib.pyplot as plt
import numpy as np

from mvlearn_plus.datasets import load_dataset
from mvlearn_plus.metrics import clustering_accuracy
from mvlearn_plus.model_selection import CRITERIA, LabelFreeSelector
from mvlearn_plus.preprocessing import preprocess_views

LABELS = {"silhouette": "silhouette", "reference_cut": "cut (concatenation graph)",
          "view_cut": "cut (per-view graphs)", "consensus": "consensus"}


def select(name: str, seed: int):
    data = load_dataset(name)
    views = preprocess_views(data.views)
    selector = LabelFreeSelector(n_clusters=data.n_clusters, random_state=seed).fit(views)
    # The labels are read only now, after the selection.
    accuracy = {c: clustering_accuracy(data.target, labels)
                for c, labels in selector.candidate_labels_.items()}
    return selector, accuracy


def plot(ax, title: str, selector: LabelFreeSelector, accuracy: dict) -> None:
    names = list(selector.scores_)
    x = np.arange(len(names))
    colours = ["tab:red" if n == selector.best_name_ else
               "lightgrey" if selector.scores_[n]["degenerate"] else "tab:blue" for n in names]
    ax.bar(x, [accuracy[n] for n in names], color=colours, alpha=0.45,
           label="ACC, computed afterwards (red: picked; grey: degenerate, set aside)")
    for marker, criterion in zip("osD^", CRITERIA):
        values = np.array([selector.scores_[n][criterion] for n in names])
        spread = values.max() - values.min()
        scaled = (values - values.min()) / spread if spread > 0 else np.ones_like(values)
        ax.plot(x, scaled, marker=marker, linestyle="none", label=f"{LABELS[criterion]} (rescaled)")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{title}: picked {selector.best_name_} (ACC {accuracy[selector.best_name_]:.3f}"
                 f"; best candidate {max(accuracy.values()):.3f})", fontsize=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="3sources,webkb")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="label_free_selection.png")
    args = parser.parse_args()
    names = args.datasets.split(",")
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 6.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        selector, accuracy = select(name, args.seed)
        print(f"{name}: picked {selector.best_name_} (ACC {accuracy[selector.best_name_]:.3f}); "
              f"candidates' ACC from {min(accuracy.values()):.3f} to "
              f"{max(accuracy.values()):.3f}; selection took {selector.fit_time_:.0f} s")
        plot(ax, name, selector, accuracy)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(args.output, dpi=120)
    print(f"Saved {args.output}")


if __name__ == "__main__":
    main()
