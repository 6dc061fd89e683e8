"""The one trainer shared by every retrieval method.

:class:`Trainer` fine-tunes a :class:`~retrieval.methods.RetrievalMethod` on the training pairs
of a :class:`~retrieval.data.RetrievalSplit`: AdamW with the two parameter groups of spec 1.3,
linear warm-up then cosine decay, gradient clipping, mixed precision on GPU, checkpoint
save/resume, selection on the validation split only, seeding, logging and tqdm progress.

Distributed data parallel runs through ``torchrun`` (``nccl`` on GPU, ``gloo`` on CPU) with
:class:`torch.nn.parallel.DistributedDataParallel`, whose bucketed gradient reduction overlaps
the backward pass. Each process encodes its share of the global batch; the method gathers the
embeddings of all processes with a differentiable all-gather and computes the loss of the
**global** batch, so the negatives are global (spec 6). Every process computes the same loss;
the backward pass of the all-gather sums, into each local slice, the gradients of all
processes' copies of that loss (``world_size`` times the single-process gradient), and
parameters used outside the gather (CLIP's temperature, a method's extra terms) hold the
single-process gradient on every rank. DDP's average over the processes therefore gives
exactly the gradient of one process on the whole batch, for every parameter; a parameter no
process used in a step keeps no gradient, as in one process, so AdamW does not move it.

The loop reads nothing back from the device between ``log_every`` steps (loss finiteness and
the progress bar are checked there); the schedule counts optimiser updates, so a step the fp16
gradient scaler skips does not advance it. Random augmentation is seeded per item and epoch
(:class:`SeededItems`), so any number of processes or workers draws the same crops, and every
step reseeds the method's own random stream (:func:`step_seed`), so a run resumed from a
mid-epoch checkpoint (``checkpoint_every``) ends with the weights of an uninterrupted one.

A run folder holds ``config.json`` (model, method and training settings), ``checkpoint_last.pt``
(everything needed to resume), ``model_best.pt`` (the method's weights at the best validation
rSum), ``history.json`` and ``train.log``. Tensors are always read back with
``weights_only=True``. A run that starts from trained weights (``--pretrained RUN_FOLDER`` or
a weights file; ``TrainConfig.evaluate_start``), and every feature form, validates the start
first, as epoch 0, and ``model_best.pt`` holds it until an epoch beats its rSum: selection
never returns worse than the start (``history.json`` says which was kept).

:meth:`Trainer.fit` reads as its parts: ``_setup`` (run folder, loaders, optimiser,
schedule), ``_resume``, ``_select_start``, then per epoch ``_train_epoch`` (its steps,
``_train_step``, and mid-epoch checkpoints) and ``_end_epoch`` (hook, record, validation,
selection, checkpoints), and ``_restore_best``.

References
----------
.. [1] Loshchilov, Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (AdamW).
.. [2] Cherti et al., "Reproducible scaling laws for contrastive language-image learning",
   CVPR 2023 (open_clip's gathered-feature contrastive training).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from retrieval.analysis import correspondence_analysis
from retrieval.backbones import CheckpointError, ClipBackbone
from retrieval.data._split import training_set_fingerprint, without_ground_truth
from retrieval.distributed import DistributedContext, init_distributed, make_broadcast, \
    make_gather
from retrieval.encoding import amp_dtype
from retrieval.methods.base import EpochContext, RetrievalMethod
from retrieval.runs import BEST_WEIGHTS, CONFIG_FILE, HISTORY_FILE, LAST_CHECKPOINT, \
    build_feature_method, build_method, cpu_state_dict, is_run_folder, load_checkpoint_file, \
    load_method_state, load_run, load_run_backbone_state, read_run_config, save_atomically
from retrieval.sampling import EpochSampler, SeededItems, epoch_item_seeds, resolve_workers, \
    seed_everything, step_seed
from retrieval.schedule import phased_warmup_cosine, warmup_cosine
from retrieval.split_encoding import encode_split, encode_to_features, evaluate_split

# Public names that lived here before the trainer was split by concept keep working from here.
__all__ = [
    "TrainConfig", "Trainer",
    "DistributedContext", "init_distributed", "make_gather", "make_broadcast",
    "seed_everything", "epoch_item_seeds", "step_seed", "EpochSampler", "SeededItems",
    "resolve_workers", "phased_warmup_cosine", "warmup_cosine", "correspondence_analysis",
    "CONFIG_FILE", "LAST_CHECKPOINT", "BEST_WEIGHTS", "HISTORY_FILE", "is_run_folder",
    "build_method", "build_feature_method", "cpu_state_dict", "load_checkpoint_file",
    "load_method_state", "read_run_config", "load_run", "load_run_backbone_state",
    "encode_split", "encode_to_features", "evaluate_split",
]

logger = logging.getLogger(__name__)

# Settings a resumed run may change without changing what is trained.
# (Not ``epochs``: the schedule and the methods' stage boundaries are laid out over all epochs, so
# another count would make the learning rate jump.)
# ``grad_checkpointing`` and ``amp`` are how a run that ran out of GPU memory is continued: they
# change memory and speed (``amp`` also the rounding of later steps), not what is trained.
_RESUME_MAY_CHANGE = {"verbose", "num_workers", "eval_batch_size", "device", "extra", "log_every",
                      "checkpoint_every", "grad_checkpointing", "amp"}


@dataclass
class TrainConfig:
    """Settings of one training run.

    Parameters
    ----------
    epochs : int, default=5
    batch_size : int, default=128
        **Global** batch size: split evenly over the processes of a distributed run.
    lr_backbone : float, default=1e-5
        Learning rate of the CLIP towers (spec 1.3).
    lr_new : float, default=1e-4
        Learning rate of the modules a method adds.
    weight_decay : float, default=0.1
        Applied to weight matrices only (never to 1-D parameters, embeddings, prompts or the
        temperature).
    warmup_fraction : float, default=0.1
        Fraction of all steps spent in the linear warm-up before the cosine decay.
    grad_clip : float or None, default=2.0
        Gradient-norm clipping threshold.
    amp : {"auto", "bf16", "fp16", "off"}, default="auto"
        Mixed precision: on CUDA, bf16 where supported, else fp16 with a gradient scaler;
        always fp32 on the CPU.
    seed : int, default=0
    device : str, default="auto"
        "auto" picks CUDA when available.
    num_workers : int or None, default=None
        DataLoader workers; None uses the CPUs this process may use, shared by the processes
        of the node (at most 8 each). Augmentation draws the same random crops whatever the
        number (each item is seeded by itself and the epoch).
    augment : bool, default=True
        Use the backbone's training transform (random resized crop) instead of the
        evaluation transform for training images.
    grad_checkpointing : bool, default=False
        Recompute the towers' activations in the backward pass (less memory, more time) for
        big backbones.
    eval_batch_size : int, default=256
    val_max_images : int or None, default=None
        Validate on the first images of the validation split only (COCO: 1,000, spec 2.5;
        Flickr30K uses all 1,014, the default).
    verbose : bool, default=True
        Progress bars.
    log_every : int, default=50
        Steps between the loop's host synchronisations: the check that losses are finite and
        the progress bar's loss. Nothing else reads the device back during an epoch.
    checkpoint_every : int or None, default=1000
        Also write ``checkpoint_last.pt`` every this many training steps inside an epoch, so
        that a pre-empted COCO epoch (thousands of steps) resumes where it stopped, with the
        same result as an uninterrupted run. None or 0: at epoch ends only.
    evaluate_start : bool or None, default=None
        Validate the starting weights before training (reported as epoch 0) and keep them
        as ``model_best.pt`` unless an epoch beats their validation rSum, so that selection
        never returns worse than the start. None: as the method says
        (``RetrievalMethod.starts_from_trained_weights``): when the backbone starts from
        trained weights in a file (``--pretrained RUN_FOLDER`` or a checkpoint file), not from
        an open_clip tag or random weights, and always for the feature forms (untrained, they
        reproduce the CLIP that wrote the features). Needs a validation split.
    """

    epochs: int = 5
    batch_size: int = 128
    lr_backbone: float = 1e-5
    lr_new: float = 1e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1
    grad_clip: float | None = 2.0
    amp: str = "auto"
    seed: int = 0
    device: str = "auto"
    num_workers: int | None = None
    augment: bool = True
    grad_checkpointing: bool = False
    eval_batch_size: int = 256
    val_max_images: int | None = None
    verbose: bool = True
    log_every: int = 50
    checkpoint_every: int | None = 1000
    evaluate_start: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (a batch needs negatives), got "
                             f"{self.batch_size}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.checkpoint_every is not None and self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 or None, got "
                             f"{self.checkpoint_every}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None, got {self.num_workers}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")


class _TrainingStep(torch.nn.Module):
    """The method's training step as a module ``forward``, which DistributedDataParallel wraps
    (DDP hooks gradient reduction onto what its forward computes)."""

    def __init__(self, method: RetrievalMethod, gather) -> None:
        super().__init__()
        self.method = method
        self.gather = gather

    def forward(self, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        return self.method.training_step(batch, self.gather, epoch=epoch)



@dataclass
class _Fit:
    """What one call of :meth:`Trainer.fit` trains with (made by ``Trainer._setup``) and where
    it stands."""

    context: DistributedContext
    method: RetrievalMethod
    train_split: Any  # what the method sees: without the clean pairing
    truth_split: Any  # with it, for the analysis only
    val_split: Any
    loaders: list[tuple[EpochSampler, DataLoader]]  # one per epoch
    optimizer: torch.optim.Optimizer
    scheduler: Any
    autocast: Any
    scaler: Any
    gather: Any
    broadcast: Any
    make_loader: Any
    workers: int
    resuming: bool
    step_module: torch.nn.Module | None = None
    trainable: list[torch.nn.Parameter] = field(default_factory=list)
    start_epoch: int = 0
    partial: dict[str, Any] | None = None  # the mid-epoch position to continue from
    global_step: int = 0


@dataclass
class _EpochProgress:
    """One epoch under way: its steps done, running sums (on the device) and log."""

    epoch: int
    steps_per_epoch: int
    bad_losses: torch.Tensor
    step: int = 0
    log: dict[str, Any] = field(default_factory=dict)
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped_updates: int = 0
    elapsed_before: float = 0.0  # training seconds before a resume
    started: float = 0.0
    stopped: bool = False

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started


def _accumulate(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    # Running sums stay on the device: reading them back each step would stall the GPU.
    value = value.detach().to(torch.float64)
    sums[key] = sums[key] + value if key in sums else value.clone()


def _epoch_means(sums: dict[str, torch.Tensor], steps: int, skipped: int = 0
                 ) -> dict[str, float]:
    """The epoch's ``train_*`` means: losses per step, the gradient norm per applied update
    (``nan`` when the fp16 scaler skipped them all), and the count of skipped updates (only
    when there were some)."""
    sums = {key: float(value) for key, value in sums.items()}
    record = {f"train_{key}": value / max(1, steps) for key, value in sums.items()}
    applied = steps - skipped
    record["train_grad_norm"] = sums.get("grad_norm", 0.0) / applied if applied else float("nan")
    if skipped:
        record["train_skipped_updates"] = int(skipped)
    return record


def _raise_if_non_finite(bad_losses: torch.Tensor, epoch: int, step: int) -> None:
    count = int(bad_losses.item())
    if count:
        raise FloatingPointError(f"{count} non-finite loss(es) at epoch {epoch} by step {step}; "
                                 "lower the learning rate")




class Trainer:
    """Train a retrieval method, select it on validation rSum, save and resume runs.

    Parameters
    ----------
    method : RetrievalMethod
        Built on its backbone (see :func:`build_method`).
    config : TrainConfig
    output_dir : path
        Run folder; an existing ``checkpoint_last.pt`` there is resumed when ``resume=True``.
    run_info : dict, optional
        Extra JSON-serialisable facts recorded in ``config.json`` (data root, noise ratio...).

    Attributes
    ----------
    history_ : list of dict
        One record per epoch: mean losses, validation metrics, time.
    best_rsum_ : float
        Best validation rSum (``nan`` without a validation split).
    best_epoch_ : int
        Index of the best epoch (0 = the first); -1 for the start when it was evaluated
        (``evaluate_start``) and no epoch beat it, or before any epoch.
    start_ : dict or None
        Validation metrics of the starting weights (``val_*``), when evaluated.
    """

    def __init__(self, method: RetrievalMethod, config: TrainConfig, output_dir: str |
                 os.PathLike, *, run_info: dict[str, Any] | None = None) -> None:
        self.method = method
        self.config = config
        self.output_dir = Path(output_dir)
        self.run_info = dict(run_info or {})
        self.history_: list[dict[str, Any]] = []
        self.best_rsum_ = float("nan")
        self.best_epoch_ = -1
        self.start_: dict[str, Any] | None = None
        self._train_set: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers
    def _amp_dtype(self, device: torch.device) -> torch.dtype | None:
        # Training autocasts on CUDA only: the CPU trains in fp32 whatever ``amp`` says.
        return amp_dtype(device, self.config.amp, on_cpu=False)

    def _autocast_context(self, device: torch.device):
        dtype = self._amp_dtype(device)
        if dtype is None:
            return torch.autocast(device_type=device.type, enabled=False)
        return torch.autocast(device_type="cuda", dtype=dtype)

    def _autocast(self, device: torch.device):
        dtype = self._amp_dtype(device)
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return self._autocast_context(device), scaler

    def _config_payload(self) -> dict[str, Any]:
        space = getattr(self.method, "space", None)
        if space is not None:
            # A feature form: no backbone, the features' model and weights instead.
            model, pretrained, extra = space.model, space.weights, {"features": space.to_dict()}
        else:
            backbone: ClipBackbone = self.method.backbone
            model, pretrained = backbone.name, backbone.pretrained
            extra = {"backbone_options": backbone.build_options}
        return {
            "method": self.method.name,
            "method_config": self.method.get_config(),
            "model": model,
            "pretrained": pretrained,
            **extra,
            "train": dataclasses.asdict(self.config),
            # What was trained on: a resume must continue on the same items (exactness).
            "train_set": self._train_set,
            "run": self.run_info,
            "torch": torch.__version__,
        }

    def _write_config(self) -> None:
        text = json.dumps(self._config_payload(), indent=2, default=str)
        (self.output_dir / CONFIG_FILE).write_text(text)

    def _check_resumable(self) -> None:
        """Refuse to continue a run folder written with other settings (it stays intact)."""
        stored = read_run_config(self.output_dir)
        current = json.loads(json.dumps(self._config_payload(), default=str))
        different = [key for key in ("method", "method_config", "model")
                     if stored.get(key) != current.get(key)]
        if stored.get("backbone_options", current.get("backbone_options")) != current.get(
                "backbone_options"):
            different.append("backbone_options")
        for key, value in current["train"].items():
            if key not in _RESUME_MAY_CHANGE and stored.get("train", {}).get(key) != value:
                different.append(f"train.{key}")
        for key in ("data_root", "noise_ratio", "noise_file", "noise_seed"):
            if key in current["run"] and stored.get("run", {}).get(key) != current["run"][key]:
                different.append(f"run.{key}")
        stored_set, current_set = stored.get("train_set"), current.get("train_set")
        if stored_set and current_set and stored_set != current_set:
            raise ValueError(
                f"{self.output_dir} was trained on another training set ({stored_set['n_images']} "
                f"images / {stored_set['n_captions']} captions, now {current_set['n_images']} / "
                f"{current_set['n_captions']}, or other ids; e.g. --skip-bad-images left images "
                "out): a resume would no longer be exact; resume on the same data, use another "
                "output folder, or restart it (resume=False, --restart)")
        if different:
            why = ""
            if "train.epochs" in different:
                why = (f" (it was planned for {stored['train']['epochs']} epochs, and its "
                       "learning-rate schedule and stages are laid out over them: another "
                       "--epochs would make the learning rate jump)")
            raise ValueError(
                f"{self.output_dir} holds a run with other settings ({', '.join(different)})"
                f"{why}; resume it with the same settings, use another output folder, or "
                "restart it (resume=False, --restart)")

    def _clear_run_folder(self) -> None:
        for name in (LAST_CHECKPOINT, BEST_WEIGHTS, HISTORY_FILE):
            (self.output_dir / name).unlink(missing_ok=True)

    @staticmethod
    def _check_splits(train_split, val_split) -> None:
        if val_split is None:
            return
        if getattr(val_split, "name", "") == "test":
            raise ValueError("the validation split is the test split: model selection must "
                             "never look at test (spec 2.5)")
        if not hasattr(train_split, "image_paths") or not hasattr(val_split, "image_paths"):
            return  # precomputed features: the splits were encoded from distinct splits
        shared = set(train_split.image_paths) & set(val_split.image_paths)
        if shared:
            raise ValueError(f"{len(shared)} images are both in the training and the validation "
                             f"split (e.g. {sorted(shared)[:2]})")

    # ------------------------------------------------------------------ fit
    def fit(self, train_split, val_split=None, *, resume: bool = True,
            stop_after_epoch: int | None = None,
            stop_after_step: int | None = None) -> "Trainer":
        """Train on ``train_split`` (its possibly noisy pairs), select on ``val_split``.

        Parameters
        ----------
        train_split : RetrievalSplit
        val_split : RetrievalSplit, optional
            Without it the last epoch is kept (and a warning says so). Never pass the test
            split here. With it, the method ends holding the weights of the best epoch.
        resume : bool, default=True
            Continue from ``checkpoint_last.pt`` in the output folder when it exists, at the
            epoch boundary or the mid-epoch step it was written at.
        stop_after_epoch : int, optional
            Return once this many epochs (in total) are done, keeping the schedule of the
            full ``config.epochs``: a time-boxed job calls ``fit`` again to continue.
        stop_after_step : int, optional
            Return after this many training steps (batches, in total over all epochs; a step
            the fp16 scaler skipped counts), writing a mid-epoch checkpoint there: what a
            pre-empted job leaves behind.
        """
        cfg = self.config
        context = init_distributed(cfg.device)
        try:
            return self._fit(context, train_split, val_split, resume=resume,
                             stop_after_epoch=stop_after_epoch, stop_after_step=stop_after_step)
        finally:
            context.close()

    def _fit(self, context: DistributedContext, train_split, val_split, *, resume: bool,
             stop_after_epoch: int | None, stop_after_step: int | None) -> "Trainer":
        cfg = self.config
        fit = self._setup(context, train_split, val_split, resume=resume)
        if fit.resuming:
            self._resume(fit)
        self._wrap_training_step(fit)
        if val_split is None:
            if context.is_main and fit.start_epoch < cfg.epochs:
                logger.warning("no validation split: the last epoch is kept (no selection)")
        elif fit.start_epoch == 0 and fit.partial is None and self._evaluates_start():
            self._select_start(fit)
        end_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs,
                                                                     stop_after_epoch)
        fit.global_step = sum(len(loader) for _, loader in fit.loaders[:fit.start_epoch]) + (
            fit.partial["steps"] if fit.partial else 0)
        if stop_after_step is not None and fit.global_step >= stop_after_step:
            return self
        for epoch in range(fit.start_epoch, end_epoch):
            progress = self._train_epoch(fit, epoch, stop_after_step)
            if progress.stopped and progress.step < progress.steps_per_epoch:
                return self  # stopped inside the epoch: its checkpoint is written
            self._end_epoch(fit, progress)
            if progress.stopped:
                break
        self._restore_best(fit)
        return self

    # ------------------------------------------------------------------ setup
    def _setup(self, context: DistributedContext, train_split, val_split, *,
               resume: bool) -> _Fit:
        """The run folder, the loaders of every epoch, the optimiser, the schedule."""
        cfg = self.config
        device = context.device
        seed_everything(cfg.seed + context.rank)
        method = self.method.to(device)
        self._check_splits(train_split, val_split)
        self._train_set = training_set_fingerprint(train_split)
        # Methods see the training pairs only; the clean pairing of a noisy split stays on the
        # data side, for the analysis of their predicted clean subsets.
        truth_split, train_split = train_split, without_ground_truth(train_split)
        resuming = resume and (self.output_dir / LAST_CHECKPOINT).is_file()
        self._prepare_run_folder(context, resuming)
        # Feature forms (precomputed features) have no backbone: no images to transform,
        # no captions to tokenise.
        backbone = getattr(method, "backbone", None)
        if cfg.grad_checkpointing and backbone is not None:
            backbone.model.set_grad_checkpointing(True)
        if backbone is None:
            transform = eval_transform = tokenizer = None
        else:
            transform = backbone.preprocess_train if cfg.augment else backbone.preprocess
            eval_transform, tokenizer = backbone.preprocess, backbone.tokenizer
        if cfg.batch_size % context.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the "
                             f"{context.world_size} processes")
        workers = resolve_workers(cfg.num_workers, context.world_size)
        loaders = self._epoch_loaders(method, train_split, transform, tokenizer, context,
                                      workers)
        optimizer = torch.optim.AdamW(
            method.parameter_groups(cfg.lr_backbone, cfg.lr_new, cfg.weight_decay))
        autocast, scaler = self._autocast(device)

        def make_loader(dataset=None, batch_size=None, collate_fn=None, *, epoch=0):
            # In dataset order, without augmentation, each process its own shard.
            if dataset is None:
                dataset = method.training_dataset(train_split, eval_transform, tokenizer,
                                                  epoch=epoch, epochs=cfg.epochs)
                collate_fn = collate_fn or method.collate
            shard = DistributedSampler(dataset, num_replicas=context.world_size,
                                       rank=context.rank, shuffle=False, drop_last=False) \
                if context.distributed else None
            return DataLoader(dataset, batch_size=batch_size or cfg.eval_batch_size,
                              sampler=shard, shuffle=False, num_workers=workers,
                              collate_fn=collate_fn, pin_memory=device.type == "cuda")

        return _Fit(context=context, method=method, train_split=train_split,
                    truth_split=truth_split, val_split=val_split, loaders=loaders,
                    optimizer=optimizer, scheduler=self._schedule(method, optimizer, loaders),
                    autocast=autocast, scaler=scaler, gather=make_gather(context),
                    broadcast=make_broadcast(context), make_loader=make_loader,
                    workers=workers, resuming=resuming)

    def _prepare_run_folder(self, context: DistributedContext, resuming: bool) -> None:
        if context.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if resuming:
                self._check_resumable()
            else:
                self._clear_run_folder()
            self._write_config()
        context.barrier()

    def _epoch_loaders(self, method: RetrievalMethod, train_split, transform, tokenizer,
                       context: DistributedContext, workers: int
                       ) -> list[tuple[EpochSampler, DataLoader]]:
        """The sampler and loader of every epoch. The method decides what one training item
        is, per epoch (a caption pair by default; D2S trains on one item per image in its
        first stage); the same dataset object on several epochs shares one loader."""
        cfg = self.config
        local_batch = cfg.batch_size // context.world_size
        loaders: dict[int, tuple[EpochSampler, DataLoader]] = {}
        epoch_loaders = []
        for epoch in range(cfg.epochs):
            dataset = method.training_dataset(train_split, transform, tokenizer,
                                              epoch=epoch, epochs=cfg.epochs)
            if id(dataset) not in loaders:
                if len(dataset) < cfg.batch_size:
                    raise ValueError(
                        f"the training split has {len(dataset)} training items for method "
                        f"{method.name!r} (epoch {epoch + 1}), fewer than one batch of "
                        f"{cfg.batch_size}")
                sampler = EpochSampler(len(dataset), context.world_size, context.rank,
                                       seed=cfg.seed, local_batch=local_batch)
                loaders[id(dataset)] = (sampler, DataLoader(
                    SeededItems(dataset), batch_size=local_batch, sampler=sampler,
                    num_workers=workers, drop_last=True, collate_fn=method.collate,
                    pin_memory=context.device.type == "cuda"))
            epoch_loaders.append(loaders[id(dataset)])
        return epoch_loaders

    def _schedule(self, method: RetrievalMethod, optimizer: torch.optim.Optimizer,
                  loaders: list[tuple[EpochSampler, DataLoader]]):
        """Warm-up then cosine decay, restarted at each of the method's training phases."""
        cfg = self.config
        phases = method.training_phases(cfg.epochs)
        if sum(phases) != cfg.epochs or min(phases) < 1:
            raise ValueError(f"{method.name}.training_phases({cfg.epochs}) returned "
                             f"{phases}: positive epoch counts summing to {cfg.epochs}")
        ends = np.cumsum(phases)
        phase_steps = [sum(len(loader) for _, loader in loaders[a:b])
                       for a, b in zip([0, *ends[:-1]], ends)]
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, phased_warmup_cosine(phase_steps, cfg.warmup_fraction))

    def _epoch_context(self, fit: _Fit, epoch: int, epoch_log: dict[str, Any]) -> EpochContext:
        context = fit.context
        return EpochContext(
            epoch=epoch, epochs=self.config.epochs, train_split=fit.train_split,
            device=context.device, autocast=lambda: self._autocast_context(context.device),
            gather=fit.gather, rank=context.rank, world_size=context.world_size,
            make_loader=functools.partial(fit.make_loader, epoch=epoch),
            verbose=self.config.verbose and context.is_main, broadcast=fit.broadcast,
            log=epoch_log, report_clean_split=functools.partial(
                correspondence_analysis, fit.truth_split, epoch_log))

    def _wrap_training_step(self, fit: _Fit) -> None:
        # DistributedDataParallel reduces gradients in buckets while the backward pass runs.
        # Its forward is the method's training step; parameters no process used in a step
        # (D2S's decoder in stage 1) keep no gradient, as in one process, so AdamW leaves
        # them alone. Wrapping also broadcasts rank 0's weights (after the resume) to all.
        device = fit.context.device
        fit.step_module = _TrainingStep(fit.method, fit.gather)
        if fit.context.distributed:
            fit.step_module = DistributedDataParallel(
                fit.step_module, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True, broadcast_buffers=False)
        fit.trainable = [p for p in fit.method.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ resume
    def _resume(self, fit: _Fit) -> None:
        """Load ``checkpoint_last.pt``: weights, optimiser, schedule, scaler, history, and the
        position (an epoch boundary, or a step inside an epoch)."""
        last_path = self.output_dir / LAST_CHECKPOINT
        state = load_checkpoint_file(last_path)
        missing = [k for k in ("method", "optimizer", "scheduler", "epoch", "history",
                               "best_rsum", "best_epoch") if k not in state]
        if missing:
            raise CheckpointError(f"{last_path} lacks {missing}: not a checkpoint of "
                                  "this trainer; restart the run (resume=False)")
        load_method_state(fit.method, state["method"], source=str(last_path))
        fit.optimizer.load_state_dict(state["optimizer"])
        fit.scheduler.load_state_dict(state["scheduler"])
        if fit.scaler is not None and state.get("scaler"):
            fit.scaler.load_state_dict(state["scaler"])
        fit.start_epoch = int(state["epoch"]) + 1
        self.history_ = json.loads(state["history"])
        self.start_ = json.loads(state["start"]) if state.get("start") else None
        self.best_rsum_ = float(state["best_rsum"])
        self.best_epoch_ = int(state["best_epoch"])
        if state.get("partial"):
            fit.partial = json.loads(state["partial"])
            if fit.partial["epoch"] != fit.start_epoch:
                raise CheckpointError(f"{last_path}: a mid-epoch state of epoch "
                                      f"{fit.partial['epoch']} after epoch "
                                      f"{fit.start_epoch - 1}")
        logger.info("resumed %s at epoch %d%s", last_path, fit.start_epoch,
                    f", step {fit.partial['steps']}" if fit.partial else "")

    # ------------------------------------------------------------------ the start
    def _evaluates_start(self) -> bool:
        if self.config.evaluate_start is not None:
            return self.config.evaluate_start
        return self.method.starts_from_trained_weights()

    def _select_start(self, fit: _Fit) -> None:
        """Validate the starting weights (epoch 0) and keep them as ``model_best.pt``: an
        epoch replaces them only by beating their validation rSum."""
        fit.method.eval()
        with torch.no_grad():
            fit.method.prepare_start_evaluation(self._epoch_context(fit, 0, {}))
        if fit.context.is_main:
            metrics = self._validate(fit)
            self.start_ = {"epoch": -1, **{f"val_{k}": v for k, v in metrics.items()}}
            self.best_rsum_, self.best_epoch_ = float(metrics["rsum"]), -1
            save_atomically(cpu_state_dict(fit.method), self.output_dir / BEST_WEIGHTS)
            logger.info("start (epoch 0, before training): val_rsum=%.4g", metrics["rsum"])
        fit.context.barrier()

    def _validate(self, fit: _Fit) -> dict[str, float]:
        cfg = self.config
        return evaluate_split(fit.method, fit.val_split, batch_size=cfg.eval_batch_size,
                              verbose=False, max_images=cfg.val_max_images,
                              amp="off" if self._amp_dtype(fit.context.device) is None
                              else cfg.amp, num_workers=fit.workers)

    # ------------------------------------------------------------------ epoch
    def _begin_epoch(self, fit: _Fit, epoch: int) -> _EpochProgress:
        """Start epoch ``epoch``, or continue it from the mid-epoch checkpoint."""
        cfg, context, method = self.config, fit.context, fit.method
        sampler, _ = fit.loaders[epoch]
        method.train()
        if fit.partial is not None:
            # Continue a pre-empted epoch: the hooks' state (subsets, caches) came back
            # with the weights; every step reseeds its own random stream (step_seed).
            partial, fit.partial = fit.partial, None
            sums = dict(partial["sums"])
            # (Checkpoints written before skipped updates were counted on the host kept the
            # count of applied ones among the sums.)
            applied = sums.pop("applied_updates", None)
            skipped = partial.get("skipped_updates",
                                  0 if applied is None else round(partial["steps"] - applied))
            progress = _EpochProgress(
                epoch=epoch, steps_per_epoch=sampler.batches_per_epoch,
                step=int(partial["steps"]), log=dict(partial["log"]),
                sums={k: torch.tensor(v, device=context.device, dtype=torch.float64)
                      for k, v in sums.items()},
                skipped_updates=int(skipped), elapsed_before=float(partial["train_time_s"]),
                bad_losses=torch.zeros((), device=context.device))
            method.resume_epoch(epoch, self._epoch_context(fit, epoch, progress.log))
        else:
            progress = _EpochProgress(epoch=epoch, steps_per_epoch=sampler.batches_per_epoch,
                                      bad_losses=torch.zeros((), device=context.device))
            # Per-epoch seeding makes a resumed run draw the same random numbers.
            torch.manual_seed(int(np.random.SeedSequence(
                [cfg.seed, epoch, context.rank]).generate_state(1)[0]))
            method.on_epoch_start(epoch, self._epoch_context(fit, epoch, progress.log))
        sampler.set_epoch(epoch, first_batch=progress.step)
        progress.started = time.perf_counter()
        return progress

    def _train_epoch(self, fit: _Fit, epoch: int, stop_after_step: int | None
                     ) -> _EpochProgress:
        """The epoch's steps, until its end or ``stop_after_step`` (a mid-epoch checkpoint
        is then written)."""
        from tqdm.auto import tqdm

        cfg, context = self.config, fit.context
        progress = self._begin_epoch(fit, epoch)
        _, loader = fit.loaders[epoch]
        log_every = max(1, int(cfg.log_every))
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", initial=progress.step,
                   total=progress.steps_per_epoch,
                   disable=not (cfg.verbose and context.is_main), leave=False)
        for batch in bar:
            loss = self._train_step(fit, progress, batch)
            progress.step += 1
            fit.global_step += 1
            if progress.step % log_every == 0 or progress.step == progress.steps_per_epoch:
                # The only host synchronisation of the loop: every log_every steps.
                _raise_if_non_finite(progress.bad_losses, epoch, progress.step)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            progress.stopped = (stop_after_step is not None
                                and fit.global_step >= stop_after_step)
            if progress.step < progress.steps_per_epoch and (progress.stopped or (
                    cfg.checkpoint_every and fit.global_step % cfg.checkpoint_every == 0)):
                self._save_mid_epoch(fit, progress)
            if progress.stopped:
                break
        bar.close()
        return progress

    def _train_step(self, fit: _Fit, progress: _EpochProgress, batch: dict[str, Any]
                    ) -> torch.Tensor:
        """One optimiser update; the step's losses and gradient norm are summed on the
        device (nothing is read back here)."""
        cfg, device = self.config, fit.context.device
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                 for k, v in batch.items()}
        torch.manual_seed(step_seed(cfg.seed, progress.epoch, fit.context.rank, progress.step))
        with fit.autocast:
            losses = fit.step_module(batch, progress.epoch)
        loss = losses["loss"]
        progress.bad_losses += (~torch.isfinite(loss.detach())).float()
        optimizer, scaler = fit.optimizer, fit.scaler
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            fit.trainable, cfg.grad_clip if cfg.grad_clip else float("inf"))
        applied = True
        if scaler is not None:
            # GradScaler skips the update when it finds inf/nan gradients and lowers its
            # scale; the schedule counts only the updates that happened. (The scaler reads
            # its found-inf flag on the host itself: fp16 syncs anyway.)
            scale_before = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            applied = scaler.get_scale() >= scale_before
        else:
            optimizer.step()
        if applied:
            fit.scheduler.step()
            # The epoch's mean norm is over the applied updates: a skipped step's norm
            # (infinite, from the overflow) changed nothing; it is counted as skipped.
            _accumulate(progress.sums, "grad_norm", grad_norm)
        else:
            progress.skipped_updates += 1
        for key, value in losses.items():
            _accumulate(progress.sums, key, value)
        return loss

    def _save_mid_epoch(self, fit: _Fit, progress: _EpochProgress) -> None:
        _raise_if_non_finite(progress.bad_losses, progress.epoch, progress.step)
        if fit.context.is_main:
            self._save_last(fit, progress.epoch - 1, partial={
                "epoch": progress.epoch, "steps": progress.step, "log": progress.log,
                "sums": {k: float(v) for k, v in progress.sums.items()},
                "skipped_updates": progress.skipped_updates,
                "train_time_s": progress.elapsed()})
        fit.context.barrier()

    # ------------------------------------------------------------------ end of epoch
    def _end_epoch(self, fit: _Fit, progress: _EpochProgress) -> None:
        """The epoch's hook, its record, validation, selection and checkpoints."""
        epoch, context = progress.epoch, fit.context
        _raise_if_non_finite(progress.bad_losses, epoch, progress.step)
        fit.method.on_epoch_end(epoch, self._epoch_context(fit, epoch, progress.log))
        record: dict[str, Any] = {
            "epoch": epoch,
            **_epoch_means(progress.sums, progress.steps_per_epoch, progress.skipped_updates),
            **progress.log,
            "train_time_s": progress.elapsed(),
            **{f"lr_{group['name']}": group["lr"] for group in fit.optimizer.param_groups
               if not group["name"].endswith("_no_decay")},
        }
        if context.is_main:
            if fit.val_split is not None:
                metrics = self._validate(fit)
                record.update({f"val_{k}": v for k, v in metrics.items()})
                improved = not (metrics["rsum"] <= self.best_rsum_)
            else:
                improved = True
            if improved:
                self.best_rsum_ = float(record.get("val_rsum", float("nan")))
                self.best_epoch_ = epoch
                save_atomically(cpu_state_dict(fit.method), self.output_dir / BEST_WEIGHTS)
            self.history_.append(record)
            self._save_last(fit, epoch)
            logger.info("epoch %d: %s", epoch, ", ".join(
                f"{k}={v:.4g}" for k, v in record.items()
                if isinstance(v, float) and (k.startswith("train_") or k == "val_rsum")))
        context.barrier()

    def _restore_best(self, fit: _Fit) -> None:
        best_path = self.output_dir / BEST_WEIGHTS
        if fit.val_split is None or not best_path.is_file():
            return
        if fit.context.is_main:
            logger.info("model_best.pt holds %s", self._kept())
        # Leave the method as selected on validation, as load_run(...) would rebuild it.
        load_method_state(fit.method, load_checkpoint_file(best_path), source=str(best_path))

    def _kept(self) -> str:
        """Which weights ``model_best.pt`` holds, in words (for the log)."""
        if self.best_epoch_ < 0 and self.start_ is not None:
            return (f"the start (epoch 0, before training; validation rSum "
                    f"{self.best_rsum_:.2f}): no epoch beat it")
        start = "" if self.start_ is None else \
            f"; the start had {self.start_['val_rsum']:.2f}"
        return (f"epoch {self.best_epoch_ + 1} of {self.config.epochs} (validation rSum "
                f"{self.best_rsum_:.2f}{start})")

    def _save_last(self, fit: _Fit, epoch: int, *,
                   partial: dict[str, Any] | None = None) -> None:
        """Write ``checkpoint_last.pt``: after epoch ``epoch``, plus a mid-epoch position
        (``partial``: the epoch in progress, its steps done, running sums and log)."""
        state = {
            "method": cpu_state_dict(fit.method),
            "optimizer": fit.optimizer.state_dict(),
            "scheduler": fit.scheduler.state_dict(),
            "scaler": fit.scaler.state_dict() if fit.scaler is not None else {},
            "epoch": epoch,
            "best_rsum": self.best_rsum_,
            "best_epoch": self.best_epoch_,
            # JSON text keeps the history loadable under weights_only=True.
            "history": json.dumps(self.history_),
            "start": json.dumps(self.start_) if self.start_ is not None else "",
            "partial": json.dumps(partial) if partial is not None else "",
        }
        save_atomically(state, self.output_dir / LAST_CHECKPOINT)
        save_atomically(json.dumps(
            {"history": self.history_, "start": self.start_, "best_epoch": self.best_epoch_,
             "kept": "start" if self.best_epoch_ < 0 and self.start_ is not None
             else "epoch", "best_val_rsum": self.best_rsum_}, indent=2),
            self.output_dir / HISTORY_FILE)
