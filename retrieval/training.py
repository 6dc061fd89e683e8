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
``weights_only=True``.

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
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch.utils.data import DataLoader
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from retrieval.backbones import CheckpointError, ClipBackbone, create_backbone, encode_images, \
    encode_texts, load_tensor_file, weights_fingerprint
from retrieval.methods.base import EpochContext, RetrievalMethod, get_method

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
LAST_CHECKPOINT = "checkpoint_last.pt"
BEST_WEIGHTS = "model_best.pt"
HISTORY_FILE = "history.json"
# Settings a resumed run may change without changing what is trained.
# (Not ``epochs``: the schedule and the methods' stage boundaries are laid out over all epochs, so
# another count would make the learning rate jump.)
_RESUME_MAY_CHANGE = {"verbose", "num_workers", "eval_batch_size", "device", "extra", "log_every",
                      "checkpoint_every"}


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


# --------------------------------------------------------------------------------------------
# Seeding and distributed helpers
# --------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class DistributedContext:
    """Rank, world size and device of this process (a single process when not launched)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group that ``torchrun`` describes through its environment variables.

    Without ``WORLD_SIZE`` > 1 this is a single process. The backend is ``nccl`` on CUDA and
    ``gloo`` on the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
    if world_size <= 1:
        chosen = torch.device("cuda" if use_cuda and device == "auto" else
                              (device if device != "auto" else "cpu"))
        return DistributedContext(device=torch.device(chosen))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        initialised_here = True
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    return DistributedContext(rank, world_size, local_rank, chosen, initialised_here)


def make_gather(context: DistributedContext):
    """Concatenate a tensor over processes (rank order), differentiably.

    Integer tensors (image ids) are gathered without gradient. In a single process this is
    the identity.
    """
    if not context.distributed:
        return lambda tensor: tensor
    from torch.distributed.nn.functional import all_gather as differentiable_all_gather

    def gather(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        if not tensor.is_floating_point():
            parts = [torch.empty_like(tensor) for _ in range(context.world_size)]
            dist.all_gather(parts, tensor)
            return torch.cat(parts)
        return torch.cat(differentiable_all_gather(tensor))

    return gather


def make_broadcast(context: DistributedContext):
    """``broadcast(tensor)``: rank 0's values on every process (identity in one process).

    The tensor travels on the process's device (NCCL needs CUDA tensors) and comes back on
    the device it was given on.
    """
    if not context.distributed:
        return lambda tensor: tensor

    def broadcast(tensor: torch.Tensor) -> torch.Tensor:
        moved = tensor.detach().to(context.device).contiguous()
        dist.broadcast(moved, src=0)
        return moved.to(tensor.device)

    return broadcast


def correspondence_analysis(train_split: Any, epoch_log: dict[str, Any], name: str,
                            predicted_clean: Any) -> None:
    """Record a method's predicted clean subset, scored against the true correspondence.

    Writes ``{name}_clean`` (size) and, when ``train_split`` knows its clean pairing (noise
    simulated or read from a file), ``{name}_clean_precision`` (share of the predicted set
    that is truly clean) and ``{name}_clean_recall`` (share of the truly clean pairs found).
    For analysis only: the result goes to the run's history, never back to the method.
    """
    predicted = np.asarray(predicted_clean, dtype=bool)
    epoch_log[f"{name}_clean"] = int(predicted.sum())
    clean_ids = getattr(train_split, "clean_text_image_ids", None)
    if clean_ids is None:
        return
    truly_clean = np.asarray(train_split.text_image_ids) == np.asarray(clean_ids)
    if truly_clean.shape != predicted.shape:
        raise ValueError(f"{name}: a predicted clean mask of {predicted.shape[0]} pairs for a "
                         f"split of {truly_clean.shape[0]} captions")
    hits = int(np.sum(predicted & truly_clean))
    epoch_log[f"{name}_clean_precision"] = hits / max(1, int(predicted.sum()))
    epoch_log[f"{name}_clean_recall"] = hits / max(1, int(truly_clean.sum()))


class _TrainingStep(torch.nn.Module):
    """The method's training step as a module ``forward``, which DistributedDataParallel wraps
    (DDP hooks gradient reduction onto what its forward computes)."""

    def __init__(self, method: RetrievalMethod, gather) -> None:
        super().__init__()
        self.method = method
        self.gather = gather

    def forward(self, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        return self.method.training_step(batch, self.gather, epoch=epoch)


def epoch_item_seeds(seed: int, epoch: int, n_items: int) -> np.ndarray:
    """The seed of every training item's random augmentation in one epoch, ``(n_items,)``.

    A seed depends on the item and the epoch, not on the process, worker or position that loads
    it, so one process and several draw the same crops, and a resumed epoch draws what it would
    have.
    """
    return np.random.default_rng([int(seed), int(epoch)]).integers(
        0, np.iinfo(np.int64).max, size=int(n_items), dtype=np.int64)


def step_seed(seed: int, epoch: int, rank: int, step: int) -> int:
    """The seed of torch's random stream for one training step of one process (the method's
    own randomness: dropout, sampled views), so that a run resumed at any step draws the same
    numbers as an uninterrupted one."""
    return int(np.random.SeedSequence([seed, epoch, rank, step]).generate_state(1)[0])


class EpochSampler(torch.utils.data.Sampler):
    """This process's share of an epoch's shuffled order, each index with its item seed.

    The permutation is :class:`~torch.utils.data.distributed.DistributedSampler`'s (seeded by
    ``seed`` and the epoch; ``drop_last``), so the union of the processes' local batches is the
    single-process batch. ``set_epoch(epoch, first_batch=k)`` starts the epoch at local batch
    ``k`` (a resumed epoch) without loading the batches before it.
    """

    def __init__(self, n_items: int, world_size: int, rank: int, *, seed: int,
                 local_batch: int) -> None:
        self.order = DistributedSampler(range(n_items), num_replicas=world_size, rank=rank,
                                        shuffle=True, seed=seed, drop_last=True)
        self.seed = int(seed)
        self.local_batch = int(local_batch)
        self.n_items = int(n_items)
        self.set_epoch(0)

    def set_epoch(self, epoch: int, first_batch: int = 0) -> None:
        self.epoch, self.first_batch = int(epoch), int(first_batch)
        self.order.set_epoch(epoch)
        self.seeds = epoch_item_seeds(self.seed, self.epoch, self.n_items)

    @property
    def batches_per_epoch(self) -> int:
        """Local batches of a whole epoch (the loader drops an incomplete last one)."""
        return len(self.order) // self.local_batch

    def __len__(self) -> int:
        return len(self.order) - self.first_batch * self.local_batch

    def __iter__(self):
        indices = list(self.order)[self.first_batch * self.local_batch:]
        return iter([(index, int(self.seeds[index])) for index in indices])


class SeededItems(torch.utils.data.Dataset):
    """Loads ``dataset[index]`` with torch's random stream seeded by the item's own seed.

    Augmentations (random crops) then depend only on the item and the epoch, whichever worker
    or process loads it; the caller's random stream is left untouched.
    """

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        # Only the CPU generator: transforms draw from it, and seeding CUDA here would
        # overwrite the training loop's own stream when items load in the main process.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]


def resolve_workers(num_workers: int | None, world_size: int = 1) -> int:
    """DataLoader workers: ``num_workers``, or with None the CPUs this process may use, shared
    by the processes of the run (at most 8 each)."""
    if num_workers is not None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        return int(num_workers)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    return max(0, min(8, cpus // max(1, local_processes)))


def _accumulate(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    # Running sums stay on the device: reading them back each step would stall the GPU.
    value = value.detach().to(torch.float64)
    sums[key] = sums[key] + value if key in sums else value.clone()


def _raise_if_non_finite(bad_losses: torch.Tensor, epoch: int, step: int) -> None:
    count = int(bad_losses.item())
    if count:
        raise FloatingPointError(f"{count} non-finite loss(es) at epoch {epoch} by step {step}; "
                                 "lower the learning rate")


# --------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------
def phased_warmup_cosine(phase_steps: list[int], warmup_fraction: float):
    """Warm-up then cosine decay restarted in every training phase (e.g. D2S's two stages).

    ``phase_steps`` are the optimiser steps of the phases in order; each warms up over
    ``warmup_fraction`` of its own steps, so a short first phase is not spent warming up.
    """
    bounds = np.cumsum([0] + list(phase_steps))
    schedules = [warmup_cosine(n, int(warmup_fraction * n)) for n in phase_steps]

    def factor(step: int) -> float:
        phase = int(np.searchsorted(bounds, step, side="right")) - 1
        phase = min(max(phase, 0), len(schedules) - 1)
        return schedules[phase](step - int(bounds[phase]))

    return factor


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Multiplier of the learning rate at a step: linear warm-up, then cosine decay to 0."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


# --------------------------------------------------------------------------------------------
# Building, saving and loading methods
# --------------------------------------------------------------------------------------------
def is_run_folder(path: str | os.PathLike | None) -> bool:
    """True when ``path`` is a training run folder (holds ``config.json``)."""
    return path is not None and Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def load_run_backbone_state(run_dir: str | os.PathLike, *, which: str = "best"
                            ) -> tuple[str, dict[str, torch.Tensor], Path]:
    """The backbone weights of a finished run: (model name, CLIP state dict, file read).

    The run's method may be any registered one: only its ``backbone.`` weights are returned,
    under the open_clip model's own key names.
    """
    config = read_run_config(run_dir)
    if "model" not in config:
        raise CheckpointError(f"{Path(run_dir) / CONFIG_FILE} lacks 'model'")
    path, state = _run_weights(run_dir, which)
    prefix = "backbone.model."
    backbone_state = {key[len(prefix):]: value for key, value in state.items()
                      if key.startswith(prefix)}
    if not backbone_state:
        raise CheckpointError(f"{path} holds no backbone weights (no '{prefix}*' keys)")
    return config["model"], backbone_state, path


def build_method(method: str, model: str, pretrained: str | os.PathLike | None = None, *,
                 method_config: dict[str, Any] | None = None,
                 device: str | torch.device = "cpu",
                 backbone_options: dict[str, Any] | None = None,
                 warn_random: bool = True) -> RetrievalMethod:
    """Build a registered method on a fresh backbone.

    Parameters
    ----------
    method : str
        A registered method name (``retrieval.methods.METHODS``).
    model : str
        open_clip model name.
    pretrained : str or path, optional
        ``None`` (random weights), an open_clip tag, a local weights file, or a **training run
        folder**: the method then starts from that run's fine-tuned CLIP (its selected weights;
        the run may be of another method, and must be of the same ``model``).
    method_config : dict, optional
    device : str or torch.device, default="cpu"
    backbone_options : dict, optional
        :func:`~retrieval.backbones.create_backbone` options (``force_quick_gelu``,
        ``precision``, ``open_clip_kwargs``); recorded in the run's ``config.json``. From a
        run folder, that run's options are used unless these are given.
    warn_random : bool, default=True
        Warn about random weights (see :func:`~retrieval.backbones.create_backbone`).
    """
    options = dict(backbone_options or {})
    if is_run_folder(pretrained):
        run_model, state, path = load_run_backbone_state(pretrained)
        if run_model != model:
            raise ValueError(f"--pretrained run {pretrained} trained model {run_model!r}, not "
                             f"{model!r}")
        # The run's own options, with what the caller gives on top.
        options = {**(read_run_config(pretrained).get("backbone_options") or {}), **options}
        backbone = create_backbone(model, None, device="cpu", warn_random=False, **options)
        missing, unexpected = backbone.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: the run's backbone does not fit {model!r} ({len(missing)} missing, "
                f"{len(unexpected)} unexpected keys, e.g. {list(missing)[:2] + list(unexpected)[:2]})")
        backbone.pretrained = str(path)
        logger.info("backbone of %s initialised from run %s (%s)", model, pretrained, path.name)
        backbone = backbone.to(device)
    else:
        backbone = create_backbone(model, pretrained, device=device, warn_random=warn_random,
                                   **options)
    instance = get_method(method).from_config(backbone, dict(method_config or {}))
    return instance.to(device)


def build_feature_method(method: str, features: Any, *,
                         method_config: dict[str, Any] | None = None,
                         device: str | torch.device = "cpu") -> RetrievalMethod:
    """Build a method's feature form: heads trained on precomputed features (spec 4.4).

    Parameters
    ----------
    method : str
        A method with a feature form (``retrieval.methods.features.FEATURE_METHODS``).
    features : FeatureSplit, FeatureSpace or dict
        A split of the features folder (or its manifest) the method will train on.
    method_config : dict, optional
    device : str or torch.device, default="cpu"
    """
    from retrieval.methods.features import FeatureSpace, get_feature_method

    method_class = get_feature_method(method)
    config = dict(method_config or {})
    if isinstance(features, FeatureSpace):
        instance = method_class.from_config(features, config)
    elif hasattr(features, "manifest"):
        instance = method_class.from_split(features, config)
    else:
        instance = method_class.from_config(FeatureSpace.from_manifest(features), config)
    return instance.to(device)


def cpu_state_dict(module: torch.nn.Module) -> dict[str, Any]:
    """``module.state_dict()`` detached on the CPU, extra states (dicts of tensors) included."""

    def to_cpu(value: Any) -> Any:
        if torch.is_tensor(value):
            return value.detach().cpu()
        if isinstance(value, dict):
            return {key: to_cpu(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(to_cpu(item) for item in value)
        return value

    return {key: to_cpu(value) for key, value in module.state_dict().items()}


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by the trainer with ``weights_only=True`` (clear errors)."""
    return load_tensor_file(path)


