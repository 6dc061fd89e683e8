"""Seconds per training epoch of VGMGC's sparse path at one size (a quick scaling probe).

Builds the synthetic attributed multi-graph of ``deep_scaling.py`` (three SBM graph views, 100
binary features, 10 clusters) at ``--n`` nodes, fits VGMGC (``algorithm="sparse"``, defaults
otherwise) for ``--epochs`` epochs (half of them pretraining, so both phases are timed) and
prints the set-up time (data preparation before the first epoch) and the median and mean
seconds per epoch. ``--sparse-features`` passes the features as a CSR matrix, ``--words`` sets their
width (wider than the 512-wide hidden layer, sparse features stay sparse); ``--degree`` sets
the average degree of the graph views.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vgmgc_epoch_time.py --n 5000 --epochs 6
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparse-features", action="store_true")
    parser.add_argument("--degree", type=int, default=None)
    parser.add_argument("--words", type=int, default=None,
                        help="feature columns (default 100, as in deep_scaling.py)")
    args = parser.parse_args()

    import scipy.sparse as sp
    import torch

    threads = int(os.environ["OMP_NUM_THREADS"])
    import deep_scaling  # sets the thread variables to 2 for its own children
    import mvlearn_plus.cluster._vgmgc._estimator as estimator_module
    from mvlearn_plus.cluster import VariationalGraphGeneratorClustering

    torch.set_num_threads(threads)
    if args.degree is not None:
        deep_scaling.GRAPH_DEGREE = args.degree
    if args.words is not None:
        deep_scaling.N_WORDS = args.words
    X, graphs, _ = deep_scaling.make_graph_data(args.n, args.seed)
    if args.sparse_features:
        X = sp.csr_matrix(X)
    times, marks = [], {}
    original = estimator_module.run_epochs

    def timed_run_epochs(n_epochs, train_epoch, **kwargs):
        marks["first_epoch"] = time.perf_counter()

        def timed(epoch):
            start = time.perf_counter()
            record = train_epoch(epoch)
            times.append(time.perf_counter() - start)
            return record

        return original(n_epochs, timed, **kwargs)

    estimator_module.run_epochs = timed_run_epochs
    model = VariationalGraphGeneratorClustering(
        n_clusters=deep_scaling.N_CLUSTERS, algorithm="sparse", max_epochs=args.epochs,
        pretrain_epochs=args.epochs // 2, random_state=args.seed, device="cpu")
    start = time.perf_counter()
    model.fit(X, graphs=graphs)
    total = time.perf_counter() - start
    print(json.dumps({
        "n": args.n, "epochs": args.epochs, "sparse_features": args.sparse_features,
        "degree": args.degree or deep_scaling.GRAPH_DEGREE, "words": deep_scaling.N_WORDS,
        "threads": torch.get_num_threads(), "fit_s": round(total, 2),
        "setup_s": round(marks["first_epoch"] - start, 2),
        "epoch_median_s": round(float(np.median(times)), 3),
        "epoch_mean_s": round(float(np.mean(times)), 3),
        "final_loss": model.loss_history_[-1]["loss"],
    }))


if __name__ == "__main__":
    main()
