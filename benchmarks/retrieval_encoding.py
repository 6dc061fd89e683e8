"""Encoding throughput: ``retrieval``'s encoders against a plain open_clip loop, same model and data.

Issue 12 (speed and precision). Both sides encode the same JPEG photos and captions with the same
open_clip model (``ViT-B-32`` by default, random weights: throughput does not depend on the values)
in batches of the same size:

* **plain open_clip**: the loop a user writes from open_clip's README -- PIL open, ``preprocess``,
  stack, ``model.encode_image`` under ``torch.no_grad``; captions through ``tokenizer`` and
  ``model.encode_text``; with and without a DataLoader of workers for the images.
* **retrieval**: :func:`retrieval.backbones.encode_images` / :func:`encode_texts` (what ``evaluate``
  and ``encode`` run), with ``num_workers`` 0 and the CPUs of the machine.

Every configuration runs ``--repeats`` times in alternation; the table reports the median rate
(images/s, captions/s) and its ratio to the plain loop without workers measured in the same run.
On a GPU machine the same script adds fp32/bf16 rows (``--amp``); this session had none (see the
report).

Images: ``--n-images`` random crops (480 x 360 JPEG, quality 90) of the three photos that ship in
the installed scikit-learn and matplotlib wheels, so that decoding costs what it costs on real
photos; captions: five per image.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/retrieval_encoding.py
    .venv/bin/python benchmarks/retrieval_encoding.py --quick      # smoke run (tiny model)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from retrieval.backbones import create_backbone, encode_images, encode_texts  # noqa: E402
from retrieval.training import resolve_workers  # noqa: E402

WORDS = ("a", "red", "blue", "green", "small", "large", "dog", "cat", "circle", "square",
         "on", "the", "left", "right", "of", "near", "two", "three", "people", "street")


def photo_sources() -> list[Path]:
    import matplotlib
    import sklearn.datasets

    images = Path(sklearn.datasets.__file__).parent / "images"
    return [images / "china.jpg", images / "flower.jpg",
            Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]


def make_photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [Image.open(p).convert("RGB") for p in photo_sources()]
    paths = []
    for i in range(n):
        img = sources[i % len(sources)]
        w, h = img.size
        side = int(rng.integers(min(w, h) // 2, min(w, h)))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = img.crop((x, y, x + side, y + side)).resize((480, 360))
        path = folder / f"{i:05d}.jpg"
        crop.save(path, quality=90)
        paths.append(str(path))
    return paths


def make_captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(6, 16)))) for _ in range(n)]


class _PlainImages(torch.utils.data.Dataset):
    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return self.preprocess(img.convert("RGB"))


@torch.no_grad()
def plain_images(model, preprocess, paths, batch_size, workers):
    loader = torch.utils.data.DataLoader(_PlainImages(paths, preprocess), batch_size=batch_size,
                                         num_workers=workers)
    out = [model.encode_image(batch) for batch in loader]
    return torch.cat(out)


@torch.no_grad()
def plain_texts(model, tokenizer, captions, batch_size):
    out = [model.encode_text(tokenizer(captions[a:a + batch_size]))
           for a in range(0, len(captions), batch_size)]
    return torch.cat(out)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/retrieval_encoding"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.n_images, args.repeats = "tiny-vit-64", 64, 1
    torch.manual_seed(0)
    backbone = create_backbone(args.model, None, warn_random=False).eval()
    model, preprocess, tokenizer = backbone.model, backbone.preprocess, backbone.tokenizer
    paths = make_photos(args.work_dir / "photos", args.n_images)
    captions = make_captions(5 * args.n_images)
    workers = resolve_workers(None)
    b = args.batch_size
    configs = {
        "plain open_clip, images, 0 workers":
            lambda: plain_images(model, preprocess, paths, b, 0),
        f"plain open_clip, images, {workers} workers":
            lambda: plain_images(model, preprocess, paths, b, workers),
        "retrieval encode_images, 0 workers":
            lambda: encode_images(backbone, paths, batch_size=b, verbose=False),
        f"retrieval encode_images, {workers} workers":
            lambda: encode_images(backbone, paths, batch_size=b, verbose=False,
                                  num_workers=workers),
        "plain open_clip, captions":
            lambda: plain_texts(model, tokenizer, captions, 4 * b),
        "retrieval encode_texts":
            lambda: encode_texts(backbone, captions, batch_size=4 * b, verbose=False),
    }
    # The two paths must compute the same embeddings (else the comparison means nothing).
    ours = encode_images(backbone, paths[:8], batch_size=8, verbose=False)
    theirs = torch.nn.functional.normalize(plain_images(model, preprocess, paths[:8], 8, 0),
                                           dim=-1).numpy()
    max_difference = float(np.abs(ours - theirs).max())
    assert max_difference < 1e-4, max_difference
    for fn in configs.values():  # warm-up (allocator, worker start-up code paths)
        fn()
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, fn in configs.items():
            times[name].append(timed(fn))
    rows = []
    for name, measured in times.items():
        count = len(captions) if "captions" in name or "texts" in name else len(paths)
        median = statistics.median(measured)
        rows.append({"config": name, "items": count, "median_s": median,
                     "rate": count / median, "times_s": measured})
    base_images = next(r for r in rows if r["config"] == "plain open_clip, images, 0 workers")
    base_texts = next(r for r in rows if r["config"] == "plain open_clip, captions")
    for row in rows:
        base = base_texts if ("captions" in row["config"] or "texts" in row["config"]) \
            else base_images
        row["ratio_to_plain"] = row["rate"] / base["rate"]
    report = {"model": args.model, "n_images": len(paths), "n_captions": len(captions),
              "batch_size": b, "workers": workers, "repeats": args.repeats,
              "torch_threads": torch.get_num_threads(), "device": "cpu",
              "max_embedding_difference": max_difference, "machine": platform.platform(),
              "cpus": os.cpu_count(), "rows": rows}
    if not args.quick:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "retrieval_encoding.json").write_text(json.dumps(report, indent=2))
        write_markdown(report, args.out_dir / "retrieval_encoding.md")
        plot(report, args.out_dir / "retrieval_encoding.png")
    for row in rows:
        print(f"{row['config']:45s} {row['rate']:9.1f}/s  x{row['ratio_to_plain']:.2f}")
    return 0


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# Encoding throughput: `retrieval` encoders against a plain open_clip loop",
        "",
        f"Model {report['model']} (random weights), {report['n_images']} JPEG photos (480 x 360) "
        f"and {report['n_captions']} captions, batch {report['batch_size']} (captions "
        f"{4 * report['batch_size']}), CPU only, {report['torch_threads']} torch threads, "
        f"{report['cpus']} CPUs; median of {report['repeats']} alternating repeats. Ratios are "
        "against the plain loop without workers in the same run. Both paths give the same "
        f"embeddings (max difference {report['max_embedding_difference']:.1e}).",
        "",
        "| Configuration | Items | Median time (s) | Rate (items/s) | Ratio to plain |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['config']} | {row['items']} | {row['median_s']:.2f} | "
                     f"{row['rate']:.1f} | {row['ratio_to_plain']:.2f} |")
    lines += ["", "No GPU was available to this session: the fp32/bf16 GPU rows and the short "
              "DDP run on a GPU remain to be measured.", ""]
    path.write_text("\n".join(lines))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = [r["config"] for r in rows]
    ax.barh(names, [r["ratio_to_plain"] for r in rows],
            color=["#999999" if "plain" in n else "#1f77b4" for n in names])
    ax.axvline(1.0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("throughput / plain open_clip loop without workers (same run)")
    ax.set_title(f"Encoding throughput on CPU, {report['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