def load_method_state(method: RetrievalMethod, state: dict[str, torch.Tensor],
                      source: str = "checkpoint") -> None:
    """Load a method state dict, reporting missing/unexpected keys and shape mismatches."""
    expected = method.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    # Extra states (``get_extra_state``: data-sized method state) have no fixed shape.
    mismatched = [k for k in expected if k in state and torch.is_tensor(expected[k])
                  and (not torch.is_tensor(state[k]) or state[k].shape != expected[k].shape)]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{source} does not fit the model: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}), {len(mismatched)} "
            f"shape mismatches (e.g. {mismatched[:3]})")
    method.load_state_dict(state)


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a run folder (FileNotFoundError / CheckpointError if unusable)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a training run folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def _run_weights(run_dir: str | os.PathLike, which: str) -> tuple[Path, dict[str, Any]]:
    """(file, method state dict) of a run: the validation-selected weights or the last ones."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    best = Path(run_dir) / BEST_WEIGHTS
    if which == "best" and best.is_file():
        return best, load_checkpoint_file(best)
    if which == "best":
        logger.warning("%s has no %s: using the last epoch, not a validation-selected one",
                       run_dir, BEST_WEIGHTS)
    path = Path(run_dir) / LAST_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{run_dir} holds neither {BEST_WEIGHTS} nor {LAST_CHECKPOINT}: "
                              "the run never finished an epoch")
    state = load_checkpoint_file(path).get("method")
    if state is None:
        raise CheckpointError(f"{path} holds no method weights")
    return path, state


def load_run(run_dir: str | os.PathLike, *, which: str = "best",
             device: str | torch.device = "cpu") -> RetrievalMethod:
    """Rebuild a trained method from its run folder.

    The backbone is built with random weights from the recorded model name and then receives
    the trained weights, so the original pretrained file is not needed.

    Parameters
    ----------
    run_dir : path
    which : {"best", "last"}, default="best"
        ``model_best.pt`` (selected on validation) or the last checkpoint.
    """
    config = read_run_config(run_dir)
    missing = [key for key in ("method", "model") if key not in config]
    if missing:
        raise CheckpointError(f"{Path(run_dir) / CONFIG_FILE} lacks {missing}")
    if "features" in config:
        from retrieval.methods.features import FeatureSpace

        try:
            space = FeatureSpace(**config["features"])
        except TypeError as exc:
            raise CheckpointError(f"{Path(run_dir) / CONFIG_FILE}: bad 'features' entry "
                                  f"({exc})") from exc
        method = build_feature_method(config["method"], space,
                                      method_config=config.get("method_config"))
    else:
        # The recorded build options (QuickGELU, precision, open_clip overrides) rebuild the
        # very model that was trained; runs written before they were recorded have none.
        method = build_method(config["method"], config["model"], None,
                              method_config=config.get("method_config"), device="cpu",
                              backbone_options=config.get("backbone_options"),
                              warn_random=False)
    path, state = _run_weights(run_dir, which)
    load_method_state(method, state, source=str(path))
    if hasattr(method, "backbone"):
        # Features encoded from this model must name where its weights came from.
        method.backbone.pretrained = str(path)
    return method.to(device)


# --------------------------------------------------------------------------------------------
# Evaluation of a model on a split
# --------------------------------------------------------------------------------------------
def encode_split(method, split, *, batch_size: int = 256, verbose: bool = True,
                 max_images: int | None = None, amp: str = "off", num_workers: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode every unique image once and every caption of a split.

    Returns image embeddings, caption embeddings and the caption -> image ids (the clean
    ones when the split carries noise: evaluation always uses the true pairs). ``amp`` and
    ``num_workers`` are those of :func:`~retrieval.backbones.encode_images`.
    """
    if max_images is not None and split.n_images > max_images:
        split = split.subset(max_images)
    ids = split.clean_text_image_ids if split.clean_text_image_ids is not None \
        else split.text_image_ids
    images = encode_images(method, split.image_paths, batch_size=batch_size, verbose=verbose,
                           amp=amp, num_workers=num_workers)
    texts = encode_texts(method, split.captions, batch_size=batch_size, verbose=verbose, amp=amp)
    return images, texts, np.asarray(ids, dtype=np.int64)


