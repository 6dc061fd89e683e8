"""Every retrieval method on real photos: Flickr8k (1,000 photos), tiny CLIP from random weights.

Protocol (offline, CPU; issue 26 item 5):

* Data: ``flickr8k_1k`` of the data home (``$MVLEARN_PLUS_DATA/retrieval/flickr8k_1k``, card
  ``datasets/retrieval/flickr8k_1k.md``; never committed): 1,000 real Flickr8k photos with their 5
  human captions each and the official split, 753 train / 113 dev / 125 test photos (the 9 in no
  split are not used). Read through ``load_split`` (its ``captions.jsonl``; ``val`` is ``dev``).
* Model: ``tiny-vit-64`` (a tiny open_clip config, 64-px images) from **random weights**, drawn
  from the seed: no pretrained CLIP can be obtained on these machines, so absolute recalls are
  low. The point is real photos and real captions through every reader and method, and the
  comparison at equal budget.
* Rows, each from the seed's random initialisation, same budget (``--epochs``, default 5), same
  learning rate for towers and new modules (``--lr``, default 5e-4), batch 64, warm-up + cosine,
  selection on dev rSum (never test), test on test: ``zero-shot`` (the random initialisation
  itself, untrained), ``contrastive`` (InfoNCE fine-tune, the baseline), ``avse``, ``d2s``,
  ``pcsr``, ``dcar`` with their default settings.
* D2S's dense caption of a training photo is the concatenation of its 5 human captions (Flickr8k
  has no LLaVA paragraphs like those the D2S authors published for Flickr30K and COCO); the
  test needs none.
* Test metrics: the six recalls and rSum (5 captions per photo, 125 photos); AVSE averaged over
  3 evaluation seeds of its view centres. Cells are mean ± std over seeds (sample std); times
  are wall seconds on this machine, comparable only within one run.

Every run is appended to ``benchmarks/results/retrieval_flickr8k.jsonl`` (runs already there
are skipped, so an interrupted run resumes); ``retrieval_flickr8k.{md,png}`` are rebuilt at the
end or with ``--report-only``.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/retrieval_flickr8k.py
    .venv/bin/python benchmarks/retrieval_flickr8k.py --seeds 0 --rows contrastive --epochs 1
    .venv/bin/python benchmarks/retrieval_flickr8k.py --report-only
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
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

from _common import append_jsonl, code_version, load_jsonl  # noqa: E402
from retrieval.data import load_split  # noqa: E402
from retrieval_methods import _mean_std  # noqa: E402  (the same table cells)
from retrieval.data.shipped import local_set_dir  # noqa: E402
from retrieval.training import TrainConfig, Trainer, build_method, encode_split, load_run  # noqa: E402

RESULTS = HERE / "results"
JSONL = RESULTS / "retrieval_flickr8k.jsonl"
MODEL = "tiny-vit-64"
KEYS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"]
EVAL_SEEDS = (0, 1, 2)
ZERO_SHOT = "zero-shot (random weights)"
BASELINE = "contrastive"
#: Row name -> registered method (default settings); the zero-shot row trains nothing.
ROWS: dict[str, str | None] = {ZERO_SHOT: None, "contrastive": "contrastive", "avse": "avse",
                               "d2s": "d2s", "pcsr": "pcsr", "dcar": "dcar"}


def with_joined_dense_captions(split):
    """The split with each photo's captions joined into its dense caption (D2S's teacher text)."""
    return split.with_dense_captions([" ".join(split.captions[c] for c in captions)
                                      for captions in split.image_captions])


def chance_rsum(n_images: int, captions_per_image: int = 5) -> float:
    """Expected rSum of a random ranking: text-to-image R@K = K / n_images; image-to-text R@K =
    the chance that one of the image's captions is among K drawn without replacement."""
    n_texts = n_images * captions_per_image
    total = 0.0
    for k in (1, 5, 10):
        total += min(k / n_images, 1.0)
        total += 1.0 - np.prod([(n_texts - captions_per_image - j) / (n_texts - j)
                                for j in range(k)])
    return 100.0 * total


