"""Each method on the synthetic scenario built for it, 3 seeds (issue 26, item 4).

The hypotheses were written into ``benchmarks/README.md`` ("Methods on the testbeds made for
them") before this script first ran; it measures them and reports every outcome, misses
included.

Protocol (offline, CPU, one thread):

* **Start**, once per seed ``s``: a tiny CLIP (``tiny-vit-64``, random weights drawn from
  ``s``) trained contrastively for 4 epochs (lr 5e-4, batch 64) on a *default* synthetic set of
  500 images with seed ``100 + s``, a set no scenario shares (the demo's protocol: the start
  never saw the scenario's pairs, as a web-pretrained CLIP never saw Flickr30K's).
* **Scenarios**, each generated with ``--seed s`` (``make-synthetic --scenario``):

  * ``sparse-captions`` -> D2S-VSE, feature form (adapters, then the prompt decoder on cached
    caption tokens, distilled from the dense captions; 8 prompts and 2 decoder blocks, as in
    the demo);
  * ``small-objects`` -> AVSE, feature form (late views of the frozen patch tokens);
  * ``twins`` -> DCAR on the images (its prompts live in the frozen towers); headline: the
    category-twin group score (image-to-text and text-to-image both right), also rSum and the
    attribute-twin group score.

* **Arms**: the method and the contrastive fine-tune (on features: residual adapters; on
  images: the whole start), both from the seed's start, with the same epochs, batch 64 and the
  same learning-rate grid :data:`LR_GRID` (given as both ``--lr`` and ``--lr-new``; a feature
  form trains only new modules, DCAR only its prompts and adapter, the contrastive image arm
  the whole towers). Each run keeps its best validation epoch (epoch 0, the start, included);
  for each arm and seed the rate with the best validation rSum is chosen (never test).
* **Reported**: test metrics of the chosen runs, mean ± sample std over the seeds, beside the
  start; every rate's test score is stored too (not used for any choice).
* **Verdict** ("beats by more than the seed spread"): the mean of the method's headline metric
  minus the contrastive arm's is larger than the larger of the two arms' seed stds
  (:func:`verdict`).

Every run is appended to ``benchmarks/results/retrieval_scenarios.jsonl`` with the commit it
came from (runs already there are skipped, so the script resumes); ``retrieval_scenarios.md``
and ``.png`` are rebuilt at the end or with ``--report-only``. Sets, features and run folders
live under ``--work`` (default ``/tmp/retrieval_scenarios``); a resumed run reuses them.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/retrieval_scenarios.py          # seeds 0,1,2
    .venv/bin/python benchmarks/retrieval_scenarios.py --seeds 0 --scenarios twins
    .venv/bin/python benchmarks/retrieval_scenarios.py --report-only
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (HERE, ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _common import append_jsonl, code_version, load_jsonl, parse_seeds  # noqa: E402

RESULTS = HERE / "results"
JSONL = RESULTS / "retrieval_scenarios.jsonl"
MODEL = "tiny-vit-64"
BATCH = 64
#: The learning-rate grid of every arm, fixed before any run (both ``--lr`` and ``--lr-new``).
LR_GRID = (1e-4, 5e-4, 2e-3)
PRETRAIN = {"n_images": 500, "epochs": 4, "lr": 5e-4, "set_seed_offset": 100}
QUIET = ["--quiet", "--workers", "0"]


@dataclass(frozen=True)
class Scenario:
    """One testbed, the method built for it and how both arms train there."""

    name: str
    method: str
    label: str                # the method's display name
    n_images: int
    epochs: int
    on_features: bool
    encode_options: tuple[str, ...] = ()
    method_options: tuple[str, ...] = ()
    headline: str = "rsum"


SCENARIOS = (
    Scenario("sparse-captions", "d2s", "D2S-VSE", 1000, 10, True, ("--tokens",),
             # The demo's smaller prompt decoder (the paper's 100 prompts and depth 4 cost 8x
             # the time on a 64-d tiny CLIP and one CPU thread).
             ("--method-config", '{"n_prompts": 8, "decoder_depth": 2}')),
    Scenario("small-objects", "avse", "AVSE", 1000, 10, True, ("--image-tokens",)),
    # DCAR trains on the images (about 25 s an epoch per 400 images on one thread, 2.5x the
    # contrastive fine-tune): 600 images and 3 epochs keep the 3 seeds within an hour.
    Scenario("twins", "dcar", "DCAR", 600, 3, False, headline="twin_group_category"),
)
BY_NAME = {sc.name: sc for sc in SCENARIOS}
METRIC_NAMES = {"rsum": "test rSum", "twin_group_category": "category-twin group (%)",
                "twin_group_attribute": "attribute-twin group (%)"}


def cli(argv: list[str], log) -> float:
    """Run ``python -m retrieval ARGV`` in this process; its output goes to ``log``."""
    from retrieval.cli import main

    shell = "python -m retrieval " + " ".join(shlex.quote(a) for a in argv)
    buffer = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(buffer):
        code = main(["--log-level", "ERROR", *argv])
    seconds = time.perf_counter() - started
    log.write(f"$ {shell}\n{buffer.getvalue()}({seconds:.1f} s)\n\n")
    log.flush()
    if code:
        raise SystemExit(f"`{shell}` exited with {code}")
    return seconds


def start_clip(work: Path, seed: int, log) -> Path:
    """The seed's start: a tiny CLIP pretrained on another (default) synthetic set."""
    pre, clip = work / f"seed{seed}" / "pretraining_set", work / f"seed{seed}" / "start_clip"
    if not (pre / "metadata.json").is_file():
        cli(["make-synthetic", "--output", str(pre), "--n-images", str(PRETRAIN["n_images"]),
             "--seed", str(PRETRAIN["set_seed_offset"] + seed)], log)
    if not (clip / "history.json").is_file():
        seconds = cli(["train", "--method", "contrastive", "--model", MODEL, "--data-root",
                       str(pre), "--output", str(clip), "--epochs", str(PRETRAIN["epochs"]),
                       "--batch-size", str(BATCH), "--lr", str(PRETRAIN["lr"]),
                       "--seed", str(seed), "--restart", *QUIET], log)
        print(f"seed {seed}: start pretrained in {seconds:.0f} s", flush=True)
    return clip


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def run_scenario(sc: Scenario, seed: int, clip: Path, work: Path, done: set, results: Path,
                 log, version: dict) -> None:
    folder = work / f"seed{seed}" / f"{sc.name}_n{sc.n_images}_e{sc.epochs}"
    data, features = folder / "data", folder / "features"
    if not (data / "metadata.json").is_file():
        cli(["make-synthetic", "--scenario", sc.name, "--output", str(data), "--n-images",
             str(sc.n_images), "--seed", str(seed)], log)
    if sc.on_features and not (features / "manifest.json").is_file():
        cli(["encode", "--run", str(clip), "--data-root", str(data), "--output", str(features),
             "--splits", "train,val,test", *sc.encode_options, *QUIET], log)
    source = ["--data-root", str(features)] if sc.on_features else [
        "--model", MODEL, "--pretrained", str(clip), "--data-root", str(data)]
    evaluate_on = ["--data-root", str(features), "--quiet"] if sc.on_features else [
        "--data-root", str(data), *QUIET]
    base = {"scenario": sc.name, "seed": seed, "epochs": sc.epochs, "batch": BATCH,
            "n_images": sc.n_images, **version}
    if (sc.name, seed, "start", None) not in done:
        out = folder / "start_test.json"
        start_eval = (["evaluate", "--data-root", str(features), "--quiet"] if sc.on_features
                      else ["evaluate", "--run", str(clip), "--data-root", str(data), *QUIET])
        cli([*start_eval, "--json", str(out)], log)
        val_out = folder / "start_val.json"
        cli([*start_eval, "--split", "val", "--json", str(val_out)], log)
        record = {**base, "arm": "start", "lr": None, "val_rsum": _metrics(val_out)["rsum"],
                  "test": _metrics(out), "date": _now()}
        append_jsonl(record, results)
        done.add((sc.name, seed, "start", None))
    for arm in ("contrastive", sc.method):
        for lr in LR_GRID:
            if (sc.name, seed, arm, lr) in done:
                continue
            run = folder / f"{arm}_lr{lr:g}"
            options = list(sc.method_options) if arm == sc.method else []
            seconds = cli(["train", "--method", arm, *source, "--output", str(run), "--epochs",
                           str(sc.epochs), "--batch-size", str(BATCH), "--lr", str(lr),
                           "--lr-new", str(lr), "--seed", str(seed), *options, "--restart",
                           *QUIET], log)
            out = run / "test_metrics.json"
            cli(["evaluate", "--run", str(run), *evaluate_on, "--json", str(out)], log)
            # The last epoch too, for information only (never used to choose): it shows what
            # training did where validation kept an earlier epoch or the start.
            last = run / "test_metrics_last.json"
            cli(["evaluate", "--run", str(run), "--which", "last", *evaluate_on, "--json",
                 str(last)], log)
            history = json.loads((run / "history.json").read_text())
            record = {**base, "arm": arm, "lr": lr, "val_rsum": history["best_val_rsum"],
                      "kept": history["kept"], "best_epoch": history["best_epoch"] + 1,
                      "val_rsum_per_epoch": [h.get("val_rsum") for h in history["history"]],
                      "start_val_rsum": (history.get("start") or {}).get("val_rsum"),
                      "train_s": seconds, "test": _metrics(out),
                      "test_last": _metrics(last), "date": _now()}
            append_jsonl(record, results)
            done.add((sc.name, seed, arm, lr))
            test = record["test"]
            extra = (f", cat-twin group {test.get('twin_group_category', float('nan')):.1f}"
                     if sc.headline != "rsum" else "")
            print(f"seed {seed} {sc.name} {arm} lr {lr:g}: val {record['val_rsum']:.1f} "
                  f"(kept {record['kept']}, epoch {record['best_epoch']}), test rSum "
                  f"{test['rsum']:.1f}{extra}, {seconds:.0f} s", flush=True)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def run(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    done = {(r["scenario"], r["seed"], r["arm"], r["lr"]) for r in load_jsonl(args.results)}
    version = code_version("retrieval")
    args.work.mkdir(parents=True, exist_ok=True)
    with (args.work / "commands.log").open("a") as log:
        for seed in args.seeds:
            scenarios = [BY_NAME[name] for name in args.scenarios]
            todo = [sc for sc in scenarios
                    if any((sc.name, seed, arm, lr) not in done
                           for arm in ("contrastive", sc.method) for lr in LR_GRID)
                    or (sc.name, seed, "start", None) not in done]
            if not todo:
                continue
            started = time.perf_counter()
            clip = start_clip(args.work, seed, log)
            for sc in todo:
                t0 = time.perf_counter()
                run_scenario(sc, seed, clip, args.work, done, args.results, log, version)
                print(f"seed {seed} {sc.name}: {time.perf_counter() - t0:.0f} s", flush=True)
            print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)