def encode_to_features(method, split, folder: str | os.PathLike, *, batch_size: int = 256,
                       verbose: bool = True, extra_manifest: dict[str, Any] | None = None,
                       tokens: bool = False, image_tokens: bool = False, amp: str = "off",
                       num_workers: int = 0):
    """Encode a split and write it in the precomputed-feature format (spec 4.4).

    Evaluation can then be rerun from ``folder`` without the backbone
    (``load_features`` + :func:`retrieval.evaluation.retrieval_metrics`, or
    ``python -m retrieval evaluate --data-root folder``), and the feature forms of the methods
    train on it (``train --method NAME --data-root folder``).

    Parameters
    ----------
    method : RetrievalMethod or ClipBackbone
    split : RetrievalSplit
        When it carries dense captions (the synthetic set, ``dense_captions.jsonl``, or
        ``with_dense_captions``), their pooled embeddings are written too (``dense_pooled``:
        sentence chunks within the context, chunk embeddings averaged, as D2S does).
    folder : path
    tokens : bool, default=False
        Also write the captions' projected token states (``txt_tokens``, float16, and
        ``txt_len``), which D2S's feature form decodes. About ``L x d x 2`` bytes per caption.
    image_tokens : bool, default=False
        Also write the images' output patch tokens in the joint space (``img_tokens``: patch
        states after ``ln_post`` times the visual projection, float16), which AVSE's late-view
        fallback selects from. About ``N x d x 2`` bytes per image (ViT-B/32: 49 x 512).

    Returns
    -------
    Path
        The split's sub-folder.
    """
    import open_clip

    from retrieval.data import save_features

    backbone = method.backbone if hasattr(method, "backbone") else method
    images, texts, ids = encode_split(method, split, batch_size=batch_size, verbose=verbose,
                                      amp=amp, num_workers=num_workers)
    optional: dict[str, np.ndarray] = {}
    if getattr(split, "dense_captions", None) is not None:
        optional["dense_pooled"] = _encode_dense_captions(method, backbone, split.dense_captions,
                                                          batch_size=batch_size, verbose=verbose)
    if tokens:
        optional["txt_tokens"], optional["txt_len"] = _encode_text_tokens(
            backbone, split.captions, batch_size=batch_size, verbose=verbose)
    if image_tokens:
        optional["img_tokens"] = _encode_image_tokens(backbone, split.image_paths,
                                                      batch_size=batch_size, verbose=verbose)
    manifest = {
        "model": backbone.name, "weights": backbone.pretrained or "random",
        "method": getattr(method, "name", "backbone"), "open_clip": open_clip.__version__,
        "preprocess": repr(backbone.preprocess), "d": backbone.embed_dim,
        "w": backbone.vision_width, "context_length": backbone.context_length,
        "backbone_options": backbone.build_options,
        "weights_fingerprint": weights_fingerprint(backbone.model),
        "normalisation": "l2", "txt_tokens_space": "joint (ln_final states x text projection)",
        "img_tokens_space": "joint (ln_post patch states x visual projection, CLS excluded)",
        **(extra_manifest or {}),
    }
    return save_features(folder, split.name, images, texts, ids, manifest, **optional)


