"""Why AVSE and D2S-VSE fall below their start on the default set (issue 26, item 3).

An ablation on the feature forms (adapters and heads on the start's frozen features), on the
``default`` synthetic set, over every switch the feature forms have:

* the learning rate (:data:`LR_GRID`, the grid of ``retrieval_scenarios.py``);
* the loss: the contrastive adapters with InfoNCE and with the hinge triplet loss (AVSE's and
  D2S's loss), AVSE / D2S with the hardest-negative hinge from the first epoch
  (``sum_first_epoch=False``) instead of the sum-of-violations first epoch, and AVSE / D2S with
  ``match_loss="infonce"`` (rows added after the first runs, when the option was added; they
  are appended so that earlier rows keep their run folders);
* AVSE: the number of views (1, 2 = default, 4), one chunk of the full width instead of
  16-d chunks (each chunk's cosine is normalised on its own, so AVSE's score at step 0, with
  every view equal to the CLIP embedding, is not the start's cosine), and the cross-view
  regulariser off;
* D2S: the dense stage short (1 epoch of 6), default (2 of 6) and long (4 of 6), and the
  distillation term off (``distill_weight=0``);
* the start: a tiny CLIP pretrained on *another* synthetic set (``--start other``, the
  demo's and ``retrieval_scenarios.py``'s start, shared with it through ``--work``) or on
  this set's own training split (``--start same``, the protocol of ``retrieval_methods.py``
  where the fall was first measured: 5 epochs, lr 5e-4, on the pairs the methods then train on).

The caption token augmentation is a switch of AVSE's image form only (its feature form reads
pooled caption embeddings), so it is not in this ablation.

Every run keeps its best validation epoch (epoch 0 = the start included); the record stores
which epoch won, the validation rSum per epoch, and the test metrics of the kept and the last
epoch. Each record carries the commit. Results: ``benchmarks/results/retrieval_fall_ablation
.jsonl`` (resumable) and ``.md``.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/retrieval_fall_ablation.py --seeds 0
    .venv/bin/python benchmarks/retrieval_fall_ablation.py --report-only
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import append_jsonl, code_version, load_jsonl, parse_seeds  # noqa: E402
from retrieval_scenarios import (  # noqa: E402
    BATCH,
    LR_GRID,
    MODEL,
    QUIET,
    cli,
    start_clip,
)

RESULTS = HERE / "results"
JSONL = RESULTS / "retrieval_fall_ablation.jsonl"
N_IMAGES = 1000
EPOCHS = 6
D2S_SMALL = {"n_prompts": 8, "decoder_depth": 2}
#: Row name -> (method, method config).
ROWS: dict[str, tuple[str, dict]] = {
    "contrastive adapters (InfoNCE)": ("contrastive", {}),
    "contrastive adapters (hinge)": ("contrastive", {"loss": "triplet"}),
    "AVSE (2 views)": ("avse", {}),
    "AVSE, 1 view": ("avse", {"n_views": 1}),
    "AVSE, 4 views": ("avse", {"n_views": 4}),
    # One chunk of the full width: the score is then the plain cosine of the best view (the
    # default scores the sum of per-chunk cosines of 16-d chunks, which is not CLIP's score
    # even at step 0, where every view is the CLIP embedding).
    "AVSE, 1 chunk (full-width cosine)": ("avse", {"chunk_sizes": [64]}),
    "AVSE, no cross-view regulariser": ("avse", {"reg": "none"}),
    "AVSE, hardest negative from epoch 1": ("avse", {"sum_first_epoch": False}),
    "D2S (dense stage 2 of 6 epochs)": ("d2s", {**D2S_SMALL}),
    "D2S, dense stage 1 of 6": ("d2s", {**D2S_SMALL, "stage1_fraction": 1 / 6}),
    "D2S, dense stage 4 of 6": ("d2s", {**D2S_SMALL, "stage1_fraction": 2 / 3}),
    "D2S, no distillation": ("d2s", {**D2S_SMALL, "distill_weight": 0.0}),
    "D2S, hardest negative from epoch 1": ("d2s", {**D2S_SMALL, "sum_first_epoch": False}),
    "AVSE (InfoNCE match)": ("avse", {"match_loss": "infonce"}),
    "D2S (InfoNCE match)": ("d2s", {**D2S_SMALL, "match_loss": "infonce"}),
}
START_ROW = "start (frozen features, no training)"


def same_set_start(work: Path, seed: int, data: Path, log) -> Path:
    """A start fitted on this set's own training split (``retrieval_methods.py``'s start)."""
    clip = work / f"seed{seed}" / "default_same_start"
    if not (clip / "history.json").is_file():
        cli(["train", "--method", "contrastive", "--model", MODEL, "--data-root", str(data),
             "--output", str(clip), "--epochs", "5", "--batch-size", str(BATCH), "--lr", "5e-4",
             "--seed", str(seed), "--restart", *QUIET], log)
    return clip


def run(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    done = {(r["start"], r["seed"], r["row"], r["lr"]) for r in load_jsonl(args.results)}
    version = code_version("retrieval")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [START_ROW, *ROWS] if args.rows is None else args.rows
    with (args.work / "ablation_commands.log").open("a") as log:
        for seed in args.seeds:
            for start in args.starts:
                base = {"start": start, "seed": seed, "epochs": EPOCHS, "batch": BATCH,
                        "n_images": N_IMAGES, **version}
                folder = args.work / f"seed{seed}" / f"default_n{N_IMAGES}"
                data = folder / "data"
                if not (data / "metadata.json").is_file():
                    cli(["make-synthetic", "--output", str(data), "--n-images", str(N_IMAGES),
                         "--seed", str(seed)], log)
                clip = (start_clip(args.work, seed, log) if start == "other"
                        else same_set_start(args.work, seed, data, log))
                features = folder / f"features_{start}"
                if not (features / "manifest.json").is_file():
                    cli(["encode", "--run", str(clip), "--data-root", str(data), "--output",
                         str(features), "--splits", "train,val,test", "--tokens",
                         "--image-tokens", *QUIET], log)
                for row in rows:
                    grid = [None] if row == START_ROW else LR_GRID
                    for lr in grid:
                        if (start, seed, row, lr) in done:
                            continue
                        record = one_run(row, lr, seed, start, folder, features, log)
                        record = {**base, **record, "date": datetime.datetime.now().isoformat(
                            timespec="seconds")}
                        append_jsonl(record, args.results)
                        done.add((start, seed, row, lr))
                        kept = record.get("kept", "-")
                        print(f"seed {seed} start={start} {row} lr {lr}: test rSum "
                              f"{record['test']['rsum']:.1f} (kept {kept}, epoch "
                              f"{record.get('best_epoch', '-')}), last "
                              f"{record.get('test_last', {}).get('rsum', float('nan')):.1f}, "
                              f"{record.get('train_s', 0):.0f} s", flush=True)


def one_run(row, lr, seed, start, folder, features, log) -> dict:
    on_features = ["--data-root", str(features), "--quiet"]
    if row == START_ROW:
        out = folder / f"start_{start}_test.json"
        val = folder / f"start_{start}_val.json"
        cli(["evaluate", *on_features, "--json", str(out)], log)
        cli(["evaluate", *on_features, "--split", "val", "--json", str(val)], log)
        return {"row": row, "lr": None, "test": json.loads(out.read_text()),
                "val_rsum": json.loads(val.read_text())["rsum"]}
    method, config = ROWS[row]
    run_dir = folder / f"{start}_{list(ROWS).index(row)}_lr{lr:g}"
    seconds = cli(["train", "--method", method, "--data-root", str(features), "--output",
                   str(run_dir), "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--lr",
                   str(lr), "--lr-new", str(lr), "--seed", str(seed), "--method-config",
                   json.dumps(config), "--restart", *QUIET], log)
    metrics = {}
    for which in ("best", "last"):
        out = run_dir / f"test_{which}.json"
        cli(["evaluate", "--run", str(run_dir), "--which", which, *on_features, "--json",
             str(out)], log)
        metrics[which] = json.loads(out.read_text())
    history = json.loads((run_dir / "history.json").read_text())
    return {"row": row, "lr": lr, "method": method, "config": config,
            "val_rsum": history["best_val_rsum"], "kept": history["kept"],
            "best_epoch": history["best_epoch"] + 1,
            "start_val_rsum": (history.get("start") or {}).get("val_rsum"),
            "val_rsum_per_epoch": [h.get("val_rsum") for h in history["history"]],
            "train_s": seconds, "test": metrics["best"], "test_last": metrics["last"]}


def _fmt(values) -> str:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return "-"
    if values.size == 1:
        return f"{values[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def report(seeds: list[int], results: Path) -> None:
    records = [r for r in load_jsonl(results) if r["seed"] in seeds]
    lines = ["# Why AVSE and D2S-VSE fall below their start (issue 26, item 3)", "",
             "Protocol: the docstring of `benchmarks/retrieval_fall_ablation.py`. Default "
             f"synthetic set ({N_IMAGES} images, seed = the seed), feature forms, {EPOCHS} "
             f"epochs, batch {BATCH}, lr as `--lr` and `--lr-new`. Every run keeps its best "
             "validation epoch (0 = the start). Commit(s): "
             + ", ".join(sorted({r.get('commit', '?') for r in records})) + "; seeds "
             + ", ".join(map(str, sorted({r['seed'] for r in records}))) + ".", ""]
    for start in ("other", "same"):
        chosen = [r for r in records if r["start"] == start]
        if not chosen:
            continue
        starts = [r for r in chosen if r["row"] == START_ROW]
        s_test = _fmt([r["test"]["rsum"] for r in starts])
        s_val = _fmt([r["val_rsum"] for r in starts])
        title = ("a tiny CLIP pretrained on another synthetic set" if start == "other" else
                 "a tiny CLIP trained on this set's own training split")
        lines += [f"## Start: {title}", "",
                  f"Seeds {', '.join(str(r['seed']) for r in starts)}. The start (frozen "
                  f"features): test rSum {s_test}, validation rSum {s_val}.",
                  "", "Cells: test rSum of the kept epoch / of the last epoch; [kept epoch per "
                  "seed, 0 = the start]; ▲ where the kept epoch's test rSum is above the "
                  "start's on every seed.", "",
                  "| setting | " + " | ".join(f"lr {lr:g}" for lr in LR_GRID) + " |",
                  "|---|" + "---|" * len(LR_GRID)]
        start_by_seed = {r["seed"]: r["test"]["rsum"] for r in starts}
        for row in ROWS:
            cells = []
            for lr in LR_GRID:
                runs = sorted((r for r in chosen if r["row"] == row and r["lr"] == lr),
                              key=lambda r: r["seed"])
                if not runs:
                    cells.append("-")
                    continue
                above = all(r["test"]["rsum"] > start_by_seed.get(r["seed"], np.inf)
                            for r in runs)
                kept = ",".join("0" if r["kept"] == "start" else str(r["best_epoch"])
                                for r in runs)
                cells.append(f"{_fmt([r['test']['rsum'] for r in runs])} / "
                             f"{_fmt([r['test_last']['rsum'] for r in runs])} [{kept}]"
                             + (" ▲" if above else ""))
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines += ["", "Validation rSum per epoch (epoch 0 = the start; mean over seeds) at "
                  "each setting's best rate by validation:", ""]
        for row in ROWS:
            best_lr, best_val = None, -np.inf
            for lr in LR_GRID:
                runs = [r for r in chosen if r["row"] == row and r["lr"] == lr]
                if runs and np.mean([r["val_rsum"] for r in runs]) > best_val:
                    best_lr, best_val = lr, np.mean([r["val_rsum"] for r in runs])
            if best_lr is None:
                continue
            runs = [r for r in chosen if r["row"] == row and r["lr"] == best_lr]
            curves = np.array([[r["start_val_rsum"], *r["val_rsum_per_epoch"]] for r in runs],
                              dtype=float)
            lines.append(f"* {row}, lr {best_lr:g}: "
                         + ", ".join(f"{v:.1f}" for v in curves.mean(0)))
        lines.append("")
    results.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--starts", default="other", help="other, same or other,same")
    parser.add_argument("--rows", default=None, help="row names separated by ';'")
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrieval_scenarios"))
    parser.add_argument("--results", type=Path, default=JSONL)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.seeds = parse_seeds(args.seeds)
    args.starts = [s.strip() for s in args.starts.split(",")]
    if args.rows is not None:
        args.rows = [r.strip() for r in args.rows.split(";")]
        unknown = [r for r in args.rows if r not in ROWS and r != START_ROW]
        if unknown:
            parser.error(f"unknown rows {unknown}")
    if not args.report_only:
        began = time.perf_counter()
        run(args)
        print(f"total {time.perf_counter() - began:.0f} s", flush=True)
    report(args.seeds, args.results)


if __name__ == "__main__":
    main()