# ---------------------------------------------------------------------------- the report
def chosen(records: list[dict], scenario: str, arm: str) -> dict[int, dict]:
    """Per seed, the arm's run with the best validation rSum over the grid (start: its one)."""
    picked: dict[int, dict] = {}
    for r in records:
        if r["scenario"] != scenario or r["arm"] != arm:
            continue
        best = picked.get(r["seed"])
        # Ties go to the smaller rate (the grid is ascending and read in order).
        if best is None or r["val_rsum"] > best["val_rsum"] or (
                r["val_rsum"] == best["val_rsum"] and (r["lr"] or 0) < (best["lr"] or 0)):
            picked[r["seed"]] = r
    return picked


def mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else float("nan")


def verdict(method: list[float], contrastive: list[float]) -> tuple[bool, float, float]:
    """Does the method beat contrastive by more than the seed spread?

    Met when ``mean(method) - mean(contrastive) > max(std(method), std(contrastive))`` (sample
    stds over seeds). Returns (met, difference of means, spread).
    """
    m, sm = mean_std(method)
    c, sc = mean_std(contrastive)
    spread = max(sm, sc)
    return bool(m - c > spread), m - c, spread


def _cell(values) -> str:
    m, s = mean_std(values)
    return f"{m:.1f} ± {s:.1f}" if s == s else f"{m:.1f}"


