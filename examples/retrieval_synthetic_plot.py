"""Plot retrieval runs on the synthetic set: zero-shot versus each method, and training curves.

Reads the metrics JSON files written by ``python -m retrieval evaluate --json`` and the run
folders' ``history.json`` written by ``python -m retrieval train``; saves one PNG and prints a
table.

Usage (the synthetic set of the README's retrieval commands)::

    python examples/retrieval_synthetic_plot.py --zero-shot demo_output/retrieval_zero_shot.json \
        --fine-tuned demo_output/retrieval_fine_tuned.json --run demo_output/contrastive_run \
        --method avse demo_output/retrieval_avse.json demo_output/avse_run \
        --output demo_output/retrieval.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RECALLS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zero-shot", type=Path, required=True)
    parser.add_argument("--fine-tuned", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--method", nargs=3, action="append", default=[],
                        metavar=("NAME", "METRICS_JSON", "RUN_DIR"),
                        help="another trained method (repeatable)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    results = [("zero-shot", json.loads(args.zero_shot.read_text()), None),
               ("contrastive", json.loads(args.fine_tuned.read_text()), args.run)]
    for name, metrics, run in args.method:
        results.append((name, json.loads(Path(metrics).read_text()), Path(run)))

    fig, (ax_bar, ax_curve, ax_twin) = plt.subplots(1, 3, figsize=(18, 4.5))
    x = range(len(RECALLS))
    width = 0.8 / len(results)
    for position, (name, metrics, _) in enumerate(results):
        offset = (position - (len(results) - 1) / 2) * width
        ax_bar.bar([i + offset for i in x], [metrics[k] for k in RECALLS], width=width,
                   label=f"{name} (rSum {metrics['rsum']:.1f})")
    ax_bar.set_xticks(list(x), [k.replace("_", " ").upper() for k in RECALLS], rotation=30)
    ax_bar.set_ylabel("recall (%)")
    ax_bar.set_title("Test split of the synthetic set")
    ax_bar.legend(fontsize=8)

    for position, (name, _, run) in enumerate(results):
        if run is None:
            continue
        history = json.loads((run / "history.json").read_text())["history"]
        if "val_rsum" in history[0]:
            epochs = [record["epoch"] + 1 for record in history]
            ax_curve.plot(epochs, [record["val_rsum"] for record in history], "o-",
                          color=f"C{position}", label=name)
    ax_curve.set_xlabel("epoch (of each method's own run)")
    ax_curve.set_ylabel("validation rSum")
    ax_curve.legend(fontsize=8)
    ax_curve.set_title("Training (selection on validation rSum)")
    # Swapped-twin accuracy: the true caption must score strictly above captions with one
    # colour (attribute) or one shape (category) changed.
    with_twins = [(name, metrics) for name, metrics, _ in results if "twin_acc_attribute" in metrics]
    for column, kind in enumerate(("attribute", "category")):
        ax_twin.bar([i + (column - 0.5) * 0.4 for i in range(len(with_twins))],
                    [metrics[f"twin_acc_{kind}"] for _, metrics in with_twins], width=0.4,
                    label=f"{kind} twins")
    ax_twin.set_xticks(range(len(with_twins)), [name for name, _ in with_twins], rotation=30,
                       ha="right", fontsize=8)
    ax_twin.set_ylabel("swapped-twin accuracy (%)")
    ax_twin.set_title("Fine-grained: true caption beats its swapped twins")
    ax_twin.legend(fontsize=8)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=120)
    print(f"{'':24s}" + "".join(f"{k:>9s}" for k in RECALLS) + f"{'rSum':>9s}"
          + f"{'twin att':>10s}{'twin cat':>10s}")
    for name, metrics, _ in results:
        print(f"{name:24s}" + "".join(f"{metrics[k]:9.1f}" for k in RECALLS)
              + f"{metrics['rsum']:9.1f}"
              + "".join(f"{metrics.get(f'twin_acc_{kind}', float('nan')):10.1f}"
                        for kind in ("attribute", "category")))
    print(f"plot saved to {args.output}")


if __name__ == "__main__":
    main()
