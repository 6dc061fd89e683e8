"""``contrastive``: the CLIP fine-tuning baseline that every retrieval method must beat.

Both towers are fine-tuned end to end on image-caption pairs with the symmetric InfoNCE loss
(CLIP's own objective, with its learned temperature) or, optionally, the VSE++ hinge triplet
loss with hardest negatives; other captions of the same image are never negatives.

References
----------
.. [1] Radford et al., "Learning Transferable Visual Models From Natural Language
   Supervision", ICML 2021.
.. [2] Faghri, Fleet, Kiros, Fidler, "VSE++: Improving Visual-Semantic Embeddings with Hard
   Negatives", BMVC 2018.
"""

from __future__ import annotations

from typing import Any

import torch

from retrieval.backbones import ClipBackbone
from retrieval.losses import hinge_triplet, info_nce
from retrieval.methods.base import GatherFn, RetrievalMethod, register_method


@register_method
class ContrastiveFineTune(RetrievalMethod):
    """CLIP fine-tune with InfoNCE (default) or hinge triplet loss.

    Parameters
    ----------
    backbone : ClipBackbone
    loss : {"infonce", "triplet"}, default="infonce"
    temperature : float or None, default=None
        InfoNCE temperature; None uses (and trains) CLIP's ``logit_scale``, clamped at 100 as
        in CLIP.
    margin : float, default=0.2
        Triplet margin.
    sum_first_epoch : bool, default=True
        Triplet only: sum over negatives in the first epoch, hardest negative afterwards (the
        VSE++ schedule, which avoids collapse from random initialisation).
    """

    name = "contrastive"

    def __init__(self, backbone: ClipBackbone, loss: str = "infonce",
                 temperature: float | None = None, margin: float = 0.2,
                 sum_first_epoch: bool = True) -> None:
        super().__init__(backbone)
        if loss not in ("infonce", "triplet"):
            raise ValueError(f"loss must be 'infonce' or 'triplet', got {loss!r}")
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.loss = loss
        self.temperature = temperature
        self.margin = margin
        self.sum_first_epoch = sum_first_epoch

    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters, as passed to ``__init__``."""
        return {"loss": self.loss, "temperature": self.temperature, "margin": self.margin,
                "sum_first_epoch": self.sum_first_epoch}

    def training_step(self, batch: dict[str, torch.Tensor], gather: GatherFn,
                      epoch: int = 0) -> dict[str, torch.Tensor]:
        """InfoNCE (or triplet) loss of the global batch; see :meth:`RetrievalMethod.training_step`."""
        images = gather(self.encode_images(batch["image"]))
        texts = gather(self.encode_texts(batch["text"]))
        image_ids = gather(batch["image_index"])
        scores = images.float() @ texts.float().t()
        if self.loss == "infonce":
            if self.temperature is None:
                temperature = 1.0 / self.backbone.logit_scale.clamp(max=4.6052).exp()
            else:
                temperature = self.temperature
            loss = info_nce(scores, image_ids, temperature=temperature)
        else:
            hardest = not (self.sum_first_epoch and epoch == 0)
            loss = hinge_triplet(scores, image_ids, margin=self.margin, hardest=hardest)
        return {"loss": loss}
