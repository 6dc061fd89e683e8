"""Plot a retrieval run on the synthetic set: zero-shot versus fine-tuned, and training curves.

Reads the metrics JSON files written by ``python -m retrieval evaluate --json`` and the run
folder's ``history.json`` written by ``python -m retrieval train``; saves one PNG.

Usage (what ``make demo`` runs)::

    python examples/retrieval_synthetic_plot.py --zero-shot demo_output/retrieval_zero_shot.json \
        --fine-tuned demo_output/retrieval_fine_tuned.json --run demo_output/contrastive_run \
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
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    zero = json.loads(args.zero_shot.read_text())
    tuned = json.loads(args.fine_tuned.read_text())
    history = json.loads((args.run / "history.json").read_text())["history"]

    fig, (ax_bar, ax_curve) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(RECALLS))
    ax_bar.bar([i - 0.2 for i in x], [zero[k] for k in RECALLS], width=0.4,
               label=f"zero-shot (rSum {zero['rsum']:.1f})")
    ax_bar.bar([i + 0.2 for i in x], [tuned[k] for k in RECALLS], width=0.4,
               label=f"contrastive fine-tune (rSum {tuned['rsum']:.1f})")
    ax_bar.set_xticks(list(x), [k.replace("_", " ").upper() for k in RECALLS], rotation=30)
    ax_bar.set_ylabel("recall (%)")
    ax_bar.set_title("Test split of the synthetic set")
    ax_bar.legend(fontsize=8)

    epochs = [record["epoch"] + 1 for record in history]
    ax_curve.plot(epochs, [record["train_loss"] for record in history], "o-", label="train loss")
    ax_curve.set_xlabel("epoch")
    ax_curve.set_ylabel("InfoNCE loss")
    if "val_rsum" in history[0]:
        twin = ax_curve.twinx()
        twin.plot(epochs, [record["val_rsum"] for record in history], "s--", color="C1",
                  label="validation rSum")
        twin.set_ylabel("validation rSum")
        twin.legend(loc="center right", fontsize=8)
    ax_curve.legend(loc="upper center", fontsize=8)
    ax_curve.set_title("Training (selection on validation rSum)")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=120)
    print(f"zero-shot rSum {zero['rsum']:.1f} -> fine-tuned rSum {tuned['rsum']:.1f}; "
          f"plot saved to {args.output}")


if __name__ == "__main__":
    main()