def report(seeds: list[int], results: Path) -> None:
    import matplotlib.pyplot as plt

    records = [r for r in load_jsonl(results) if r["seed"] in seeds]
    commits = sorted({r.get("commit", "?") for r in records})
    lines = [
        "# Each method on the scenario built for it (issue 26)",
        "",
        "Protocol: the docstring of `benchmarks/retrieval_scenarios.py`; hypotheses: "
        "`benchmarks/README.md` (written before the runs). Start: per seed, a tiny CLIP "
        f"(`{MODEL}`) trained contrastively {PRETRAIN['epochs']} epochs (lr {PRETRAIN['lr']:g}) "
        f"on a default synthetic set of {PRETRAIN['n_images']} images (set seed 100 + seed). "
        f"Both arms: same start, epochs, batch {BATCH}, learning-rate grid "
        f"{', '.join(f'{lr:g}' for lr in LR_GRID)} (as `--lr` and `--lr-new`), the rate chosen "
        "per arm and seed by validation rSum, each run keeping its best validation epoch "
        "(the start included). Cells: test split, mean ± sample std over seeds "
        f"{', '.join(map(str, sorted({r['seed'] for r in records})))}.",
        "",
        f"* Machine: {os.cpu_count()} CPU cores (one thread used), {platform.system()}, Python "
        f"{platform.python_version()}; commit(s) {', '.join(commits)}; report written "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}.",
        "* Verdict \"beats by more than the seed spread\": mean(method) − mean(contrastive) > "
        "max(std(method), std(contrastive)) on the scenario's headline metric.",
        "",
    ]
    verdicts, panels = [], []
    for sc in SCENARIOS:
        arms = {arm: chosen(records, sc.name, arm) for arm in ("start", "contrastive", sc.method)}
        if not arms[sc.method] or not arms["contrastive"]:
            continue
        metrics = ["rsum", "i2t_r1", "t2i_r1"] + (
            ["twin_group_category", "twin_group_attribute", "twin_i2t_category",
             "twin_t2i_category"] if sc.name == "twins" else [])
        form = "features" if sc.on_features else "images"
        lines += [f"## `{sc.name}` -> {sc.label} ({form}, {sc.epochs} epochs)", "",
                  "| arm | " + " | ".join(m.replace("_", " ") for m in metrics)
                  + " | chosen lr per seed | kept epoch per seed | val rSum |",
                  "|---|" + "---|" * (len(metrics) + 3)]
        for arm, runs in arms.items():
            name = {"start": "start (no training)", "contrastive": "contrastive"}.get(arm,
                                                                                       sc.label)
            ordered = [runs[s] for s in sorted(runs)]
            cells = [_cell([r["test"].get(m, float("nan")) for r in ordered]) for m in metrics]
            lrs = ", ".join("-" if r["lr"] is None else f"{r['lr']:g}" for r in ordered)
            kept = ", ".join("-" if r["arm"] == "start" else
                             ("0 (start)" if r["kept"] == "start" else str(r["best_epoch"]))
                             for r in ordered)
            lines.append(f"| {name} | " + " | ".join(cells)
                         + f" | {lrs} | {kept} | {_cell([r['val_rsum'] for r in ordered])} |")
        edge = {arm: sum(r["lr"] in (LR_GRID[0], LR_GRID[-1]) for r in arms[arm].values())
                for arm in ("contrastive", sc.method)}
        lines.append("")
        lines.append(f"Chosen rate at an end of the grid: contrastive {edge['contrastive']} of "
                     f"{len(arms['contrastive'])} seeds, {sc.label} {edge[sc.method]} of "
                     f"{len(arms[sc.method])}.")
        if sc.name == "twins":
            counts = {kind: sorted({int(r["test"].get(f"twin_images_group_{kind}", 0))
                                    for r in arms["start"].values()})
                      for kind in ("category", "attribute")}
            lines.append(f"Test images in the group scores, per seed: category twins "
                         f"{counts['category']}, attribute twins {counts['attribute']} (one "
                         "image moves a group score by 100/count points).")
        common = sorted(set(arms[sc.method]) & set(arms["contrastive"]))
        for metric in dict.fromkeys([sc.headline, "rsum"]):
            method = [arms[sc.method][s]["test"][metric] for s in common]
            base = [arms["contrastive"][s]["test"][metric] for s in common]
            met, diff, spread = verdict(method, base)
            start = [arms["start"][s]["test"][metric] for s in common if s in arms["start"]]
            headline = metric == sc.headline
            verdicts.append(
                f"* `{sc.name}`, {sc.label} vs contrastive on {METRIC_NAMES[metric]}"
                f"{' (headline)' if headline else ''}: {_cell(method)} vs {_cell(base)} "
                f"(start {_cell(start)}): difference {diff:+.1f}, spread {spread:.1f}, per-seed "
                f"differences {', '.join(f'{a - b:+.1f}' for a, b in zip(method, base))}: "
                + ("**met**" if met else "**missed**") + ".")
            panels.append((sc, metric, arms))
        lines.append("")
        shown = "test rSum" + (f" / {METRIC_NAMES[sc.headline]}" if sc.headline != "rsum"
                               else "")
        lines += [f"Every rate, for information only (never used to choose): {shown} of the "
                  "kept epoch (best validation rSum; val: that rSum), and of the last epoch; "
                  "mean ± std over seeds.", "",
                  "| arm | epoch | " + " | ".join(f"lr {lr:g}" for lr in LR_GRID) + " |",
                  "|---|---|" + "---|" * len(LR_GRID)]
        for arm in ("contrastive", sc.method):
            for which in ("test", "test_last"):
                cells = []
                for lr in LR_GRID:
                    runs = [r for r in records if r["scenario"] == sc.name and r["arm"] == arm
                            and r["lr"] == lr and which in r]
                    if not runs:
                        cells.append("-")
                        continue
                    text = _cell([r[which]["rsum"] for r in runs])
                    if sc.headline != "rsum":
                        text += f" / {_cell([r[which][sc.headline] for r in runs])}"
                    if which == "test":
                        text += f" (val {_cell([r['val_rsum'] for r in runs])})"
                    cells.append(text)
                label = "kept" if which == "test" else "last"
                lines.append(f"| {arm} | {label} | " + " | ".join(cells) + " |")
        seconds = [r["train_s"] for r in records if r["scenario"] == sc.name and "train_s" in r]
        lines += ["", f"Training time: {sum(seconds):.0f} s over {len(seconds)} runs.", ""]
    lines += ["## Verdicts per hypothesis", "", *verdicts, ""]
    lines += [f"![headline metrics]({results.with_suffix('.png').name})", ""]
    results.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))

    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.8))
    for ax, (sc, metric, arms) in zip(np.atleast_1d(axes), panels):
        names = ["start", "contrastive", sc.method]
        values = [[arms[a][s]["test"][metric] for s in sorted(arms[a])] for a in names]
        means = [np.mean(v) for v in values]
        stds = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in values]
        bars = ax.bar(range(3), means, yerr=stds, capsize=3, color=["0.6", "C0", "C1"])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
        for i, v in enumerate(values):
            ax.plot([i] * len(v), v, "k.", ms=3)
        ax.set_xticks(range(3), ["start", "contrastive", sc.label], fontsize=8)
        ax.set_title(f"{sc.name}", fontsize=9)
        ax.set_ylabel(METRIC_NAMES[metric], fontsize=8)
    fig.suptitle("Each method on its scenario vs contrastive, same start and lr search "
                 "(test, mean ± std over seeds; dots: seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(results.with_suffix(".png"), dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scenarios", default=",".join(sc.name for sc in SCENARIOS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrieval_scenarios"))
    parser.add_argument("--results", type=Path, default=JSONL)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.seeds = parse_seeds(args.seeds)
    args.scenarios = [s.strip() for s in args.scenarios.split(",")]
    unknown = [s for s in args.scenarios if s not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {list(BY_NAME)}")
    if not args.report_only:
        began = time.perf_counter()
        run(args)
        print(f"total {time.perf_counter() - began:.0f} s", flush=True)
    report(args.seeds, args.results)


if __name__ == "__main__":
    main()
