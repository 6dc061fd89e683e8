"""Command line of the retrieval package: ``python -m retrieval`` (console script ``mvlp-retrieval``).

Subcommands
-----------
make-synthetic
    Write the synthetic compositional image-caption set in the folder format.
train
    Fine-tune a method on a data root (format detected, or ``--format``); selection on the
    validation split; optional noisy correspondence on the training split.
evaluate
    Retrieval metrics of a trained run (``--run``), of a backbone zero-shot (``--model``) or of
    precomputed features (a features folder as ``--data-root``).
encode
    Write precomputed features (spec 4.4) so that evaluation can be rerun without the backbone.

The command line is a thin layer over the Python API (:mod:`retrieval.training`,
:mod:`retrieval.data`, :mod:`retrieval.evaluation`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

logger = logging.getLogger("retrieval")

METRIC_ORDER = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum",
                "i2t_medr", "i2t_meanr", "t2i_medr", "t2i_meanr")


def format_metrics(metrics: dict, title: str = "") -> str:
    """A small text table of the retrieval metrics."""
    lines = [title] if title else []
    header = f"{'':8s}{'R@1':>8s}{'R@5':>8s}{'R@10':>8s}{'medR':>8s}{'meanR':>9s}"
    lines.append(header)
    for direction, label in (("i2t", "img->txt"), ("t2i", "txt->img")):
        lines.append(
            f"{label:8s}" + "".join(f"{metrics.get(f'{direction}_r{k}', float('nan')):8.2f}"
                                    for k in (1, 5, 10))
            + f"{metrics.get(f'{direction}_medr', float('nan')):8.1f}"
            + f"{metrics.get(f'{direction}_meanr', float('nan')):9.1f}")
    lines.append(f"rSum {metrics.get('rsum', float('nan')):.2f}")
    for kind in ("attribute", "category"):
        if f"twin_acc_{kind}" in metrics:
            lines.append(f"swapped-twin accuracy ({kind}): {metrics[f'twin_acc_{kind}']:.2f}% of "
                         f"{int(metrics.get(f'twin_images_{kind}', 0))} images (pairwise wins "
                         f"{metrics.get(f'twin_win_{kind}', float('nan')):.2f}%)")
        if metrics.get(f"twin_images_t2i_{kind}", 0):
            lines.append(f"  text-to-image {metrics[f'twin_t2i_{kind}']:.2f}% of "
                         f"{int(metrics[f'twin_images_t2i_{kind}'])} images with twin images, "
                         f"group {metrics[f'twin_group_{kind}']:.2f}% of "
                         f"{int(metrics[f'twin_images_group_{kind}'])}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------------
def cmd_make_synthetic(args: argparse.Namespace) -> int:
    """``make-synthetic``: write the synthetic set (or one of its scenarios) in the folder
    format."""
    from retrieval.data.scenarios import make_scenario

    path = make_scenario(args.output, args.scenario, n_images=args.n_images, seed=args.seed,
                         image_size=args.image_size)
    what = "the synthetic set" if args.scenario == "default" else f"scenario {args.scenario}"
    print(f"wrote {what} ({args.n_images} images) to {path}")
    return 0


def _load(args: argparse.Namespace, split: str, **kwargs):
    from retrieval.data import drop_unreadable_images, load_split

    loaded = load_split(args.data_root, split=split, format=args.format,
                        image_root=getattr(args, "image_root", None), **kwargs)
    if getattr(args, "skip_bad_images", False) and hasattr(loaded, "image_paths"):
        loaded, dropped = drop_unreadable_images(loaded, workers=_workers(args),
                                                 verbose=not getattr(args, "quiet", False))
        if dropped:
            print(f"{split}: skipped {len(dropped)} unreadable image(s) with their captions "
                  f"({loaded.n_images} images left); see the log for each file",
                  file=sys.stderr)
    return loaded


def _workers(args: argparse.Namespace) -> int:
    from retrieval.sampling import resolve_workers

    return resolve_workers(getattr(args, "workers", None))


def _backbone_options(args: argparse.Namespace) -> dict:
    """``create_backbone`` options given on the command line (empty: the defaults)."""
    options: dict = {}
    if getattr(args, "force_quick_gelu", False):
        options["force_quick_gelu"] = True
    if getattr(args, "precision", None):
        options["precision"] = args.precision
    if getattr(args, "open_clip_kwargs", None):
        options["open_clip_kwargs"] = _json_object(args.open_clip_kwargs, "--open-clip-kwargs")
    return options


def _json_object(text: str | None, option: str) -> dict:
    """The JSON object given to ``option`` (empty when not given); a ValueError naming the
    option and the fix otherwise."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option} is not valid JSON ({exc.msg} at column {exc.colno} of "
                         f"{text!r}); write a JSON object with double-quoted keys, e.g. "
                         f"{option} '{{\"name\": 0.5}}'") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} takes a JSON object ({{\"name\": value, ...}}), got "
                         f"{type(value).__name__} {text!r}")
    return value


# Messages of the loaders for a split that simply is not there (as opposed to a broken one).
_ABSENT_SPLIT = ("no line of split", "no image in split", "not found", "no split")


def _load_optional(args: argparse.Namespace, split: str):
    """The split, or None when the data has no such split (a broken split is an error)."""
    try:
        return _load(args, split)
    except (ValueError, FileNotFoundError) as exc:
        if any(marker in str(exc) for marker in _ABSENT_SPLIT):
            logger.warning("no %s split in %s: %s", split, args.data_root, exc)
            return None
        raise


def _require_data_path(root: Path) -> None:
    # Checked before a model is built: building a real backbone takes a while, and a typo in
    # the path should not wait for it.
    if not root.exists():
        raise FileNotFoundError(f"--data-root: data path not found: {root}")


def _is_coco(args: argparse.Namespace) -> bool:
    root = Path(args.data_root)
    return (root / "dataset_coco.json").is_file() or root.name == "dataset_coco.json"


def cmd_train(args: argparse.Namespace) -> int:
    """``train``: fine-tune a method; noise, validation selection, run folder."""
    import numpy as np

    from retrieval.data import load_noise_file, shuffle_captions
    from retrieval.training import TrainConfig, Trainer, build_method

    if args.noise_file and args.noise_ratio:
        raise SystemExit("give --noise-file or --noise-ratio, not both")
    if args.noise_file and args.skip_bad_images:
        raise SystemExit("--noise-file indexes every image of the canonical training order: "
                         "it cannot be applied once --skip-bad-images has left images out")
    # A published noise file indexes the canonical ("precomp") training order: refuse to apply
    # it to images in another order.
    train_split = _load(args, "train", **({"ids_file": "strict"} if args.noise_file else {}))
    on_features = not hasattr(train_split, "image_paths")
    if on_features:
        return _train_on_features(args, train_split)
    if not args.model:
        raise SystemExit("train: --model NAME is required (unless --data-root holds features)")
    from retrieval.methods import get_method

    method_class = get_method(args.method)
    if args.dense_captions:
        if not method_class.uses_dense_captions:
            raise SystemExit(f"method {args.method!r} does not train on dense captions; "
                             "--dense-captions is for methods that do (d2s)")
        train_split = train_split.with_dense_captions(args.dense_captions)
    if args.noise_file:
        noisy = load_noise_file(args.noise_file, train_split.n_images, level=args.noise_level)
        train_split = train_split.with_noise(noisy)
    elif args.noise_ratio:
        noisy = shuffle_captions(train_split.text_image_ids, args.noise_ratio,
                                 seed=args.noise_seed)
        train_split = train_split.with_noise(noisy)
    if train_split.clean_text_image_ids is not None:
        fraction = float(np.mean(train_split.text_image_ids != train_split.clean_text_image_ids))
        logger.info("noisy correspondence: %.4f of the training captions point at another "
                    "image", fraction)
    val_split = _load_optional(args, "val")
    if val_split is None:
        logger.warning("training without a validation split: the last epoch is kept")
    val_max = args.val_max_images if args.val_max_images is not None else (
        1000 if _is_coco(args) else None)
    method_config = _json_object(args.method_config, "--method-config")
    lr_backbone, lr_new = _learning_rates(args, method_class)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr_backbone=lr_backbone,
        lr_new=lr_new, weight_decay=args.weight_decay, seed=args.seed, device=args.device,
        amp=args.amp, augment=not args.no_augment, num_workers=args.workers,
        val_max_images=val_max, grad_checkpointing=args.grad_checkpointing,
        verbose=not args.quiet, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every)
    import torch

    torch.manual_seed(args.seed)
    method = build_method(args.method, args.model, args.pretrained, method_config=method_config,
                          backbone_options=_backbone_options(args))
    run_info = {"data_root": str(args.data_root), "format": args.format,
                "noise_ratio": args.noise_ratio, "noise_file": args.noise_file,
                "noise_seed": args.noise_seed, "command": " ".join(sys.argv)}
    trainer = Trainer(method, config, args.output, run_info=run_info)
    trainer.fit(train_split, val_split, resume=not args.restart)
    if trainer.history_:
        print(f"trained {args.method} for {config.epochs} epochs; best validation rSum "
              f"{trainer.best_rsum_:.2f} at {_best_epoch_words(trainer)}; run saved to "
              f"{args.output}")
    return 0


def _best_epoch_words(trainer) -> str:
    if trainer.best_epoch_ < 0:
        return "epoch 0 (the start, kept: no epoch beat it)"
    return f"epoch {trainer.best_epoch_ + 1}"


def _learning_rates(args: argparse.Namespace, method_class) -> tuple[float, float]:
    """``--lr`` / ``--lr-new`` when given, else the method's defaults, else 1e-5 / 1e-4."""
    backbone = args.lr if args.lr is not None else (
        getattr(method_class, "default_lr_backbone", None) or 1e-5)
    new = args.lr_new if args.lr_new is not None else (
        getattr(method_class, "default_lr_new", None) or 1e-4)
    return float(backbone), float(new)


def _train_on_features(args: argparse.Namespace, train_split) -> int:
    """``train`` on a features folder: the method's feature form, no images, no backbone."""
    from retrieval.training import TrainConfig, Trainer, build_feature_method

    refused = [option for option, given in (
        ("--pretrained", args.pretrained), ("--dense-captions", args.dense_captions),
        ("--grad-checkpointing", args.grad_checkpointing)) if given]
    if refused:
        raise SystemExit(f"{args.data_root} holds precomputed features: {', '.join(refused)} "
                         "apply to training on images (the features fix the weights and "
                         "carry their own arrays; see `encode --help`)")
    if args.noise_file:
        # A published noise file indexes the canonical ("precomp") caption order, which a
        # features folder does not record: applying it could silently pair the wrong rows.
        raise SystemExit(f"{args.data_root} holds precomputed features, whose caption order "
                         "is not checked against a published noise file: train on the images "
                         "with --noise-file, or simulate the noise here with --noise-ratio")
    if args.noise_ratio:
        from retrieval.data import shuffle_captions

        train_split = train_split.with_noise(shuffle_captions(
            train_split.text_image_ids, args.noise_ratio, seed=args.noise_seed))
        logger.info("noisy correspondence: %.4f of the training captions point at another "
                    "image", float((train_split.text_image_ids
                                    != train_split.clean_text_image_ids).mean()))
    if args.model and args.model != train_split.model:
        raise SystemExit(f"{args.data_root} holds features of {train_split.model!r}, not "
                         f"--model {args.model!r}")
    val_split = _load_optional(args, "val")
    method_config = _json_object(args.method_config, "--method-config")
    try:
        method = build_feature_method(args.method, train_split, method_config=method_config)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    lr_backbone, lr_new = _learning_rates(args, type(method))
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr_backbone=lr_backbone,
        lr_new=lr_new, weight_decay=args.weight_decay, seed=args.seed, device=args.device,
        amp=args.amp, augment=False, num_workers=args.workers,
        val_max_images=args.val_max_images, verbose=not args.quiet, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every)
    run_info = {"data_root": str(args.data_root), "format": "features",
                "noise_ratio": args.noise_ratio, "noise_seed": args.noise_seed,
                "command": " ".join(sys.argv)}
    trainer = Trainer(method, config, args.output, run_info=run_info)
    try:
        trainer.fit(train_split, val_split, resume=not args.restart)
    except ValueError as exc:
        if "needs" in str(exc) and "encode" in str(exc):
            raise SystemExit(str(exc)) from None
        raise
    if trainer.history_:
        print(f"trained the feature form of {args.method} for {config.epochs} epochs; best "
              f"validation rSum {trainer.best_rsum_:.2f} at {_best_epoch_words(trainer)}; "
              f"run saved to {args.output}")
    return 0


