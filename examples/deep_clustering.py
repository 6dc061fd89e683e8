"""Deep multi-view clustering: VGMGC on the ACM graphs and MGBCC on BBCSport.

Run ``python examples/deep_clustering.py`` (about 4 minutes on 2 CPU cores; ``--vgmgc-epochs
40`` makes it about one). It prints the scores of both estimators and saves
``deep_clustering.png``: for each, the training loss per epoch (total and its parts) and a 2-D
PCA projection of the learned embedding coloured by the found clusters, with the true classes
as marker shapes.

* VGMGC (``VariationalGraphGeneratorClustering``) takes node features and a list of sparse
  adjacency matrices: ACM's papers with a co-author graph (PAP) and a same-subject graph (PLP).
  It is transductive: labels exist for the nodes it was fitted on (``labels_``).
* MGBCC (``GranularBallContrastiveClustering``) takes a list of feature views (BBCSport's two
  article segments, tf-idf) and, being inductive, also maps new articles with ``transform`` /
  ``predict`` (shown on a held-out fifth of the articles).
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from mvlearn_plus.cluster import (  # noqa: E402
    GranularBallContrastiveClustering,
    VariationalGraphGeneratorClustering,
)
from mvlearn_plus.datasets import load_dataset  # noqa: E402
from mvlearn_plus.metrics import clustering_accuracy, evaluate_clustering  # noqa: E402
from mvlearn_plus.preprocessing import preprocess_views  # noqa: E402


def report(name, y, labels):
    scores = evaluate_clustering(y, labels)
    print(f"{name:22s} " + "  ".join(f"{k}={scores[k]:.3f}"
                                       for k in ("acc", "nmi", "ari", "f1_macro")))


def plot_model(axes, name, model, y):
    history = model.loss_history_
    epochs = np.arange(1, len(history) + 1)
    ax = axes[0]
    ax.plot(epochs, [h["loss"] for h in history], lw=2, label="total")
    for part in [k for k in history[0] if k not in ("loss", "kl_weight")]:
        ax.plot(epochs, [h[part] for h in history], lw=1, label=part.replace("_", " "))
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"{name}: training loss")
    ax.legend(fontsize=7)

    points = PCA(n_components=2, random_state=0).fit_transform(model.embedding_)
    ax = axes[1]
    markers = "o^sDvP*X"
    for cls in np.unique(y):
        mask = y == cls
        ax.scatter(points[mask, 0], points[mask, 1], c=model.labels_[mask], cmap="tab10",
                   vmin=0, vmax=9, s=8, marker=markers[cls % len(markers)], alpha=0.7,
                   label=f"class {cls}")
    ax.set_title(f"{name}: embedding (PCA), colour = cluster, "
                 f"ACC {clustering_accuracy(y, model.labels_):.3f}")
    ax.legend(fontsize=7, markerscale=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="deep_clustering.png")
    parser.add_argument("--vgmgc-epochs", type=int, default=150,
                        help="VGMGC epochs (default: its default, 150)")
    parser.add_argument("--mgbcc-epochs", type=int, default=150,
                        help="MGBCC epochs (default: its default, 150)")
    parser.add_argument("--verbose", action="store_true", help="progress bars per epoch")
    args = parser.parse_args()

    acm = load_dataset("acm")
    print(f"ACM: {acm.data.shape[0]} papers, {acm.data.shape[1]} features, graphs "
          f"{', '.join(f'{n} ({g.nnz} entries)' for n, g in zip(acm.graph_names, acm.graphs))}")
    vgmgc = VariationalGraphGeneratorClustering(
        n_clusters=acm.n_clusters, max_epochs=args.vgmgc_epochs,
        # the default ratio: a third of the epochs pretrain the autoencoder (50 of 150)
        pretrain_epochs=max(1, args.vgmgc_epochs // 3), random_state=0, verbose=args.verbose,
    ).fit(acm.data, graphs=acm.graphs)
    report("VGMGC on ACM", acm.target, vgmgc.labels_)
    print(f"  view weights {np.round(vgmgc.view_weights_, 3)} (PAP, PLP); consensus graph "
          f"{vgmgc.consensus_graph_.nnz // 2} edges; {vgmgc.algorithm_} path")

    bbc = load_dataset("bbcsport")
    views = preprocess_views(bbc.views)  # tf-idf + L2 rows for these word-count views
    rng = np.random.RandomState(0)
    order = rng.permutation(bbc.target.size)
    train, test = order[: int(0.8 * order.size)], order[int(0.8 * order.size):]
    mgbcc = GranularBallContrastiveClustering(
        n_clusters=bbc.n_clusters, max_epochs=args.mgbcc_epochs, random_state=0,
        verbose=args.verbose,
    ).fit([v[train] for v in views])
    report("MGBCC on BBCSport", bbc.target[train], mgbcc.labels_)
    held_out = mgbcc.predict([v[test] for v in views])
    report("MGBCC held-out 20 %", bbc.target[test], held_out)

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    plot_model(axes[0], "VGMGC on ACM", vgmgc, acm.target)
    plot_model(axes[1], "MGBCC on BBCSport", mgbcc, bbc.target[train])
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"Saved {args.output}")


if __name__ == "__main__":
    main()
