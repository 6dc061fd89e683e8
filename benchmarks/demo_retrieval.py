"""Retrieval part of ``make demo``: each method on the synthetic scenario built for it.

Every step is a ``python -m retrieval`` command, printed as such (copy any line to rerun it);
the script runs them in one process through :func:`retrieval.cli.main` because a fresh
interpreter pays the torch / open_clip import (5-9 s on 2 cores) about 30 times over.

1. A tiny CLIP (``tiny-vit-64``) is trained from random weights with the contrastive loss on a
   default synthetic set (seed 1): the start of every method below, which never saw their
   pairs (as a web-pretrained CLIP never saw Flickr30K's).
2. Each method on the scenario made for it (``make-synthetic --scenario``), beside the
   contrastive fine-tune with the same start, epochs, batch and learning rate, and the start
   itself, all on the scenario's test split:

   * ``sparse-captions`` -> D2S-VSE (training captions name one object, dense captions all);
   * ``small-objects`` -> AVSE (5-8 small objects on a larger canvas);
   * ``twins`` -> DCAR (images in pairs differing in one colour or one shape; headline: the
     category-twin group score);
   * ``default`` with 40 % of the training captions shuffled -> PCSR (noisy correspondence;
     tested on clean pairs).

   D2S-VSE, AVSE and PCSR use their feature forms (heads and adapters on the start's frozen
   features, written once by ``encode``; AVSE's is the "late views" fallback), beside the
   contrastive feature form (residual adapters); the learning rate of both is the method's
   default. DCAR has no feature form (its prompts live inside the towers): it trains on the
   images beside a contrastive fine-tune of the whole start at lr 1e-4.

The demo prints what it measures, one run per method and scenario: it is not a benchmark (see
``benchmarks/README.md`` for the scenarios' hypotheses and their 3-seed runs). It writes
``retrieval.md``, ``retrieval_results.json`` and ``retrieval.png`` into ``--output``, and the
sets, features and runs into ``OUTPUT/retrieval/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

MODEL = "tiny-vit-64"
BATCH = "64"


@dataclass(frozen=True)
class Scenario:
    """One testbed: the set, the method built for it and how both arms train."""

    name: str                 # make-synthetic --scenario
    method: str               # the method it is built for
    n_images: int
    epochs: int
    on_features: bool         # the feature forms, else the images
    encode_options: tuple[str, ...] = ()
    train_options: tuple[str, ...] = ()   # given to both arms (noise, learning rate)
    method_options: tuple[str, ...] = ()  # given to the method only
    label: str = ""
    headline: str = "rsum"    # the metric the scenario is about
    why: str = ""             # what the scenario is
    form: str = ""            # how the method trains there

    @property
    def key(self) -> str:
        return f"{self.name}-noisy" if "--noise-ratio" in self.train_options else self.name

    @property
    def title(self) -> str:
        return self.label or self.name


SCENARIOS = (
    Scenario("sparse-captions", "d2s", 600, 6, True, ("--tokens",),
             ("--lr-new", "1e-4"),
             # A smaller prompt decoder than the paper's (100 prompts, depth 4): 8x cheaper on
             # a 64-d tiny CLIP.
             ("--method-config", '{"n_prompts": 8, "decoder_depth": 2}'),
             why="training captions name only the large object of an image, its dense caption "
                 "every object; test captions name one object each, mostly small ones",
             form="Feature form: adapters, then the prompt decoder on cached caption tokens, "
                  "distilled from the dense captions; 8 prompts and 2 decoder blocks (the "
                  "paper's 100 and 4 cost 8x the time on 1 CPU thread)"),
    Scenario("small-objects", "avse", 600, 6, True, ("--image-tokens",),
             ("--lr-new", "1e-4"),
             why="5-8 small objects on a 128-px canvas (seen at 64 px); a caption names one "
                 "or two of them",
             form="Feature form: the late-views fallback (radial views of the frozen output "
                  "patch tokens), a deviation from the paper's views before the transformer"),
    Scenario("twins", "dcar", 400, 2, False, (), (), headline="twin_group_category",
             why="images in pairs differing in one object's colour or shape, both in the "
                 "same split; headline: the category-twin group score (image-to-text and "
                 "text-to-image both right)",
             form="No feature form (its prompts live inside the towers): prompts on the frozen "
                  "start, trained on the images; the baseline fine-tunes the whole start at "
                  "lr 1e-4"),
    Scenario("default", "pcsr", 600, 11, True, (),
             ("--noise-ratio", "0.4", "--lr-new", "2e-4"),
             label="default, 40 % shuffled",
             why="40 % of the training captions point at another image; tested on clean pairs",
             form="Adapter mode (PCSR's feature form): two co-teaching networks of residual "
                  "adapters on the frozen features, 1 warm-up and 10 co-training epochs"),
)


@dataclass
class Step:
    """One command line and what it is for."""

    argv: list[str]
    what: str
    seconds: float = field(default=float("nan"))

    def shell(self) -> str:
        return "python -m retrieval " + " ".join(shlex.quote(a) for a in self.argv)


def plan(root: Path) -> tuple[list[Step], dict]:
    """Every command of the demo, and where each row of the table finds its metrics."""
    quiet = ["--quiet", "--workers", "0"]
    steps: list[Step] = []
    rows: dict = {"start": {}, "scenarios": {}}
    pre, clip = root / "pretraining_set", root / "pretrained_clip"
    metrics = root / "metrics"
    steps += [
        Step(["make-synthetic", "--output", str(pre), "--n-images", "500", "--seed", "1"],
             "pretraining set (default, seed 1)"),
        Step(["evaluate", "--model", MODEL, "--data-root", str(pre), *quiet,
              "--json", str(metrics / "random_init.json")], "random weights, zero-shot"),
        Step(["train", "--method", "contrastive", "--model", MODEL, "--data-root", str(pre),
              "--output", str(clip), "--epochs", "4", "--batch-size", BATCH, "--lr", "5e-4",
              "--restart", *quiet], "pretrain the tiny CLIP (contrastive, from random weights)"),
        Step(["evaluate", "--run", str(clip), "--data-root", str(pre), *quiet,
              "--json", str(metrics / "pretrained_clip.json")], "the pretrained tiny CLIP"),
    ]
    rows["start"] = {"random weights": metrics / "random_init.json",
                     "contrastive, 4 epochs": metrics / "pretrained_clip.json"}
    for sc in SCENARIOS:
        folder = root / sc.key
        data, features = folder / "data", folder / "features"
        steps.append(Step(["make-synthetic", "--scenario", sc.name, "--output", str(data),
                           "--n-images", str(sc.n_images), "--seed", "0"],
                          f"{sc.title}: the set"))
        arms = {"start": metrics / f"{sc.key}_start.json"}
        if sc.on_features:
            steps.append(Step(["encode", "--run", str(clip), "--data-root", str(data),
                               "--output", str(features), "--splits", "train,val,test",
                               *sc.encode_options, *quiet], f"{sc.title}: the start's features"))
            steps.append(Step(["evaluate", "--data-root", str(features), "--quiet",
                               "--json", str(arms["start"])], f"{sc.title}: the start"))
            source = ["--data-root", str(features)]
        else:
            steps.append(Step(["evaluate", "--run", str(clip), "--data-root", str(data), *quiet,
                               "--json", str(arms["start"])], f"{sc.title}: the start"))
            source = ["--model", MODEL, "--pretrained", str(clip), "--data-root", str(data)]
        for method in ("contrastive", sc.method):
            run = folder / f"{method}_run"
            options = list(sc.train_options)
            if method == sc.method:
                options += sc.method_options
            elif not sc.on_features:
                options += ["--lr", "1e-4"]
            steps.append(Step(["train", "--method", method, *source, "--output", str(run),
                               "--epochs", str(sc.epochs), "--batch-size", BATCH, *options,
                               "--restart", *quiet], f"{sc.title}: train {method}"))
            evaluate_on = ["--data-root", str(features), "--quiet"] if sc.on_features else [
                "--data-root", str(data), *quiet]
            arms[method] = metrics / f"{sc.key}_{method}.json"
            steps.append(Step(["evaluate", "--run", str(run), *evaluate_on,
                               "--json", str(arms[method])], f"{sc.title}: evaluate {method}"))
        rows["scenarios"][sc.key] = arms
    return steps, rows


def run_steps(steps: list[Step], log_path: Path) -> None:
    """Run each command in this process; its own output goes to ``log_path``."""
    from retrieval.cli import main

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        for step in steps:
            print(f"$ {step.shell()}", flush=True)
            buffer = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stdout(buffer):
                code = main(["--log-level", "ERROR", *step.argv])
            step.seconds = time.perf_counter() - start
            log.write(f"$ {step.shell()}\n{buffer.getvalue()}({step.seconds:.1f} s)\n\n")
            print(f"  {step.what}: {step.seconds:.1f} s", flush=True)
            if code:
                raise SystemExit(f"the demo stopped: `{step.shell()}` exited with {code}")


MIN_TWIN_IMAGES = 10
HEADLINES = {"rsum": "test rSum", "twin_group_category": "category-twin group score (%)"}


def table(rows: dict) -> tuple[list[dict], str]:
    """The records and a markdown table of every row."""
    records = []
    for name, path in rows["start"].items():
        records.append({"scenario": "default (pretraining set, seed 1)", "built for": "",
                        "model": name, **json.loads(Path(path).read_text())})
    for sc in SCENARIOS:
        for arm, path in rows["scenarios"][sc.key].items():
            model = {"start": "start (pretrained tiny CLIP, no training)",
                     "contrastive": "contrastive"}.get(arm, arm)
            form = "features" if sc.on_features else "images"
            if arm != "start":
                model += f" ({form}, {sc.epochs} epochs)"
            records.append({"scenario": sc.title, "built for": sc.method, "model": model,
                            **json.loads(Path(path).read_text())})
    header = ("| scenario | built for | model | rSum | R@1 i2t | R@1 t2i | "
              "twin group attribute | twin group category |")
    lines = [header, "|" + "---|" * 8]
    for record in records:
        cells = [record["scenario"], record["built for"], record["model"],
                 f"{record['rsum']:.1f}", f"{record['i2t_r1']:.1f}", f"{record['t2i_r1']:.1f}"]
        for kind in ("attribute", "category"):
            # Only where the test split holds enough twin images for the score to mean much.
            value, count = (record.get(f"twin_group_{kind}"),
                            record.get(f"twin_images_group_{kind}", 0))
            cells.append(f"{value:.1f} ({round(value * count / 100)}/{count:.0f})"
                         if value is not None and count >= MIN_TWIN_IMAGES else "")
        lines.append("| " + " | ".join(cells) + " |")
    return records, "\n".join(lines)


def plot(records: list[dict], output: Path) -> None:
    """One panel per scenario (its headline metric), plus the twins scenario's rSum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = "default (pretraining set, seed 1)"
    panels = [(start, "default set (seed 1): the start, trained from random weights", "rsum")]
    for sc in SCENARIOS:
        panels.append((sc.title, f"{sc.title} (built for {sc.method})", sc.headline))
        if sc.headline != "rsum":
            panels.append((sc.title, f"{sc.title} (built for {sc.method})", "rsum"))
    columns = (len(panels) + 1) // 2
    fig, axes = plt.subplots(2, columns, figsize=(4.2 * columns, 8))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (scenario, title, metric) in zip(axes.flat, panels):
        chosen = [r for r in records if r["scenario"] == scenario]
        names = [r["model"].split(" (")[0] for r in chosen]
        values = [r[metric] for r in chosen]
        colours = ["0.6", "C0", "C1"] if len(chosen) == 3 else ["0.6", "C0"]
        bars = ax.bar(range(len(chosen)), values, color=colours)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_xticks(range(len(chosen)), names, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(HEADLINES[metric], fontsize=8)
    fig.suptitle("Each method on the synthetic scenario built for it, beside the contrastive "
                 "baseline (one run each, test split)", fontsize=10)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("demo_output"))
    args = parser.parse_args(argv)
    root = args.output / "retrieval"
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    steps, rows = plan(root)
    begin = time.perf_counter()
    run_steps(steps, root / "commands.log")
    total = time.perf_counter() - begin
    records, markdown = table(rows)
    timings = "\n".join(f"| {step.what} | {step.seconds:.1f} |" for step in steps)
    notes = "\n".join(f"* `{sc.title}` (built for {sc.method}): {sc.why}. {sc.form}."
                      for sc in SCENARIOS)
    summary = (f"One run each (seed 0), on each set's test split; not a benchmark (3 seeds: "
               f"benchmarks/README.md). The start of every method is the tiny CLIP trained "
               f"from random weights on another synthetic set (seed 1, first rows); beside "
               f"each method, the contrastive baseline with the same start, epochs, batch and "
               f"learning rate (on the features: residual adapters).\n\n{notes}")
    text = (f"# Retrieval demo: each method on the scenario built for it\n\n"
            f"{markdown}\n\n{summary}\n\n"
            f"| step | seconds |\n|---|---|\n{timings}\n| total | {total:.1f} |\n")
    (args.output / "retrieval.md").write_text(text)
    (args.output / "retrieval_results.json").write_text(json.dumps(
        {"records": records, "seconds": {s.what: s.seconds for s in steps}, "total_s": total},
        indent=1))
    plot(records, args.output / "retrieval.png")
    print(f"\n{markdown}\n\n{summary}\n")
    print(f"retrieval demo: {total:.0f} s; table in {args.output / 'retrieval.md'}, plot in "
          f"{args.output / 'retrieval.png'}, every command's output in {root / 'commands.log'}")


if __name__ == "__main__":
    main()
