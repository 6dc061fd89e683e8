"""The interface every retrieval method implements, and the registry ``--method`` reads.

A method is an ``nn.Module`` that owns a :class:`~retrieval.backbones.ClipBackbone` plus any new
modules, and tells the one :class:`~retrieval.training.Trainer` how to encode, score and compute
its losses on a batch (spec 1.3). The trainer handles everything else: data, optimiser,
schedule, mixed precision, distributed training, checkpoints and selection on validation.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from retrieval.backbones import ClipBackbone

#: Gathers a tensor across processes (identity in a single process); the local slice keeps
#: its gradient. Methods compute their batch loss on the gathered (global) batch.
GatherFn = Callable[[torch.Tensor], torch.Tensor]

METHODS: dict[str, type["RetrievalMethod"]] = {}

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

    Parameters
    ----------
    backbone : ClipBackbone
    """

    name: ClassVar[str] = ""
    #: True when a caption-image score is the dot product of one vector per side, so FAISS
    #: search is exact; multi-vector methods (AVSE) score through shortlist + rerank.
    is_single_vector: ClassVar[bool] = True

    def __init__(self, backbone: ClipBackbone) -> None:
        super().__init__()
        self.backbone = backbone

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
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings ``(B, d)``."""
        return F.normalize(self.backbone.encode_image(images), dim=-1)

    def encode_texts(self, token_ids: torch.Tensor) -> torch.Tensor:
        """L2-normalised caption embeddings ``(B, d)``."""
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

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called by the trainer before every epoch (no-op by default)."""

    def new_modules(self) -> list[nn.Module]:
        """Modules added by the method (trained with ``lr_new``); the backbone is not one."""
        return [module for name, module in self.named_children() if name != "backbone"]

    def parameter_groups(self, lr_backbone: float, lr_new: float, weight_decay: float
                         ) -> list[dict[str, Any]]:
        """AdamW parameter groups: backbone / new modules, each with and without decay."""
        backbone_ids = {id(p) for p in self.backbone.parameters()}
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
