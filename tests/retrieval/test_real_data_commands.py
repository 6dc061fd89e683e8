"""The README's Flickr30K / COCO command lines, run as written on a miniature Karpathy folder.

The folder holds 16 distinct real photos (crops of the photos shipped inside sklearn and
matplotlib), captions written by this test, a Flickr30K-style ``dataset_flickr30k.json`` with
train / restval / val / test images, a keyed dense-caption file for the training images, and a
"user checkpoint": the state dict of a tiny open_clip model saved to a ``.pt`` file. Only the
scale options change (``--model``, ``--batch-size``, ``--epochs``); every other option is the
README's. A README edit that breaks a command breaks this test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.cli import main

README = Path(__file__).parents[2] / "README.md"
TINY_MODEL = "tiny-vit-64"
# (value of --model, --batch-size, --epochs) on the miniature data.
SCALED = {"--model": TINY_MODEL, "--batch-size": "4"}
EPOCHS = {"contrastive": "1", "avse": "1", "d2s": "2"}  # d2s: one epoch per stage


def readme_real_data_block() -> tuple[dict[str, str], list[list[str]]]:
    """The variables and the ``python -m retrieval`` commands of the README's real-data block."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    block = next((b for b in blocks if "F30K=" in b), None)
    assert block is not None, "README lost its Flickr30K command block"
    variables, commands = {}, []
    for line in block.splitlines():
        line = line.split("  #")[0].strip()
        if re.fullmatch(r"[A-Z0-9_]+=\S+", line):
            name, value = line.split("=", 1)
            variables[name] = value
        elif line.startswith("python -m retrieval "):
            commands.append(shlex.split(line)[3:])
    return variables, commands


def _scaled(argv: list[str], variables: dict[str, str]) -> list[str]:
    out = [re.sub(r"\$([A-Z0-9_]+)", lambda m: variables[m.group(1)], arg) for arg in argv]
    for option, value in SCALED.items():
        if option in out:
            out[out.index(option) + 1] = value
    if "--epochs" in out:
        out[out.index("--epochs") + 1] = EPOCHS[out[out.index("--method") + 1]]
    return [*out, "--quiet"]


@pytest.fixture(scope="module")
def miniature_f30k(tmp_path_factory, wheel_photos):
    """Karpathy-format Flickr30K in miniature, with dense captions and a weights file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("f30k")
    images_dir = root / "images"
    images_dir.mkdir()
    splits = ["train"] * 7 + ["restval"] + ["val"] * 3 + ["test"] * 5
    entries, dense = [], []
    for i, split in enumerate(splits):
        photo = Image.open(wheel_photos[i % 3]).convert("RGB")
        w, h = photo.size
        # Distinct images: a different crop of each photo, every one still a real photograph.
        left, top = (i * 37) % (w // 3), (i * 23) % (h // 3)
        name = f"{1000 + i}.jpg"
        photo.crop((left, top, left + 2 * w // 3, top + 2 * h // 3)).save(images_dir / name)
        sentences = [{"raw": f"Photo {i}, crop {k}: a test caption written for this file.",
                      "tokens": []} for k in range(5)]
        entries.append({"filename": name, "imgid": i, "split": split, "sentences": sentences})
        if split in ("train", "restval"):
            dense.append({"image": name, "text": f"A long description of photo {i}. It is a "
                          "crop of a sample photograph. The test wrote this paragraph."})
    (root / "dataset_flickr30k.json").write_text(json.dumps({"dataset": "flickr30k",
                                                             "images": entries}))
    with open(root / "train_dense.jsonl", "w") as fh:
        fh.writelines(json.dumps(record) + "\n" for record in dense)
    import open_clip

    from retrieval.backbones import register_model_configs

    register_model_configs()
    torch.manual_seed(0)
    user_model = open_clip.create_model(TINY_MODEL, pretrained=None)
    weights = root / "tiny-user-weights.pt"
    torch.save(user_model.state_dict(), weights)
    return {"F30K": str(root), "IMAGES": str(images_dir), "CLIP": str(weights),
            "DENSE": str(root / "train_dense.jsonl")}


def test_readme_real_data_commands_run(miniature_f30k, tmp_path, monkeypatch):
    variables, commands = readme_real_data_block()
    assert set(variables) == set(miniature_f30k), "README variables changed: update this test"
    subcommands = [argv[0] for argv in commands]
    methods = {argv[argv.index("--method") + 1] for argv in commands if "--method" in argv}
    assert {"contrastive", "avse", "d2s"} <= methods and "evaluate" in subcommands
    monkeypatch.chdir(tmp_path)  # the README's run folders are relative
    for argv in commands:
        assert main(_scaled(argv, miniature_f30k)) == 0, argv
    for method in ("clip", "avse", "d2s"):
        run = tmp_path / "runs" / f"f30k_{method}"
        config = json.loads((run / "config.json").read_text())
        # The run records the user's weights file and trained on the Karpathy train + restval.
        assert config["pretrained"] == miniature_f30k["CLIP"]
        history = json.loads((run / "history.json").read_text())["history"]
        assert history and all(np.isfinite(r["train_loss"]) for r in history)
        assert all(np.isfinite(r["val_rsum"]) for r in history)
    metrics = json.loads((tmp_path / "runs" / "f30k_d2s" / "test_metrics.json").read_text())
    assert 0.0 <= metrics["rsum"] <= 600.0


def test_readme_real_data_paths_are_placeholders():
    # The block must not point at files of this machine: it is a template for the user.
    variables, _ = readme_real_data_block()
    assert not any(os.path.exists(value) for value in variables.values())