def evaluate(method, test) -> dict:
    """Test metrics; AVSE averaged over its evaluation seeds."""
    seeds = EVAL_SEEDS if hasattr(method, "eval_seed") else (None,)
    runs = []
    for seed in seeds:
        if seed is not None:
            method.eval_seed = seed
        runs.append(method.evaluate_embeddings(*encode_split(method, test, verbose=False)))
    return {k: float(np.mean([m[k] for m in runs])) for k in KEYS}


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    done = {(r["row"], r["seed"]) for r in load_jsonl(args.results)}
    data = args.data_root or local_set_dir("flickr8k_1k")
    train_split, dev, test = (load_split(data, s) for s in ("train", "val", "test"))
    if args.max_train_images:
        train_split = train_split.subset(min(args.max_train_images, train_split.n_images))
    print(f"Flickr8k {data}: {train_split.n_images} train / {dev.n_images} dev / "
          f"{test.n_images} test photos", flush=True)
    work = Path(tempfile.mkdtemp(prefix="retrieval_flickr8k_"))
    for seed in args.seeds:
        for row in args.rows:
            if (row, seed) in done:
                continue
            method_name = ROWS[row]
            torch.manual_seed(seed)
            started = time.perf_counter()
            history: dict = {}
            if method_name is None:
                method = build_method("contrastive", MODEL, None, warn_random=False)
                elapsed = 0.0
            else:
                run_dir = work / f"{row}_seed{seed}"
                method = build_method(method_name, MODEL, None, warn_random=False)
                split = (with_joined_dense_captions(train_split)
                         if getattr(method, "uses_dense_captions", False) else train_split)
                cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr_backbone=args.lr,
                                  lr_new=args.lr, seed=seed, verbose=False,
                                  num_workers=args.workers)
                Trainer(method, cfg, run_dir).fit(split, dev, resume=False)
                elapsed = time.perf_counter() - started
                method = load_run(run_dir)
                history = json.loads((run_dir / "history.json").read_text())
            started = time.perf_counter()
            metrics = evaluate(method, test)
            eval_time = time.perf_counter() - started
            record = {"row": row, "seed": seed, **metrics, "train_time": elapsed,
                      "eval_time": eval_time,
                      "val_rsum": [h.get("val_rsum") for h in history.get("history", [])],
                      "best_epoch": history.get("best_epoch", -1) + 1,
                      "epochs": args.epochs, "lr": args.lr, "n_train": train_split.n_images,
                      "n_test": test.n_images,
                      **({"beside": args.beside} if args.beside else {}),
                      "date": datetime.datetime.now().isoformat(timespec="seconds"),
                      **code_version("retrieval")}
            append_jsonl(record, args.results)
            done.add((row, seed))
            print(f"seed {seed} {row}: test rSum {metrics['rsum']:.1f}, train {elapsed:.0f} s, "
                  f"eval {eval_time:.1f} s", flush=True)