def _model_from_args(args: argparse.Namespace):
    from retrieval.training import build_method, load_run

    if args.run:
        if _backbone_options(args):
            raise SystemExit("--force-quick-gelu, --precision and --open-clip-kwargs build a "
                             "model from --model; a --run folder records its own")
        return load_run(args.run, which=args.which, device=args.device_resolved)
    if not args.model:
        raise SystemExit("give --run RUN_DIR or --model NAME")
    import torch

    # Random weights (no --pretrained) must be the same model every time the command runs.
    torch.manual_seed(args.seed)
    return build_method("contrastive", args.model, args.pretrained, device=args.device_resolved,
                        backbone_options=_backbone_options(args))


def _resolve_device(args: argparse.Namespace) -> None:
    import torch

    if args.device == "auto":
        args.device_resolved = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        args.device_resolved = args.device


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: metrics of a run, a zero-shot backbone or precomputed features."""
    import numpy as np

    from retrieval.evaluation import protocol_metrics

    _resolve_device(args)
    root = Path(args.data_root)
    _require_data_path(root)
    eval_seeds = None
    if args.eval_seeds:
        try:
            eval_seeds = [int(part) for part in args.eval_seeds.split(",")]
        except ValueError:
            raise SystemExit(f"--eval-seeds takes comma-separated integers, got "
                             f"{args.eval_seeds!r}") from None
    if (root / "manifest.json").is_file():
        if eval_seeds:
            raise SystemExit("--eval-seeds needs a model that encodes images; precomputed "
                             "features are fixed")
        from retrieval.data import load_features

        features = load_features(root, split=args.split)
        if args.run:
            from retrieval.training import evaluate_split, load_run

            model = load_run(args.run, which=args.which, device=args.device_resolved)
            if not hasattr(model, "space"):
                raise SystemExit(f"run {args.run} fine-tuned the CLIP towers: evaluate it on the "
                                 f"images, not on the precomputed features in {root}")
            try:
                metrics = evaluate_split(model, features, batch_size=args.batch_size,
                                         verbose=not args.quiet, protocol=args.protocol)
            except ValueError as exc:
                raise SystemExit(f"cannot evaluate run {args.run} on {root}: {exc}") from None
            title = f"run {args.run} on the {features.model} features of {args.split}" + (
                " (1K folds, mean)" if args.protocol == "1k-folds" else "")
            return _report(args, metrics, title)
        if args.model:
            raise SystemExit(f"{root} holds precomputed features of {features.model}: --model "
                             "is not used; give no model (or --run of a feature run)")
        images, texts, ids = features.img_pooled, features.txt_pooled, features.text_image_ids
        title = f"precomputed features of {features.model} on {args.split}"
    else:
        from retrieval.training import evaluate_split

        model = _model_from_args(args)
        split = _load(args, args.split)
        title = (f"run {args.run}" if args.run else f"{args.model} zero-shot "
                 f"({args.pretrained or 'random weights'})") + f" on {args.split}"
        # The method scores itself (multi-vector methods are not dot products of pooled
        # vectors), under either protocol.
        if args.eval_seeds:
            if not hasattr(model, "eval_seed"):
                raise SystemExit(f"--eval-seeds: method {getattr(model, 'name', 'backbone')!r} "
                                 "has no seeded evaluation (AVSE's view centres have)")
            runs = []
            for seed in eval_seeds:
                model.eval_seed = seed
                runs.append(evaluate_split(model, split, batch_size=args.batch_size,
                                           verbose=not args.quiet, protocol=args.protocol,
                                           amp=args.amp, num_workers=_workers(args)))
            metrics = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
            # Sample standard deviation over the seeds (ddof=1; 0 for a single seed).
            metrics.update({f"{key}_std": float(np.std([run[key] for run in runs],
                                                      ddof=1 if len(runs) > 1 else 0))
                            for key in runs[0]})
            title += f" (mean over evaluation seeds {args.eval_seeds})"
        else:
            try:
                metrics = evaluate_split(model, split, batch_size=args.batch_size,
                                         verbose=not args.quiet, protocol=args.protocol,
                                         amp=args.amp, num_workers=_workers(args))
            except ValueError as exc:
                if args.protocol != "1k-folds" or "folds" not in str(exc):
                    raise
                raise SystemExit(f"--protocol 1k-folds (COCO 1K) on {args.split}: {exc}") from None
        if args.protocol == "1k-folds":
            title += " (1K folds, mean)"
        from retrieval.fine_grained import twin_accuracy

        # Splits with swap records (synthetic objects) or published negatives (FDRD).
        metrics.update(twin_accuracy(model, split, batch_size=args.batch_size))
        return _report(args, metrics, title)
    metrics = protocol_metrics(images, texts, ids, args.protocol)
    if args.protocol == "1k-folds":
        title += " (1K folds, mean)"
    return _report(args, metrics, title)


def _report(args: argparse.Namespace, metrics: dict, title: str) -> int:
    print(format_metrics(metrics, title))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cmd_encode(args: argparse.Namespace) -> int:
    """``encode``: write precomputed features of the given splits."""
    from retrieval.training import encode_to_features

    _resolve_device(args)
    _require_data_path(Path(args.data_root))
    model = _model_from_args(args)
    if not getattr(model, "is_single_vector", True):
        raise SystemExit(f"encode writes one pooled vector per image and caption; method "
                         f"{model.name!r} scores several vectors per image and has no "
                         "precomputed-feature form")
    weights_file = Path(model.backbone.pretrained) if model.backbone.pretrained else None
    extra = {"weights": str(weights_file) if weights_file else "random",
             "command": " ".join(sys.argv)}
    if weights_file is not None and weights_file.is_file():
        extra["weights_sha256"] = _sha256(weights_file)
    splits = args.splits.split(",")
    if args.dense_captions and "train" not in splits:
        raise SystemExit("--dense-captions describes the training images: add train to "
                         f"--splits (got {args.splits!r})")
    for split_name in splits:
        split = _load(args, split_name)
        if args.dense_captions and split_name == "train":
            split = split.with_dense_captions(args.dense_captions)
        out = encode_to_features(model, split, args.output, batch_size=args.batch_size,
                                 verbose=not args.quiet, extra_manifest=extra,
                                 tokens=args.tokens, image_tokens=args.image_tokens,
                                 amp=args.amp, num_workers=_workers(args))
        print(f"wrote {split_name}: {split.n_images} images, {split.n_captions} captions -> "
              f"{out}")
    return 0


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------
class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and shows every option's default in ``--help``."""

    def _format_action(self, action: argparse.Action) -> str:
        if (not action.help and action.option_strings and not action.required
                and action.default is not argparse.SUPPRESS
                and not isinstance(action, argparse._HelpAction)):
            # argparse prints nothing for an option without help: give it its default.
            import copy

            action = copy.copy(action)
            action.help = "(default: not set)" if action.default is None else \
                "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.required or "default" in text
                or action.default is argparse.SUPPRESS
                or isinstance(action, argparse._HelpAction)):
            return text
        if action.default is None:
            shown = "not set"
        elif action.default is False and action.nargs == 0:
            shown = "off"
        else:
            shown = str(action.default)
        return f"{text} (default: {shown})".strip().replace("%", "%%")


