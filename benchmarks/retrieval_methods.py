"""Every retrieval method against the contrastive fine-tune, on the synthetic set, same budget.

Protocol (offline, CPU; spec 5.1 / 5.2 and the issue's benchmark section):

* Data: ``make_synthetic(n_images=1000, seed=0)``: 800 train / 100 val / 100 test images,
  5 captions each, plus one dense (all-objects) caption per image for D2S.
* Start: for every seed a tiny CLIP (``tiny-vit-64``, random initialisation drawn from the
  seed) fine-tuned contrastively for 5 epochs (lr 5e-4). It stands in for the pretrained CLIP
  that every method starts from on real data: from random weights AVSE's hinge loss collapses
  the tiny model (measured: see the README), so no method starts from scratch.
* Methods, each from the seed's start run, with the same budget (``--epochs``, default 3), the
  same learning rate for the towers and new modules (``--lr``, default 1e-4), batch 64, warm-up
  + cosine, selection on validation rSum (never test), the start validated first as epoch 0
  and kept when no epoch beats it: ``contrastive`` (InfoNCE, the baseline), ``contrastive``
  with the hinge triplet loss (AVSE's and D2S's loss, so that the loss change is separated from
  the method), ``avse``, ``d2s`` (one third of the budget for the dense stage), each also with
  ``match_loss="infonce"``, ``pcsr`` (clean pairs: its warm-up and co-training inside the
  budget) and ``dcar``. DCAR keeps the CLIP towers frozen and trains only its prompts and
  token weights, which barely move at 1e-4, so its new modules get lr 2e-3 (the setting of
  ``retrieval_noise.py``); every other row trains all its parameters at ``--lr``.
* Aim (issue 26, fixed before the rerun of 2026-12-07): on this default scenario no method's
  test rSum ends below its start (mean over seeds, and the number of seeds where it does).
* Ablations, same budget: AVSE with one whole-image view (chunks kept), with two views and a
  single chunk (views kept), without the cross-view regulariser, without the caption token
  augmentation; D2S without the distillation term (``distill_weight=0``).
* Test metrics: the six recalls and rSum; AVSE is scored with its default FAISS short list plus
  exact re-ranking, averaged over 3 evaluation seeds of its view centres. "short" is the same
  evaluation restricted to the captions that name exactly one object (the sparse captions that
  dense-to-sparse learning is meant to help) and the test images that have one: both directions
  on that sub-collection.
* Cells are mean ± std over seeds (sample std); training and evaluation times are wall seconds
  on this machine, comparable only within this run.

Every run is appended to ``benchmarks/results/retrieval_methods.jsonl`` (runs already there are
skipped); ``retrieval_methods.{md,png}`` are rebuilt at the end or with ``--report-only``.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/retrieval_methods.py
    .venv/bin/python benchmarks/retrieval_methods.py --seeds 0 --rows "contrastive (InfoNCE);AVSE"
    .venv/bin/python benchmarks/retrieval_methods.py --report-only
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (HERE, ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import torch  # noqa: E402

from _common import append_jsonl, code_version, load_jsonl, supersede_records  # noqa: E402
from retrieval.data import load_split, make_synthetic  # noqa: E402
from retrieval.data.synthetic import SHAPES  # noqa: E402
from retrieval.training import (  # noqa: E402
    TrainConfig,
    Trainer,
    build_method,
    encode_split,
    load_run,
)

RESULTS = HERE / "results"
JSONL = RESULTS / "retrieval_methods.jsonl"
MODEL = "tiny-vit-64"
KEYS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"]
EVAL_SEEDS = (0, 1, 2)
START = "start: contrastive, 5 epochs from random init"
#: Row name -> (registered method, method config).
ROWS: dict[str, tuple[str, dict]] = {
    "contrastive (InfoNCE)": ("contrastive", {}),
    "contrastive (hinge)": ("contrastive", {"loss": "triplet"}),
    "AVSE": ("avse", {}),
    "AVSE, 1 whole-image view": ("avse", {"n_views": 1, "keep_train": 1.0, "keep_eval": 1.0}),
    "AVSE, 1 chunk": ("avse", {"chunk_sizes": [64]}),
    "AVSE, no cross-view regulariser": ("avse", {"reg": "none"}),
    "AVSE, no caption augmentation": ("avse", {"text_augment": False}),
    "D2S-VSE": ("d2s", {}),
    "D2S-VSE, no distillation": ("d2s", {"distill_weight": 0.0}),
    "AVSE (InfoNCE match)": ("avse", {"match_loss": "infonce"}),
    "D2S-VSE (InfoNCE match)": ("d2s", {"match_loss": "infonce"}),
    "PCSR": ("pcsr", {}),
    "DCAR": ("dcar", {}),
}
#: Rows whose new modules train at another learning rate than ``--lr`` (see the docstring).
LR_NEW = {"DCAR": 2e-3}
#: The methods judged by the "no method ends below its start" aim (their default rows).
METHOD_ROWS = ("contrastive (InfoNCE)", "AVSE", "D2S-VSE", "PCSR", "DCAR")
BASELINE = "contrastive (InfoNCE)"
_SHAPE_WORDS = re.compile(r"\b(" + "|".join(
    sorted({re.escape(w) for words in SHAPES.values() for w in words}, key=len, reverse=True))
    + r")\b", flags=re.IGNORECASE)


def one_object_captions(captions: list[str]) -> np.ndarray:
    """Indices of the captions that name exactly one object (one shape word)."""
    return np.array([i for i, text in enumerate(captions)
                     if len(_SHAPE_WORDS.findall(text)) == 1], dtype=np.int64)


def sub_collection(images, texts, ids: np.ndarray, keep: np.ndarray):
    """The captions ``keep`` and the images they describe, with ids renumbered."""
    used, new_ids = np.unique(ids[keep], return_inverse=True)
    return images[used], texts[keep], new_ids.astype(np.int64)


def evaluate(method, test, short: np.ndarray) -> dict:
    """Full and short-caption test metrics; AVSE averaged over its evaluation seeds."""
    seeds = EVAL_SEEDS if hasattr(method, "eval_seed") else (None,)
    full, sub = [], []
    for seed in seeds:
        if seed is not None:
            method.eval_seed = seed
        images, texts, ids = encode_split(method, test, verbose=False)
        full.append(method.evaluate_embeddings(images, texts, ids))
        sub.append(method.evaluate_embeddings(*sub_collection(images, texts, ids, short)))
    result = {k: float(np.mean([m[k] for m in full])) for k in KEYS}
    result.update({f"short_{k}": float(np.mean([m[k] for m in sub])) for k in KEYS})
    return result


def train(method_name: str, config: dict, pretrained, train_split, val_split, run_dir: Path,
          *, epochs: int, lr: float, seed: int, lr_new: float | None = None):
    torch.manual_seed(seed)
    method = build_method(method_name, MODEL, pretrained, method_config=config)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr_backbone=lr,
                      lr_new=lr if lr_new is None else lr_new, seed=seed, verbose=False)
    started = time.perf_counter()
    trainer = Trainer(method, cfg, run_dir).fit(train_split, val_split, resume=False)
    return trainer, time.perf_counter() - started


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    done = {(r["row"], r["seed"]) for r in load_jsonl(args.results)}
    work = Path(tempfile.mkdtemp(prefix="retrieval_methods_"))
    data = make_synthetic(work / "synthetic", n_images=args.n_images, seed=0)
    train_split, val, test = (load_split(data, s) for s in ("train", "val", "test"))
    short = one_object_captions(test.captions)
    print(f"synthetic set: {train_split.n_images}/{val.n_images}/{test.n_images} images; "
          f"{len(short)} of {test.n_captions} test captions name one object")
    rows = [START, *ROWS] if args.rows is None else args.rows
    for seed in args.seeds:
        start_dir = work / f"start_{seed}"
        for row in rows:
            if (row, seed) in done:
                continue
            if not (start_dir / "config.json").is_file():
                train("contrastive", {}, None, train_split, val, start_dir, epochs=5,
                      lr=args.start_lr, seed=seed)
            if row == START:
                trainer, elapsed, run_dir = None, float("nan"), start_dir
            else:
                method_name, config = ROWS[row]
                run_dir = work / f"row{list(ROWS).index(row)}_seed{seed}"
                trainer, elapsed = train(method_name, config, start_dir, train_split, val,
                                         run_dir, epochs=args.epochs, lr=args.lr, seed=seed,
                                         lr_new=LR_NEW.get(row))
            method = load_run(run_dir)
            started = time.perf_counter()
            metrics = evaluate(method, test, short)
            eval_time = time.perf_counter() - started
            history = json.loads((run_dir / "history.json").read_text())
            record = {"row": row, "seed": seed, **metrics, "train_time": elapsed,
                      "eval_time": eval_time,
                      "val_rsum": [h.get("val_rsum") for h in history["history"]],
                      "best_epoch": history["best_epoch"] + 1,
                      "epochs": args.epochs, "lr": args.lr, "n_short": int(len(short)),
                      **({"lr_new": LR_NEW[row]} if row in LR_NEW else {}),
                      **({"beside": args.beside} if args.beside else {}),
                      "date": datetime.datetime.now().isoformat(timespec="seconds"),
                      **code_version("retrieval")}
            append_jsonl(record, args.results)
            done.add((row, seed))
            print(f"seed {seed} {row}: rSum {metrics['rsum']:.1f} (short "
                  f"{metrics['short_rsum']:.1f}), train {elapsed:.0f} s, eval {eval_time:.1f} s",
                  flush=True)


def _mean_std(values) -> str:
    values = np.asarray([v for v in values if v == v], dtype=float)
    if values.size == 0:
        return "-"
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():.1f} ± {std:.1f}"


def report(seeds: list[int], results: Path = JSONL) -> None:
    """Rebuild the table (``.md``) and plot (``.png``) beside the ``results`` JSONL."""
    records = [r for r in load_jsonl(results) if r["seed"] in seeds]
    names = [n for n in (START, *ROWS) if any(r["row"] == n for r in records)]
    by_row = {n: [r for r in records if r["row"] == n] for n in names}
    meta = records[0] if records else {}
    base = by_row.get(BASELINE, [])
    base_rsum = np.array([r["rsum"] for r in base])
    spread = base_rsum.std(ddof=1) if base_rsum.size > 1 else float("nan")
    lines = [
        "# Every retrieval method against the contrastive fine-tune (default synthetic set)",
        "",
        f"* Machine: {os.cpu_count()} CPU cores, {platform.system()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}; report written "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}. Protocol: the docstring of "
        "`benchmarks/retrieval_methods.py`.",
        f"* Every method trains {meta.get('epochs', '?')} epochs at lr {meta.get('lr', '?')} "
        "(towers and new modules; DCAR's new modules at 2e-3, its towers frozen) from the "
        "seed's start run, batch 64, selected on validation rSum (best epoch 0: the start kept). "
        f"Seeds: {', '.join(map(str, sorted({r['seed'] for r in records})))}; cells are "
        "mean ± std (sample std) over seeds; recalls in %, rSum out of 600. AVSE: mean over "
        f"evaluation seeds {', '.join(map(str, EVAL_SEEDS))} of its view centres.",
        f"* \"short\": the {meta.get('n_short', '?')} test captions that name exactly one object "
        "and the images they describe, both directions.",
        "* Times marked (busy) were measured while another benchmark shared the 2 cores: "
        "compare them with nothing.",
        "",
        "| method | " + " | ".join(k.replace("_", " ").upper() for k in KEYS)
        + " | short rSum | train (s) | eval (s) | best epoch |",
        "|---|" + "---|" * (len(KEYS) + 4),
    ]
    for name in names:
        rows = by_row[name]
        cells = [_mean_std([r[k] for r in rows]) for k in KEYS]
        busy = " (busy)" if any(r.get("beside") for r in rows) else ""
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {_mean_std([r['short_rsum'] for r in rows])}"
                     + f" | {_mean_std([r['train_time'] for r in rows])}{busy}"
                     + f" | {_mean_std([r['eval_time'] for r in rows])}{busy}"
                     + f" | {', '.join(str(r['best_epoch']) for r in rows)} |")
    if base:
        lines += ["", f"Aim: each method beats the baseline ({BASELINE}, rSum "
                  f"{base_rsum.mean():.1f}) by more than the baseline's seed spread "
                  f"({spread:.1f}):", ""]
        for name in ("AVSE", "D2S-VSE"):
            if name in by_row:
                rsum = np.mean([r["rsum"] for r in by_row[name]])
                gain = rsum - base_rsum.mean()
                verdict = "met" if gain > spread else "**missed**"
                lines.append(f"* {name}: {rsum:.1f} ({gain:+.1f}): {verdict}.")
    start = {r["seed"]: r["rsum"] for r in by_row.get(START, [])}
    if start:
        lines += ["", "Aim (issue 26): no method's test rSum ends below its start "
                  f"(start {np.mean(list(start.values())):.1f}); difference to the same seed's "
                  "start, mean ± std, and the seeds where the method ends below it:", ""]
        for name in METHOD_ROWS:
            paired = [(r["rsum"] - start[r["seed"]], r["seed"]) for r in by_row.get(name, [])
                      if r["seed"] in start]
            if not paired:
                continue
            diffs = np.array([d for d, _ in paired])
            below = [seed for d, seed in paired if d < 0]
            verdict = "met" if diffs.mean() >= 0 else "**missed**"
            kept = [r["seed"] for r in by_row[name] if r["best_epoch"] == 0]
            lines.append(
                f"* {name}: {_mean_std(diffs)} rSum; below the start on "
                f"{len(below)} of {len(diffs)} seeds{f' ({below})' if below else ''}; "
                f"validation kept the start on {len(kept)}: {verdict}.")
    d2s = by_row.get("D2S-VSE", [])
    if d2s:
        curves = np.array([r["val_rsum"] for r in d2s], dtype=float)
        lines += ["", "D2S validation rSum per epoch (stage 1 first): "
                  + ", ".join(f"{v:.1f}" for v in curves.mean(0)) + "."]
    lines += ["", f"![test rSum per method]({results.with_suffix('.png').name})", ""]
    results.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(names))
    for offset, key, label in ((-0.2, "rsum", "all captions"),
                               (0.2, "short_rsum", "one-object captions")):
        values = [[r[key] for r in by_row[n]] for n in names]
        ax.bar(x + offset, [np.mean(v) for v in values], width=0.4, label=label,
               yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in values], capsize=3)
    ax.set_xticks(x, [n.replace(", ", ",\n").replace(": ", ":\n") for n in names], fontsize=7)
    ax.set_ylabel("test rSum (mean ± std over seeds)")
    ax.set_title("Synthetic set, tiny CLIP, same budget from the same start")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(results.with_suffix(".png"), dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=None, help="row names separated by ';' (default all)")
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--start-lr", type=float, default=5e-4)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--beside", default=None,
                        help="record that another job shared the machine (times marked)")
    parser.add_argument("--results", type=Path, default=JSONL,
                        help="JSONL of the runs; the report and plot are written beside it")
    parser.add_argument("--supersede", action="store_true",
                        help="first move every record to <results>.superseded.jsonl (results "
                        "of older code; the report is rebuilt from the new runs)")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if args.rows is not None:
        args.rows = [r.strip() for r in args.rows.split(";")]
        unknown = [r for r in args.rows if r not in ROWS and r != START]
        if unknown:
            parser.error(f"unknown rows {unknown}; known: {[START, *ROWS]}")
    if args.supersede and not args.report_only:
        supersede_records(args.results, lambda record: True)
    if not args.report_only:
        run(args)
    report(args.seeds, args.results)


if __name__ == "__main__":
    main()
