"""PCSR's ``adapter`` mode: two networks of adapters on a frozen CLIP's features (spec 5.3).

``train --method pcsr --data-root FEATURES`` trains this form on a folder written by ``python
-m retrieval encode``: no images, no backbone. Each network has one residual adapter per
modality, ``a(x) = normalize(x + W2 GELU(W1 LN(x)))`` with ``W1: d -> 2d``, on the pooled CLIP
embeddings, and its own pseudo-classifier; everything else (split, scores, threshold,
losses, schedule) is :class:`~retrieval.methods.pcsr.PseudoLabelRefinement`, shared with the
end-to-end method.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from retrieval.methods.base import EpochContext, GatherFn
from retrieval.methods.features import FeatureMethod, FeatureSpace, ResidualAdapter, \
    register_feature_method
from retrieval.methods.pcsr import NETWORKS, PseudoLabelRefinement, network_init, \
    refinement_settings, resolve_network_seed

__all__ = ["PseudoLabelRefinementAdapters"]


@register_feature_method
class PseudoLabelRefinementAdapters(PseudoLabelRefinement, FeatureMethod):
    """PCSR on precomputed features: two networks of residual adapters, co-teaching.

    Parameters
    ----------
    space : FeatureSpace
    adapter_init_std : float, default=0.01
        Standard deviation of the adapters' output layer at initialisation. Small and random,
        drawn for A and B from their own seeds (``network_seed``), so that the two networks
        are two learners from the first step (the official networks also sat on frozen
        precomputed features); 0 starts both at zero-shot CLIP (their hidden layers still
        differ).
    hidden : int, optional
        Adapter hidden width (default ``2 d``).
    **refinement
        The settings of :class:`~retrieval.methods.pcsr.PseudoLabelConsistencyRefinement`
        (``margin``, ``warmup_temperature``, ``entropy_weight``, ``gce_q``, ...).

    Notes
    -----
    The spec keeps the official schedule for this mode (5 warm-up and 50 co-training epochs,
    stages at 25 and 40): ``--epochs 55`` gives it, and shorter runs keep its fractions.

    References
    ----------
    .. [1] Liu, Liu, Feng, Huang, "Pseudo-label Consistency-guided Sample Refinement for Noisy
       Correspondence Learning", AAAI 2026.
    """

    name = "pcsr"
    default_lr_new = 2e-4

    def __init__(self, space: FeatureSpace, adapter_init_std: float = 0.01,
                 hidden: int | None = None, margin: float = 0.2,
                 warmup_temperature: float = 0.05, n_pseudo_classes: int = 256,
                 classifier_hidden: int = 256, entropy_weight: float = 10.0,
                 gce_q: float = 0.7, refine_min_similarity: float = 0.5,
                 ambiguous_replacement: bool = True, warmup_pc_loss: bool = True,
                 split_batch_size: int = 128, warmup_fraction: float = 1 / 11,
                 stage_fractions: tuple[float, float] | list[float] = (0.5, 0.8),
                 inference: str = "ensemble", match_loss: str = "infonce",
                 network_seed: int | None = None) -> None:
        super().__init__(space)
        if adapter_init_std < 0:
            raise ValueError(f"adapter_init_std must be >= 0, got {adapter_init_std}")
        self.adapter_init_std = float(adapter_init_std)
        self.hidden = hidden
        network_seed = resolve_network_seed(network_seed)
        self.image_adapters = nn.ModuleList()
        self.text_adapters = nn.ModuleList()
        for n in range(len(NETWORKS)):
            # Each network's adapters from its own seed: two learners from the first step.
            with network_init(network_seed, n):
                for adapters in (self.image_adapters, self.text_adapters):
                    adapter = ResidualAdapter(space.d, hidden)
                    if adapter_init_std:
                        nn.init.normal_(adapter.down.weight, std=adapter_init_std)
                    adapters.append(adapter)
        self._setup_refinement(space.d, **refinement_settings(locals()))

    def get_config(self) -> dict[str, Any]:
        return {"adapter_init_std": self.adapter_init_std, "hidden": self.hidden,
                **self._refinement_config()}

    # ------------------------------------------------------------------ encoding
    def encode_images(self, images: torch.Tensor, indices: torch.Tensor | None = None
                      ) -> torch.Tensor:
        return self._ensemble([adapter(images.float()) for adapter in self.image_adapters])

    def encode_texts(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self._ensemble([adapter(token_ids.float()) for adapter in self.text_adapters])

    def pair_embeddings(self, network: int, batch: dict[str, torch.Tensor]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.image_adapters[network](batch["image"].float()),
                self.text_adapters[network](batch["text"].float()))

    @torch.no_grad()
    def embed_training_set(self, network: int, context: EpochContext
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        # Pooled features are small: every process maps the whole set (identical results),
        # with no loader and no gathering.
        split = context.train_split
        device = self._device()
        was_training = self.training
        self.eval()
        try:
            parts = []
            for array, adapter in ((split.img_pooled, self.image_adapters[network]),
                                   (split.txt_pooled, self.text_adapters[network])):
                parts.append(torch.cat([
                    adapter(torch.from_numpy(np.array(array[a:a + 8192], dtype=np.float32))
                            .to(device)).cpu() for a in range(0, array.shape[0], 8192)]))
        finally:
            self.train(was_training)
        return parts[0], parts[1]

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], gather: GatherFn,
                      epoch: int = 0) -> dict[str, torch.Tensor]:
        return self.combined_step(batch, gather)