def _resolve_published_paths(args: argparse.Namespace) -> None:
    """``--data-root`` and ``--noise-file`` may name a published file instead of a path
    (``noise/bicro/f30k_precomp/f30k_precomp_0.4.npy``, ``fdrd/pets_test.json``): it is taken
    from the data home, downloaded there first if needed. An existing path always wins."""
    from retrieval.data import PUBLISHED_FILES, shipped_file

    for option in ("data_root", "noise_file"):
        value = getattr(args, option, None)
        if value is None or Path(value).exists():
            continue
        key = str(value).replace("\\", "/")
        if key in PUBLISHED_FILES:
            path = shipped_file(key)
            setattr(args, option, path if isinstance(value, Path) else str(path))


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a user's command causes (paths, names, formats, another run's folder),
    reported as one line. Evaluated only when an error occurs: the imports are heavy."""
    from retrieval.backbones import CheckpointError, UnsupportedModelError
    from retrieval.data import UnreadableImageError

    return (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, CheckpointError, UnreadableImageError, UnsupportedModelError)


def _is_out_of_memory(exc: BaseException) -> bool:
    # By name: torch is not imported for the commands that do not need it.
    return type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


def _out_of_memory_hint(args: argparse.Namespace, exc: BaseException) -> str:
    """One line for a device out of memory: what ran out and the options that fix it."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    fixes = "a smaller --batch-size"
    if args.command == "train":
        fixes += (", --grad-checkpointing, or --amp bf16 / fp16; the run resumes from its "
                  "checkpoint_last.pt with these changed")
    else:
        fixes += " or --amp bf16 / fp16"
    return f"{args.command} ran out of device memory ({first[:160]}); use {fixes}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if "Original Traceback" in text:
        # Re-raised from a DataLoader worker: the message carries the worker's traceback; its
        # last line is the original "module.Error: message".
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split()) or type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m retrieval``."""
    from retrieval.data.scenarios import SCENARIOS
    from retrieval.methods import METHODS

    parser = argparse.ArgumentParser(prog="python -m retrieval", description=__doc__.split(
        "\n")[0], formatter_class=_HelpFormatter)
    parser.add_argument("--log-level", default="INFO",
                        help="DEBUG also prints the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_parser = sub.add_parser

    def add_parser(*args, **kwargs):
        # Every subcommand's --help shows each option's default.
        return _add_parser(*args, formatter_class=_HelpFormatter, **kwargs)

    sub.add_parser = add_parser

    p = sub.add_parser("make-synthetic", help="write the synthetic compositional set")
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--n-images", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=None,
                   help="image side in pixels (default: 64; 128 for small-objects)")
    p.add_argument("--scenario", choices=tuple(SCENARIOS), default="default",
                   help="default: the compositional set; sparse-captions (D2S): training "
                        "captions name one object, dense captions all; small-objects (AVSE): "
                        "5-8 small objects per image; twins (DCAR): image pairs differing in "
                        "one colour or one shape")
    p.set_defaults(func=cmd_make_synthetic)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-root", required=True, type=Path,
                       help="folder format (captions.tsv), captions.jsonl folder (one line "
                            "per image, e.g. flickr8k_1k), Karpathy JSON folder, features, or "
                            "a FDRD test file (a path, or a published name such as "
                            "fdrd/pets_test.json)")
        p.add_argument("--format", choices=("karpathy", "folder", "jsonl", "features"),
                       default=None)
        p.add_argument("--image-root", type=Path, default=None,
                       help="image folder of a Karpathy JSON (default: the data root)")

    def backbone_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--force-quick-gelu", action="store_true",
                       help="QuickGELU activations (OpenAI weights need them)")
        p.add_argument("--precision", default=None,
                       help="open_clip precision of the model (fp32, bf16, fp16, ...; "
                            "default fp32)")
        p.add_argument("--open-clip-kwargs", default=None,
                       help="JSON object of further open_clip model options")

    def image_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workers", type=int, default=None,
                       help="image-decoding DataLoader workers (default: the CPUs this "
                            "process may use, at most 8)")
        p.add_argument("--skip-bad-images", action="store_true",
                       help="decode every image first and leave unreadable ones (with their "
                            "captions) out, logging each and reporting the count")

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--run", type=Path, help="a training run folder")
        p.add_argument("--which", choices=("best", "last"), default="best")
        p.add_argument("--model", help="open_clip model name (zero-shot)")
        p.add_argument("--pretrained", help="open_clip tag or local checkpoint file")
        backbone_args(p)
        p.add_argument("--device", default="auto")
        p.add_argument("--batch-size", type=int, default=256)
        p.add_argument("--amp", default="off", choices=("off", "auto", "bf16", "fp16"),
                       help="mixed precision of the encoding (auto: bf16/fp16 on CUDA)")
        image_args(p)
        p.add_argument("--seed", type=int, default=0,
                       help="seed of the random initialisation when --pretrained is not given")
        p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("train", help="fine-tune a method")
    p.add_argument("--method", choices=sorted(METHODS), default="contrastive")
    p.add_argument("--method-config", help="JSON object of method hyper-parameters")
    p.add_argument("--model", help="open_clip model name (not needed on a features folder)")
    p.add_argument("--pretrained",
                   help="open_clip tag, local weights file, or a finished run folder (start "
                        "from its fine-tuned CLIP)")
    backbone_args(p)
    data_args(p)
    p.add_argument("--output", required=True, type=Path, help="run folder")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128, help="global batch size")
    p.add_argument("--lr", type=float, default=None,
                   help="backbone learning rate (default: the method's, else 1e-5)")
    p.add_argument("--lr-new", type=float, default=None,
                   help="learning rate of new modules (default: the method's, else 1e-4; "
                        "pcsr 2e-4, dcar 2e-3)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dense-captions", help="dense-caption .jsonl of the training images")
    p.add_argument("--noise-ratio", type=float, default=0.0,
                   help="shuffle this fraction of training captions (spec 3)")
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--noise-file",
                   help="a noise index file instead: a path, or the name of a published one "
                        "(e.g. noise/bicro/f30k_precomp/f30k_precomp_0.4.npy, downloaded into "
                        "the data home on first use)")
    p.add_argument("--noise-level", choices=("caption", "image"), default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
                   help="mixed precision on CUDA (auto: bf16 where supported, else fp16); "
                        "the CPU trains in fp32")
    image_args(p)
    p.add_argument("--log-every", type=int, default=50,
                   help="steps between checks of the loss (the loop's only host syncs)")
    p.add_argument("--checkpoint-every", type=int, default=1000,
                   help="also checkpoint every N steps inside an epoch (0: epoch ends only)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--val-max-images", type=int, default=None,
                   help="validate on the first N images (default: 1000 for COCO, all otherwise)")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--restart", action="store_true",
                   help="ignore an existing checkpoint in the run folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="retrieval metrics of a run, a backbone or features")
    model_args(p)
    data_args(p)
    p.add_argument("--split", default="test")
    p.add_argument("--protocol", choices=("full", "1k-folds"), default="full",
                   help="1k-folds: COCO 1K (5 folds of 1,000 images, mean)")
    p.add_argument("--json", type=Path, help="also write the metrics dict here")
    p.add_argument("--eval-seeds", help="comma-separated evaluation seeds of a method with "
                   "seeded evaluation views (AVSE): report the mean, and the std as *_std")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("encode", help="write precomputed features")
    model_args(p)
    data_args(p)
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--splits", default="test")
    p.add_argument("--tokens", action="store_true",
                   help="also write the captions' token states (D2S's feature form needs them)")
    p.add_argument("--image-tokens", action="store_true",
                   help="also write the images' output patch tokens (AVSE's late-view fallback "
                        "needs them)")
    p.add_argument("--dense-captions",
                   help="dense-caption .jsonl of the training images: writes their pooled "
                        "embeddings (dense_pooled) with the train split")
    p.set_defaults(func=cmd_encode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m retrieval`` and ``mvlp-retrieval``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        parser.error(f"--log-level {args.log_level!r} is not a logging level (DEBUG, INFO, "
                     "WARNING, ERROR)")
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        _resolve_published_paths(args)
        return int(args.func(args) or 0)
    except Exception as exc:
        if _is_out_of_memory(exc):
            logger.debug("traceback of the error", exc_info=True)
            print(f"error: {_out_of_memory_hint(args, exc)}", file=sys.stderr)
            return 2
        if not isinstance(exc, _user_errors()):
            raise
        # A mistake in the command (a path, a name, a folder of another run) is one line;
        # --log-level DEBUG shows where it was raised.
        logger.debug("traceback of the error", exc_info=True)
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
