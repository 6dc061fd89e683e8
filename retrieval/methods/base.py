"""The interface every retrieval method implements, and the registry ``--method`` reads.

A method is an ``nn.Module`` that owns a :class:`~retrieval.backbones.ClipBackbone` plus any new
modules, and tells the one :class:`~retrieval.training.Trainer` how to encode, score and compute
its losses on a batch (spec 1.3). The trainer handles everything else: data, optimiser,
schedule, mixed precision, distributed training, checkpoints and selection on validation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from retrieval.backbones import ClipBackbone
from retrieval.split_encoding import encode_split

#: Gathers a tensor across processes (identity in a single process); the local slice keeps
#: its gradient. Methods compute their batch loss on the gathered (global) batch.
GatherFn = Callable[[torch.Tensor], torch.Tensor]

METHODS: dict[str, type["RetrievalMethod"]] = {}


@dataclass
class EpochContext:
    """What a method's epoch hooks see (:meth:`RetrievalMethod.on_epoch_start` / ``_end``).

    Attributes
    ----------
    epoch : int
        0-based epoch about to run (start) or just run (end).
    epochs : int
        The run's whole training budget in epochs.
    train_split : RetrievalSplit
        The training split as trained on (noisy correspondence included).
    device : torch.device
    autocast : callable
        ``with context.autocast():`` runs a block under the run's mixed precision.
    gather : GatherFn
        Concatenates a tensor over processes (identity in one process).
    rank, world_size : int
    make_loader : callable
        ``make_loader(dataset=None, batch_size=None, collate_fn=None)``: a loader in dataset
        order with no augmentation. ``dataset=None`` iterates this epoch's training items
        (:meth:`RetrievalMethod.training_dataset`) built with the evaluation transform. In one
        process a pass sees every item once; under DDP each process sees its shard (a
        ``DistributedSampler`` without shuffling, whose last shard repeats a few items to
        equal length), so results must be gathered with their dataset indices and scattered
        back by index.
    verbose : bool
    broadcast : callable
        ``broadcast(tensor)`` returns rank 0's values of a tensor of the same shape and dtype on
        every process (identity in one process): one process decides (PCSR's mixture fits),
        every process follows.
    log : dict
        Scalars the method adds to this epoch's record in the run's history (``history.json``),
        e.g. subset sizes.
    report_clean_split : callable
        ``report_clean_split(name, predicted_clean)`` with a boolean array over the training
        captions: the trainer records its size and, when the split's noise was simulated or
        read from a file, its precision and recall against the true correspondence, as
        ``{name}_clean``, ``{name}_clean_precision``, ``{name}_clean_recall``. The method
        never sees the true labels: this is the only way they are used, for analysis.
    """

    epoch: int
    epochs: int
    train_split: Any
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    gather: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda tensor: tensor)
    rank: int = 0
    world_size: int = 1
    make_loader: Callable[..., Any] | None = None
    verbose: bool = False
    broadcast: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda tensor: tensor)
    log: dict[str, Any] = field(default_factory=dict)
    report_clean_split: Callable[[str, Any], None] = field(default=lambda name, mask: None)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

# Parameters that never get weight decay (spec 1.3): 1-D tensors (biases, norms, logit_scale)
# and embeddings / prompts, whose scale carries meaning.
_NO_DECAY_PARTS = ("token_embedding", "positional_embedding", "class_embedding", "prompt",
                   "logit_scale", "logit_bias")


def register_method(cls: type["RetrievalMethod"]) -> type["RetrievalMethod"]:
    """Class decorator adding a method to :data:`METHODS` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name`")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type["RetrievalMethod"]:
    """The method class registered under ``name`` (clear error listing the known ones)."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {sorted(METHODS)}") from None


class RetrievalMethod(nn.Module):
    """Base class of the retrieval methods.

    Subclasses set :attr:`name`, store their hyper-parameters in ``__init__`` (all
    JSON-serialisable keyword arguments, returned by :meth:`get_config`) and implement
    :meth:`training_step`. Single-vector methods get :meth:`encode_images`,
    :meth:`encode_texts` and :meth:`score` for free (pooled, L2-normalised CLIP embeddings and
    their dot product).

    Hooks a method may override: :meth:`training_dataset` and :meth:`collate` (what a training
    item is), :meth:`on_epoch_start` / :meth:`on_epoch_end` (passes over the training set,
    cached features), :meth:`evaluate_split` / :meth:`evaluate_embeddings` (its own scoring,
    used for validation, selection and ``evaluate``). State whose size depends on the data
    (cached features, per-sample banks) goes through PyTorch's ``get_extra_state`` /
    ``set_extra_state`` as a dict of tensors: it is then saved in every checkpoint and in
    ``model_best.pt`` and restored by ``load_run``, and read back with ``weights_only=True``.

    Parameters
    ----------
    backbone : ClipBackbone
    """

    name: ClassVar[str] = ""
    #: True when a caption-image score is the dot product of one vector per side, so FAISS
    #: search is exact; multi-vector methods (AVSE) score through shortlist + rerank.
    is_single_vector: ClassVar[bool] = True
    #: True when the method trains on the split's dense captions (``--dense-captions``).
    uses_dense_captions: ClassVar[bool] = False
    #: Learning rates ``train`` uses when ``--lr`` / ``--lr-new`` are not given (the paper's,
    #: adapted to the one AdamW trainer); None: the trainer's defaults (1e-5 and 1e-4).
    default_lr_backbone: ClassVar[float | None] = None
    default_lr_new: ClassVar[float | None] = None

    def __init__(self, backbone: ClipBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def random_start_warning(self) -> str | None:
        """What this method, as configured, needs that random weights do not give (logged as a
        warning when it is built on a backbone with random weights), or None."""
        return None

    def train(self, mode: bool = True) -> "RetrievalMethod":
        """Set training mode, keeping fully frozen towers in eval mode (spec 1.3).

        A tower whose parameters are all frozen is a fixed feature extractor: dropout or
        normalisation statistics must not change its output while the heads train.
        """
        super().train(mode)
        if mode:
            model = self.backbone.model
            towers = {"image": [model.visual]}
            if hasattr(model, "transformer"):
                towers["text"] = [model.transformer, model.token_embedding, model.ln_final]
            elif hasattr(model, "text"):
                towers["text"] = [model.text]
            for modules in towers.values():
                if not any(p.requires_grad for m in modules for p in m.parameters()):
                    for module in modules:
                        module.eval()
        return self

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters as a JSON-serialisable dict (``cls(backbone, **config)``)."""
        return {}

    @classmethod
    def from_config(cls, backbone: ClipBackbone, config: dict[str, Any]) -> "RetrievalMethod":
        return cls(backbone, **config)

    # ------------------------------------------------------------------ encoding and scoring
    def encode_images(self, images: torch.Tensor, indices: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """Image embeddings ``(B, D)`` (single-vector methods: L2-normalised, ``D = d``).

        ``indices`` are the images' positions in the dataset being encoded; a method whose
        evaluation is stochastic per image (AVSE's view centres) seeds from them, so an
        image's embedding does not depend on the batch it falls in.
        """
        return F.normalize(self.backbone.encode_image(images), dim=-1)

    def encode_texts(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Caption embeddings ``(B, D)`` (single-vector methods: L2-normalised)."""
        return F.normalize(self.backbone.encode_text(token_ids), dim=-1)

    def score(self, image_embeddings: torch.Tensor, text_embeddings: torch.Tensor
              ) -> torch.Tensor:
        """Similarities ``(N_img, N_txt)`` of a block of images and captions."""
        return image_embeddings @ text_embeddings.t()

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], gather: GatherFn,
                      epoch: int = 0) -> dict[str, torch.Tensor]:
        """Losses of one batch; the dict must hold ``"loss"`` (the one that is minimised).

        ``batch`` has ``image`` ``(b, 3, H, W)``, ``text`` ``(b, L)``, ``image_index`` and
        ``caption_index`` ``(b,)`` for the local part of the batch; ``gather`` concatenates a
        tensor across processes so the loss is computed on the global batch.
        """
        raise NotImplementedError

    def training_dataset(self, split: Any, transform: Callable | None, tokenizer: Callable,
                         *, epoch: int = 0, epochs: int = 1) -> torch.utils.data.Dataset:
        """The items training epoch ``epoch`` (of ``epochs``) iterates (default: one
        image-caption pair per caption, the same dataset every epoch).

        Items must be dicts of tensors (or other values) that :meth:`collate` batches; the
        trainer moves every tensor of the batch to the device. Return another dataset to train
        on other items (D2S stage 1: one item per image with its dense caption); returning the
        same object for several epochs lets them share one loader. The learning-rate schedule
        counts the steps of every epoch's dataset.
        """
        from retrieval.data.torch_datasets import PairDataset

        return PairDataset(split, transform, tokenizer)

    def training_phases(self, epochs: int) -> list[int]:
        """Epochs of each training phase; the learning rate warms up and decays in each.

        Default: one phase. D2S has two (its stages), so stage 2's new modules get their own
        warm-up.
        """
        return [epochs]

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch a list of training items (default: torch's default collation)."""
        return torch.utils.data.default_collate(items)

    def on_epoch_start(self, epoch: int, context: EpochContext | None = None) -> None:
        """Called by the trainer before every epoch, in training mode (no-op by default).

        ``context`` gives the training split, the device, the autocast context and a loader
        over the whole training set (see :class:`EpochContext`).
        """

    def resume_epoch(self, epoch: int, context: EpochContext | None = None) -> None:
        """Called instead of :meth:`on_epoch_start` when a run resumes in the middle of
        ``epoch`` from a mid-epoch checkpoint.

        The weights and the method's state dict (extra state included) are already restored
        to the step the checkpoint was written at; a method restores here whatever else
        ``on_epoch_start`` derived that the state dict does not hold (e.g. which schedule
        phase the epoch is in). Nothing is recomputed from the current weights.
        """

    def on_epoch_end(self, epoch: int, context: EpochContext | None = None) -> None:
        """Called by the trainer after every epoch's last step, before validation."""

    def starts_from_trained_weights(self) -> bool:
        """Whether the untrained method is a model worth keeping: then the trainer validates
        it as epoch 0 and keeps it unless an epoch beats it (``TrainConfig.evaluate_start``).

        True when the backbone starts from a weights file (``--pretrained RUN_FOLDER`` or a
        checkpoint); random weights are not a start to keep.
        """
        backbone = getattr(self, "backbone", None)
        pretrained = getattr(backbone, "pretrained", None)
        return pretrained is not None and Path(pretrained).is_file()

    def prepare_start_evaluation(self, context: EpochContext) -> None:
        """Called by the trainer on every process before it validates the starting weights
        (epoch 0), in evaluation mode (no-op by default).

        A method whose evaluation uses state it gathers while training (DCAR's mean training
        image) gathers it here from ``context``'s training set, so that the start is evaluated
        as the method evaluates itself.
        """

    # ------------------------------------------------------------------ evaluation
    def evaluate_split(self, split: Any, *, batch_size: int = 256, verbose: bool = True,
                       max_images: int | None = None, protocol: str = "full",
                       amp: str = "off", num_workers: int = 0,
                       **metric_kwargs: Any) -> dict[str, float]:
        """Retrieval metrics of this method on a split (used for validation, selection and
        ``evaluate``).

        Single-vector methods: exact FAISS search on :meth:`encode_images` /
        :meth:`encode_texts`. Multi-vector methods override :meth:`evaluate_embeddings`.

        Parameters
        ----------
        split : RetrievalSplit
        batch_size : int, default=256
        verbose : bool, default=True
        max_images : int, optional
            Only the first images of the split (and their captions).
        protocol : {"full", "1k-folds"}, default="full"
            ``"1k-folds"``: five folds of 1,000 consecutive images, metrics averaged (COCO 1K).
        amp : {"off", "auto", "bf16", "fp16"}, default="off"
            Mixed precision of the encoding (:func:`retrieval.backbones.inference_autocast`).
        num_workers : int, default=0
            DataLoader workers decoding the images.
        **metric_kwargs
            Passed to :func:`retrieval.evaluation.retrieval_metrics`.
        """
        images, texts, ids = encode_split(self, split, batch_size=batch_size, verbose=verbose,
                                          max_images=max_images, amp=amp,
                                          num_workers=num_workers)
        return self.evaluate_embeddings(images, texts, ids, protocol=protocol, **metric_kwargs)

    def evaluate_embeddings(self, images: Any, texts: Any, text_image_ids: Any, *,
                            protocol: str = "full", **metric_kwargs: Any) -> dict[str, float]:
        """Metrics from encoded galleries (rows of :meth:`encode_images` / ``encode_texts``)."""
        from retrieval.evaluation import protocol_metrics

        return protocol_metrics(images, texts, text_image_ids, protocol, **metric_kwargs)

    def backbone_modules(self) -> list[nn.Module]:
        """The CLIP towers of the method (trained with ``lr_backbone``); PCSR has two."""
        return [self.backbone]

    def new_modules(self) -> list[nn.Module]:
        """Modules added by the method (trained with ``lr_new``); the backbones are not."""
        towers = {id(module) for module in self.backbone_modules()}
        return [module for module in self.children() if id(module) not in towers]

    def parameter_groups(self, lr_backbone: float, lr_new: float, weight_decay: float
                         ) -> list[dict[str, Any]]:
        """AdamW parameter groups: backbone / new modules, each with and without decay."""
        backbone_ids = {id(p) for tower in self.backbone_modules()
                        for p in tower.parameters()}
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            is_backbone = id(parameter) in backbone_ids
            decay = parameter.ndim >= 2 and not any(part in name for part in _NO_DECAY_PARTS)
            groups.setdefault((is_backbone, decay), []).append(parameter)
        result = []
        for (is_backbone, decay), params in sorted(groups.items()):
            result.append({
                "params": params,
                "lr": lr_backbone if is_backbone else lr_new,
                "weight_decay": weight_decay if decay else 0.0,
                "name": f"{'backbone' if is_backbone else 'new'}{'' if decay else '_no_decay'}",
            })
        return result
