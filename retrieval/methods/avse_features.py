"""AVSE's "late views" fallback on precomputed features (spec 4.4; a flagged deviation).

AVSE's views select patch tokens *before* the vision transformer, so on a frozen CLIP whose
features are cached they cannot be recomputed. The fallback selects the same radial-bias
subsets from the *output* patch tokens the features folder caches (``img_tokens``: patch states
after ``ln_post`` times the visual projection, written by ``encode --image-tokens``):

``u_v = normalize(a_I(g(I)) + gamma * normalize(P mean_{p in view v} x_p))``

with ``a_I`` a residual adapter on the pooled image embedding, ``P`` a linear map of the
view's mean output token and ``gamma`` a learnable scalar starting at 0 (at step 0 every view is
the adapted CLIP embedding, so training starts from CLIP's alignment). Captions: a residual
adapter on the pooled caption embedding. Score, loss, views and evaluation are AVSE's
(:class:`~retrieval.methods.avse.RadialViewMaxSim`). This is not the method of the paper: a
view of output tokens has seen the whole image through attention. It exists so that AVSE's
scoring and loss can be studied on cached features at adapter cost; the result says so.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from retrieval.methods.avse import RadialViewMaxSim
from retrieval.methods.base import GatherFn
from retrieval.methods.features import (FeatureMethod, FeatureSpace, ResidualAdapter,
                                        register_feature_method)

logger = logging.getLogger(__name__)

__all__ = ["LateViewAdapters"]


class _TokenImagePairs(Dataset):
    """One item per caption: its pooled embedding, its image's pooled embedding and patch
    tokens (rows of a memory map, read per item)."""

    def __init__(self, split: Any) -> None:
        self.split = split
        self.images = torch.from_numpy(np.array(split.img_pooled, dtype=np.float32))
        self.texts = torch.from_numpy(np.array(split.txt_pooled, dtype=np.float32))
        self.ids = np.asarray(split.text_image_ids, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.texts.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = int(self.ids[index])
        return {"image": self.images[image],
                "patches": torch.from_numpy(np.array(self.split.img_tokens[image],
                                                     dtype=np.float32)),
                "text": self.texts[index], "image_index": torch.tensor(image),
                "caption_index": torch.tensor(int(index))}


@register_feature_method
class LateViewAdapters(RadialViewMaxSim, FeatureMethod):
    """AVSE's feature form: radial-bias views of cached output tokens (a deviation).

    Parameters
    ----------
    space : FeatureSpace
    n_patches : int
        Patch tokens per image in the features (a square grid); taken from ``img_tokens``
        when built by :func:`~retrieval.training.build_feature_method` from a split.
    n_views, keep_train, keep_eval, view_mode, beta, chunk_sizes, margin, sum_first_epoch,
    match_loss, temperature, reg, reg_weight, reg_off_diagonal, eval_seed, scoring, k_short
        As :class:`~retrieval.methods.avse.AsymmetricVisualSemanticEmbedding`.
    hidden : int, optional
        Adapter hidden width (default ``2 d``).

    References
    ----------
    .. [1] Z. Liu, X. Liu, Z. Huang, J. Lv, "Asymmetric Visual Semantic Embedding Framework
       for Efficient Vision-Language Alignment", AAAI 2025.
    """

    name = "avse"
    train_arrays = ("img_tokens",)
    eval_arrays = ("img_tokens",)

    def __init__(self, space: FeatureSpace, n_patches: int, n_views: int = 2,
                 keep_train: float = 0.8, keep_eval: float = 0.9, view_mode: str = "nearest",
                 beta: float = 4.0, chunk_sizes: Sequence[int] | None = None,
                 margin: float = 0.2, sum_first_epoch: bool = True,
                 match_loss: str = "hinge", temperature: float = 0.05, reg: str = "code",
                 reg_weight: float = 1.0, reg_off_diagonal: float = 0.0051,
                 eval_seed: int = 0, scoring: str = "shortlist", k_short: int = 100,
                 hidden: int | None = None) -> None:
        super().__init__(space)
        self._setup_views(
            space.d, int(n_patches), n_views=n_views, keep_train=keep_train,
            keep_eval=keep_eval, view_mode=view_mode, beta=beta, chunk_sizes=chunk_sizes,
            margin=margin, sum_first_epoch=sum_first_epoch, match_loss=match_loss,
            temperature=temperature, reg=reg, reg_weight=reg_weight,
            reg_off_diagonal=reg_off_diagonal, eval_seed=eval_seed, scoring=scoring,
            k_short=k_short, where=f"the features of {space.model}")
        self.hidden = hidden
        self.image_adapter = ResidualAdapter(space.d, hidden)
        self.text_adapter = ResidualAdapter(space.d, hidden)
        self.view_projection = nn.Linear(space.d, space.d)
        self.gamma = nn.Parameter(torch.zeros(()))

    @classmethod
    def from_split(cls, split: Any, config: dict[str, Any]) -> "LateViewAdapters":
        if getattr(split, "img_tokens", None) is None:
            raise ValueError("AVSE's feature form (late views) selects cached output patch "
                             "tokens: the features need img_tokens (encode with "
                             "--image-tokens)")
        return cls(FeatureSpace.from_manifest(split.manifest),
                   **{"n_patches": int(split.img_tokens.shape[1]), **config})

    def get_config(self) -> dict[str, Any]:
        return {**self._view_config(), "n_patches": self.n_patches, "hidden": self.hidden}

    def check_split(self, split: Any, purpose: str = "train") -> None:
        super().check_split(split, purpose)
        if split.img_tokens.shape[1:] != (self.n_patches, self.space.d):
            raise ValueError(f"split {split.name!r} has image tokens of shape "
                             f"{tuple(split.img_tokens.shape[1:])}, the method expects "
                             f"({self.n_patches}, {self.space.d})")

    # ------------------------------------------------------------------ data
    def training_dataset(self, split: Any, transform: Callable | None, tokenizer: Callable | None,
                         *, epoch: int = 0, epochs: int = 1) -> Dataset:
        self.check_split(split)
        cached = getattr(self, "_pairs", None)
        if cached is None or cached[0] is not split:
            self._pairs = (split, _TokenImagePairs(split))
        return self._pairs[1]

    # ------------------------------------------------------------------ encoding
    def late_views(self, pooled: torch.Tensor, patches: torch.Tensor,
                   indices: torch.Tensor | None) -> torch.Tensor:
        """View embeddings ``(B, n_views, d)`` from pooled embeddings and output tokens."""
        batch = pooled.shape[0]
        chosen = self.view_patches(batch, indices, self.training, pooled.device)  # (B, V, k)
        width = patches.shape[-1]
        expanded = patches[:, None].expand(batch, self.n_views, -1, -1)
        selected = torch.gather(expanded, 2, chosen[..., None].expand(-1, -1, -1, width))
        view_means = F.normalize(self.view_projection(selected.mean(dim=2)), dim=-1)
        base = self.image_adapter(pooled.float())[:, None]
        return F.normalize(base + self.gamma * view_means, dim=-1)

    def encode_texts(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.text_adapter(token_ids.float())

    def encode_image_features(self, split: Any, start: int, stop: int) -> torch.Tensor:
        """Concatenated view embeddings ``(stop - start, n_views * d)``; evaluation views are
        seeded by the images' positions in the split."""
        device = self.gamma.device
        pooled = torch.from_numpy(np.array(split.img_pooled[start:stop], dtype=np.float32))
        patches = torch.from_numpy(np.array(split.img_tokens[start:stop], dtype=np.float32))
        views = self.late_views(pooled.to(device), patches.to(device),
                                torch.arange(start, stop, device=device))
        return views.reshape(stop - start, -1)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], gather: GatherFn,
                      epoch: int = 0) -> dict[str, torch.Tensor]:
        views = self.late_views(batch["image"], batch["patches"], None)
        images = gather(views.reshape(views.shape[0], -1))
        texts = gather(self.encode_texts(batch["text"]))
        losses = self.view_losses(images, texts, gather(batch["image_index"]), epoch)
        losses["gamma"] = self.gamma.detach().abs()
        return losses