def report(seeds: list[int], results: Path = JSONL) -> None:
    """Rebuild the table (``.md``) and plot (``.png``) beside the ``results`` JSONL."""
    records = [r for r in load_jsonl(results) if r["seed"] in seeds]
    names = [n for n in ROWS if any(r["row"] == n for r in records)]
    by_row = {n: [r for r in records if r["row"] == n] for n in names}
    trained = [r for r in records if r["row"] != ZERO_SHOT]
    meta = trained[0] if trained else (records[0] if records else {})
    base = np.array([r["rsum"] for r in by_row.get(BASELINE, [])])
    spread = base.std(ddof=1) if base.size > 1 else float("nan")
    chance = chance_rsum(int(meta.get("n_test", 125)))
    lines = [
        "# Every retrieval method on real photos: Flickr8k, 1,000 photos, tiny CLIP from random "
        "weights",
        "",
        f"* Machine: {os.cpu_count()} CPU cores, {platform.system()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}; report written "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}. Protocol: the docstring of "
        "`benchmarks/retrieval_flickr8k.py`.",
        f"* `{MODEL}` from random weights; every method trains {meta.get('epochs', '?')} epochs "
        f"at lr {meta.get('lr', '?')} on {meta.get('n_train', '?')} train photos, batch 64, "
        "selected on dev rSum; test: 125 photos x 5 captions. Seeds: "
        f"{', '.join(map(str, sorted({r['seed'] for r in records})))}; cells are mean ± std "
        "(sample std) over seeds; recalls in %, rSum out of 600.",
        f"* A random ranking scores rSum {chance:.1f} on these test photos (chance).",
        "* Times marked (busy) were measured while another job shared the machine: compare "
        "them with nothing.",
        "",
        "| method | " + " | ".join(k.replace("_", " ").upper() for k in KEYS)
        + " | train (s) | eval (s) | best epoch |",
        "|---|" + "---|" * (len(KEYS) + 3),
    ]
    for name in names:
        rows = by_row[name]
        busy = " (busy)" if any(r.get("beside") for r in rows) else ""
        lines.append(f"| {name} | " + " | ".join(_mean_std([r[k] for r in rows]) for k in KEYS)
                     + f" | {_mean_std([r['train_time'] for r in rows])}{busy}"
                     + f" | {_mean_std([r['eval_time'] for r in rows])}{busy}"
                     + f" | {', '.join(str(r['best_epoch']) for r in rows)} |")
    if base.size:
        lines += ["", f"Against the baseline ({BASELINE}, test rSum {base.mean():.1f}, seed "
                  f"spread {spread:.1f}):", ""]
        for name in names:
            if name == BASELINE:
                continue
            rsum = np.mean([r["rsum"] for r in by_row[name]])
            gain = rsum - base.mean()
            verdict = ("beats it by more than the spread" if gain > spread else
                       "below it by more than the spread" if gain < -spread else "within the spread")
            lines.append(f"* {name}: {rsum:.1f} ({gain:+.1f}): {verdict}.")
    lines += ["", f"![test rSum per method]({results.with_suffix('.png').name})", ""]
    results.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(names))
    values = [[r["rsum"] for r in by_row[n]] for n in names]
    ax.bar(x, [np.mean(v) for v in values], width=0.6, color="tab:blue", alpha=0.7,
           yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in values], capsize=3)
    for i, v in enumerate(values):
        ax.plot(np.full(len(v), i), v, "k.", ms=5)
    ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance ({chance:.1f})")
    ax.legend(fontsize=8)
    ax.set_xticks(x, [n.replace(" (", "\n(") for n in names], fontsize=8)
    ax.set_ylabel("test rSum (bar: mean ± std; dots: seeds)")
    ax.set_title(f"Flickr8k 1K, {MODEL} from random weights, same budget")
    fig.tight_layout()
    fig.savefig(results.with_suffix(".png"), dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the flickr8k_1k folder (default: the data home's)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=None,
                        help=f"rows separated by ',' (default all: {', '.join(ROWS)})")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--workers", type=int, default=None,
                        help="image-decoding workers (default: the library's)")
    parser.add_argument("--max-train-images", type=int, default=None,
                        help="train on the first N train photos only (a quick look)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--beside", default=None,
                        help="record that another job shared the machine (times marked)")
    parser.add_argument("--results", type=Path, default=JSONL,
                        help="JSONL of the runs; the report and plot are written beside it")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.rows = list(ROWS) if args.rows is None else [r.strip() for r in args.rows.split(",")]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {list(ROWS)}")
    if not args.report_only:
        run(args)
    report(args.seeds, args.results)


if __name__ == "__main__":
    main()
