"""mPAC ablation (issue 23): default vs alignment weight 0 vs another build, one seed per dataset.

Usage (OMP_NUM_THREADS=1)::

    python benchmarks/mpac_ablation.py --tag new --out results.jsonl [--gamma 0] [--datasets a,b]

Writes one JSON line per dataset with the labels, fit time and ACC (scored after the fit). Run the
same script with ``PYTHONPATH`` pointing at another checkout to score that build's default.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mvlearn_plus.cluster import PartitionAlignmentClustering
from mvlearn_plus.datasets import list_datasets, load_dataset
from mvlearn_plus.metrics import clustering_accuracy
from mvlearn_plus.preprocessing import preprocess_views


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--datasets", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default="{}", help="JSON dict of estimator parameters")
    args = parser.parse_args()
    names = args.datasets.split(",") if args.datasets else [
        n for n in list_datasets() if load_dataset(n).kind != "graph"]
    params = json.loads(args.params)
    for name in names:
        data = load_dataset(name)
        views = preprocess_views(data.views)
        model = PartitionAlignmentClustering(n_clusters=data.n_clusters, random_state=args.seed,
                                             **params)
        start = time.perf_counter()
        model.fit(views)
        elapsed = time.perf_counter() - start
        row = {"tag": args.tag, "dataset": name, "n": int(views[0].shape[0]),
               "seconds": round(elapsed, 2),
               "acc": round(float(clustering_accuracy(data.target, model.labels_)), 4),
               "n_iter": int(model.n_iter_),
               "view_weights": [round(float(w), 4) for w in model.view_weights_],
               "labels": model.labels_.tolist()}
        print(json.dumps({k: v for k, v in row.items() if k != "labels"}), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