def _encode_dense_captions(method, backbone, dense_captions, *, batch_size: int,
                           verbose: bool) -> np.ndarray:
    from retrieval.methods.d2s import split_dense_caption

    chunks = [split_dense_caption(text, backbone.tokenizer, backbone.context_length - 2)
              for text in dense_captions]
    owner = np.repeat(np.arange(len(chunks)), [len(c) for c in chunks])
    flat = [piece for pieces in chunks for piece in pieces]
    embedded = encode_texts(method, flat, batch_size=batch_size, verbose=verbose)
    summed = np.zeros((len(chunks), embedded.shape[1]), dtype=np.float64)
    np.add.at(summed, owner, embedded)
    summed /= np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)
    return summed.astype(np.float32)


@torch.no_grad()
def _encode_image_tokens(backbone, image_paths, *, batch_size: int, verbose: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    from retrieval.data.torch_datasets import ImageDataset

    loader = DataLoader(ImageDataset(list(image_paths), backbone.preprocess),
                        batch_size=batch_size, shuffle=False)
    was_training = backbone.training
    backbone.eval()
    chunks = []
    for batch in tqdm(loader, desc="encode image tokens", disable=not verbose, leave=False):
        images = batch["image"] if isinstance(batch, dict) else batch
        _, tokens = backbone.image_tokens(images.to(backbone.device))
        chunks.append(tokens.float().cpu().numpy().astype(np.float16))
    backbone.train(was_training)
    return np.concatenate(chunks)


@torch.no_grad()
def _encode_text_tokens(backbone, captions, *, batch_size: int, verbose: bool
                        ) -> tuple[np.ndarray, np.ndarray]:
    from tqdm.auto import tqdm

    states, lengths = [], []
    was_training = backbone.training
    backbone.eval()
    for start in tqdm(range(0, len(captions), batch_size), desc="encode tokens",
                      disable=not verbose, leave=False):
        ids = backbone.tokenize(list(captions[start:start + batch_size])).to(backbone.device)
        _, tokens, valid = backbone.text_tokens(ids)
        states.append(tokens.float().cpu().numpy().astype(np.float16))
        lengths.append(valid.sum(dim=1).cpu().numpy().astype(np.int64))
    backbone.train(was_training)
    return np.concatenate(states), np.concatenate(lengths)


def evaluate_split(method, split, *, batch_size: int = 256, verbose: bool = True,
                   max_images: int | None = None, protocol: str = "full", amp: str = "off",
                   num_workers: int = 0, **metric_kwargs) -> dict[str, float]:
    """Retrieval metrics (spec 2.2) of a method or backbone on a split.

    A :class:`RetrievalMethod` evaluates itself (:meth:`RetrievalMethod.evaluate_split`: its
    own scoring, e.g. AVSE's multi-vector path); a bare backbone is scored on its pooled
    embeddings. ``protocol="1k-folds"`` averages five folds of 1,000 images (COCO 1K).
    """
    from retrieval.evaluation import protocol_metrics

    if isinstance(method, RetrievalMethod):
        return method.evaluate_split(split, batch_size=batch_size, verbose=verbose,
                                     max_images=max_images, protocol=protocol, amp=amp,
                                     num_workers=num_workers, **metric_kwargs)
    images, texts, ids = encode_split(method, split, batch_size=batch_size, verbose=verbose,
                                      max_images=max_images, amp=amp, num_workers=num_workers)
    return protocol_metrics(images, texts, ids, protocol, **metric_kwargs)


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------
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

    # ------------------------------------------------------------------ helpers
    def _amp_dtype(self, device: torch.device) -> torch.dtype | None:
        mode = self.config.amp
        if device.type != "cuda" or mode == "off":
            return None
        if mode == "auto":
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return torch.bfloat16 if mode == "bf16" else torch.float16

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
        from tqdm.auto import tqdm

        cfg = self.config
        device = context.device
        seed_everything(cfg.seed + context.rank)
        method = self.method.to(device)
        self._check_splits(train_split, val_split)
        last_path = self.output_dir / LAST_CHECKPOINT
        resuming = resume and last_path.is_file()
        if context.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if resuming:
                self._check_resumable()
            else:
                self._clear_run_folder()
            self._write_config()
        context.barrier()
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
        local_batch = cfg.batch_size // context.world_size
        workers = resolve_workers(cfg.num_workers, context.world_size)
        # The method decides what one training item is, per epoch (a caption pair by
        # default; D2S trains on one item per image in its first stage). The same dataset
        # object on several epochs shares one loader.
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
                    pin_memory=device.type == "cuda"))
            epoch_loaders.append(loaders[id(dataset)])
        optimizer = torch.optim.AdamW(
            method.parameter_groups(cfg.lr_backbone, cfg.lr_new, cfg.weight_decay))
        phases = method.training_phases(cfg.epochs)
        if sum(phases) != cfg.epochs or min(phases) < 1:
            raise ValueError(f"{method.name}.training_phases({cfg.epochs}) returned "
                             f"{phases}: positive epoch counts summing to {cfg.epochs}")
        ends = np.cumsum(phases)
        phase_steps = [sum(len(loader) for _, loader in epoch_loaders[a:b])
                       for a, b in zip([0, *ends[:-1]], ends)]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, phased_warmup_cosine(phase_steps, cfg.warmup_fraction))
        autocast, scaler = self._autocast(device)
        gather = make_gather(context)

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

        broadcast = make_broadcast(context)

        def epoch_context(epoch: int, epoch_log: dict[str, Any]) -> EpochContext:
            return EpochContext(
                epoch=epoch, epochs=cfg.epochs, train_split=train_split, device=device,
                autocast=lambda: self._autocast_context(device), gather=gather,
                rank=context.rank, world_size=context.world_size,
                make_loader=functools.partial(make_loader, epoch=epoch),
                verbose=cfg.verbose and context.is_main, broadcast=broadcast,
                log=epoch_log, report_clean_split=functools.partial(
                    correspondence_analysis, train_split, epoch_log))

        start_epoch, partial = 0, None
        if resuming:
            state = load_checkpoint_file(last_path)
            missing = [k for k in ("method", "optimizer", "scheduler", "epoch", "history",
                                   "best_rsum", "best_epoch") if k not in state]
            if missing:
                raise CheckpointError(f"{last_path} lacks {missing}: not a checkpoint of "
                                      "this trainer; restart the run (resume=False)")
            load_method_state(method, state["method"], source=str(last_path))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_epoch = int(state["epoch"]) + 1
            self.history_ = json.loads(state["history"])
            self.best_rsum_ = float(state["best_rsum"])
            self.best_epoch_ = int(state["best_epoch"])
            if state.get("partial"):
                partial = json.loads(state["partial"])
                if partial["epoch"] != start_epoch:
                    raise CheckpointError(f"{last_path}: a mid-epoch state of epoch "
                                          f"{partial['epoch']} after epoch {start_epoch - 1}")
            logger.info("resumed %s at epoch %d%s", last_path, start_epoch,
                        f", step {partial['steps']}" if partial else "")

        # DistributedDataParallel reduces gradients in buckets while the backward pass runs.
        # Its forward is the method's training step; parameters no process used in a step
        # (D2S's decoder in stage 1) keep no gradient, as in one process, so AdamW leaves
        # them alone. Wrapping also broadcasts rank 0's weights (after the resume) to all.
        step_module = _TrainingStep(method, gather)
        if context.distributed:
            step_module = DistributedDataParallel(
                step_module, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True, broadcast_buffers=False)
        trainable = [p for p in method.parameters() if p.requires_grad]

        if val_split is None and context.is_main and start_epoch < cfg.epochs:
            logger.warning("no validation split: the last epoch is kept (no selection)")
        end_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs,
                                                                     stop_after_epoch)
        global_step = sum(len(loader) for _, loader in epoch_loaders[:start_epoch]) + (
            partial["steps"] if partial else 0)
        log_every = max(1, int(cfg.log_every))
        if stop_after_step is not None and global_step >= stop_after_step:
            return self
        stopped = False
        for epoch in range(start_epoch, end_epoch):
            sampler, loader = epoch_loaders[epoch]
            steps_per_epoch = sampler.batches_per_epoch
            method.train()
            if partial is not None:
                # Continue a pre-empted epoch: the hooks' state (subsets, caches) came back
                # with the weights; every step reseeds its own random stream (step_seed).
                first_step, epoch_log = int(partial["steps"]), dict(partial["log"])
                sums = {k: torch.tensor(v, device=device, dtype=torch.float64)
                        for k, v in partial["sums"].items()}
                elapsed_before = float(partial["train_time_s"])
                method.resume_epoch(epoch, epoch_context(epoch, epoch_log))
                partial = None
            else:
                first_step, epoch_log, sums, elapsed_before = 0, {}, {}, 0.0
                # Per-epoch seeding makes a resumed run draw the same random numbers.
                torch.manual_seed(int(np.random.SeedSequence(
                    [cfg.seed, epoch, context.rank]).generate_state(1)[0]))
                method.on_epoch_start(epoch, epoch_context(epoch, epoch_log))
            sampler.set_epoch(epoch, first_batch=first_step)
            started = time.perf_counter()
            bad_losses = torch.zeros((), device=device)
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", initial=first_step,
                       total=steps_per_epoch, disable=not (cfg.verbose and context.is_main),
                       leave=False)
            step = first_step
            for batch in bar:
                batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                         for k, v in batch.items()}
                torch.manual_seed(step_seed(cfg.seed, epoch, context.rank, step))
                with autocast:
                    losses = step_module(batch, epoch)
                loss = losses["loss"]
                bad_losses += (~torch.isfinite(loss.detach())).float()
                optimizer.zero_grad(set_to_none=True)
                (scaler.scale(loss) if scaler is not None else loss).backward()
                if scaler is not None:
                    scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    trainable, cfg.grad_clip if cfg.grad_clip else float("inf"))
                if scaler is not None:
                    # GradScaler skips the update when it finds inf/nan gradients and lowers
                    # its scale; the schedule counts only the updates that happened. (The
                    # scaler reads its found-inf flag on the host itself: fp16 syncs anyway.)
                    scale_before = scaler.get_scale()
                    scaler.step(optimizer)
                    scaler.update()
                    if scaler.get_scale() >= scale_before:
                        scheduler.step()
                else:
                    optimizer.step()
                    scheduler.step()
                _accumulate(sums, "grad_norm", grad_norm)
                for key, value in losses.items():
                    _accumulate(sums, key, value)
                step += 1
                global_step += 1
                if step % log_every == 0 or step == steps_per_epoch:
                    # The only host synchronisation of the loop: every log_every steps.
                    _raise_if_non_finite(bad_losses, epoch, step)
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
                stopped = stop_after_step is not None and global_step >= stop_after_step
                if step < steps_per_epoch and (stopped or (
                        cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0)):
                    _raise_if_non_finite(bad_losses, epoch, step)
                    if context.is_main:
                        self._save_last(method, optimizer, scheduler, scaler, epoch - 1,
                                        partial={
                                            "epoch": epoch, "steps": step, "log": epoch_log,
                                            "sums": {k: float(v) for k, v in sums.items()},
                                            "train_time_s": elapsed_before
                                            + time.perf_counter() - started})
                    context.barrier()
                if stopped:
                    break
            bar.close()
            if stopped and step < steps_per_epoch:
                return self
            _raise_if_non_finite(bad_losses, epoch, step)
            method.on_epoch_end(epoch, epoch_context(epoch, epoch_log))
            record: dict[str, Any] = {
                "epoch": epoch,
                **{f"train_{k}": float(v) / max(1, steps_per_epoch) for k, v in sums.items()},
                **epoch_log,
                "train_time_s": elapsed_before + time.perf_counter() - started,
                **{f"lr_{group['name']}": group["lr"] for group in optimizer.param_groups
                   if not group["name"].endswith("_no_decay")},
            }
            if context.is_main:
                if val_split is not None:
                    metrics = evaluate_split(method, val_split,
                                             batch_size=cfg.eval_batch_size,
                                             verbose=False, max_images=cfg.val_max_images,
                                             amp="off" if self._amp_dtype(device) is None
                                             else cfg.amp, num_workers=workers)
                    record.update({f"val_{k}": v for k, v in metrics.items()})
                    improved = not (metrics["rsum"] <= self.best_rsum_)
                else:
                    improved = True
                if improved:
                    self.best_rsum_ = float(record.get("val_rsum", float("nan")))
                    self.best_epoch_ = epoch
                    torch.save(cpu_state_dict(method), self.output_dir / BEST_WEIGHTS)
                self.history_.append(record)
                self._save_last(method, optimizer, scheduler, scaler, epoch)
                logger.info("epoch %d: %s", epoch, ", ".join(
                    f"{k}={v:.4g}" for k, v in record.items()
                    if isinstance(v, float) and (k.startswith("train_") or k == "val_rsum")))
            context.barrier()
            if stopped:
                break
        best_path = self.output_dir / BEST_WEIGHTS
        if val_split is not None and best_path.is_file():
            # Leave the method as selected on validation, as load_run(...) would rebuild it.
            load_method_state(method, load_checkpoint_file(best_path), source=str(best_path))
        return self

    def _save_last(self, method, optimizer, scheduler, scaler, epoch: int, *,
                   partial: dict[str, Any] | None = None) -> None:
        """Write ``checkpoint_last.pt``: after epoch ``epoch``, plus a mid-epoch position
        (``partial``: the epoch in progress, its steps done, running sums and log)."""
        state = {
            "method": cpu_state_dict(method),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "epoch": epoch,
            "best_rsum": self.best_rsum_,
            "best_epoch": self.best_epoch_,
            # JSON text keeps the history loadable under weights_only=True.
            "history": json.dumps(self.history_),
            "partial": json.dumps(partial) if partial is not None else "",
        }
        tmp = self.output_dir / (LAST_CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.output_dir / LAST_CHECKPOINT)
        (self.output_dir / HISTORY_FILE).write_text(json.dumps(
            {"history": self.history_, "best_epoch": self.best_epoch_,
             "best_val_rsum": self.best_rsum_}, indent=2))
