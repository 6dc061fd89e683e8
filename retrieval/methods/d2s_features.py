"""D2S-VSE's adapter form: the two stages on precomputed features of a frozen CLIP (spec 5.2).

``train --method d2s --data-root FEATURES`` trains this form when the features folder holds,
for its training split, the pooled dense-caption embeddings (``dense_pooled``) and the
captions' projected token states (``txt_tokens`` with ``txt_len``): ``python -m retrieval
encode --run RUN --data-root DATA --splits train,val,test --tokens --dense-captions FILE``.

* Stage 1: residual adapters on the pooled image and text embeddings, trained with the hinge
  loss between each image and its dense caption (one item per image).
* Stage 2: the student caption embedding ``s(T) = normalize(a_T(g(T)) + gamma normalize(r))``
  with ``r`` the prompt decoder over the caption's cached token states, hinge loss against the
  images plus the distillation towards the frozen stage-1 embedding of the image's dense
  caption. The teacher is the stage-1 text adapter applied to fixed features, so its targets
  are computed once at the start of stage 2 and saved with the run (as in the end-to-end form).

This is the spec's "precomputed form [ours]": the towers never change, so it measures what the
two-stage objective does on top of a fixed CLIP, at a fraction of the cost of fine-tuning.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from retrieval.methods.base import EpochContext, GatherFn
from retrieval.methods.d2s import DenseToSparseObjective, enter_epoch_stage, stage1_epoch_count
from retrieval.methods.features import (FeatureMethod, FeatureSpace, ResidualAdapter,
                                        register_feature_method)

logger = logging.getLogger(__name__)

__all__ = ["DenseToSparseAdapters"]


def _floats(array: Any) -> torch.Tensor:
    # A copy: feature arrays may be read-only memory maps.
    return torch.from_numpy(np.array(array, dtype=np.float32))


class _DenseItems(Dataset):
    """Stage 1: one item per image, its pooled embedding and its dense caption's."""

    def __init__(self, split: Any) -> None:
        self.images, self.dense = _floats(split.img_pooled), _floats(split.dense_pooled)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "dense": self.dense[index],
                "image_index": torch.tensor(int(index))}


class _TokenPairs(Dataset):
    """Stage 2: one item per caption, with its cached token states (memory-mapped rows)."""

    def __init__(self, split: Any) -> None:
        self.split = split
        self.images, self.texts = _floats(split.img_pooled), _floats(split.txt_pooled)
        self.ids = torch.from_numpy(np.asarray(split.text_image_ids, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.texts.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.ids[index]
        length = int(self.split.txt_len[index])
        return {"image": self.images[image], "text": self.texts[index],
                "tokens": _floats(self.split.txt_tokens[index]),
                "valid": torch.arange(self.split.txt_tokens.shape[1]) < length,
                "image_index": image, "caption_index": torch.tensor(int(index))}


@register_feature_method
class DenseToSparseAdapters(DenseToSparseObjective, FeatureMethod):
    """D2S-VSE on precomputed features: adapters, prompt decoder, dense-to-sparse distillation.

    Parameters
    ----------
    space : FeatureSpace
    stage1_fraction : float, default=1/3
        Share of ``--epochs`` for stage 1, as in the end-to-end form.
    margin : float, default=0.2
    sum_first_epoch : bool, default=True
        VSE++ schedule (sum over negatives in the first epoch, hardest afterwards).
    match_loss : {"hinge", "infonce"}, default="hinge"
    temperature : float, default=0.05
        As the end-to-end form.
    distill_weight : float, default=1.0
    distill : {"cosine", "l2"}, default="cosine"
    n_prompts : int, default=100
    decoder_depth, decoder_heads : int, default=4, 4
    dropout : float, default=0.1
    hidden : int, optional
        Adapter hidden width (default ``2 d``).

    References
    ----------
    .. [1] Z. Liu, Y. Feng, X. Liu, Z. Huang, J. Lv, "Aligning Information Capacity Between
       Vision and Language via Dense-to-Sparse Feature Distillation for Image-Text Matching",
       ICCV 2025.
    """

    name = "d2s"
    uses_dense_captions = True
    train_arrays = ("dense_pooled", "txt_tokens", "txt_len")
    eval_arrays = ("txt_tokens", "txt_len")

    def __init__(self, space: FeatureSpace, stage1_fraction: float = 1 / 3,
                 margin: float = 0.2, sum_first_epoch: bool = True,
                 match_loss: str = "hinge", temperature: float = 0.05,
                 distill_weight: float = 1.0, distill: str = "cosine", n_prompts: int = 100,
                 decoder_depth: int = 4, decoder_heads: int = 4, dropout: float = 0.1,
                 hidden: int | None = None) -> None:
        super().__init__(space)
        self.hidden = hidden
        self.image_adapter = ResidualAdapter(space.d, hidden)
        self.text_adapter = ResidualAdapter(space.d, hidden)
        self._setup_objective(
            space.d, stage1_fraction=stage1_fraction, margin=margin,
            sum_first_epoch=sum_first_epoch, match_loss=match_loss, temperature=temperature,
            distill_weight=distill_weight, distill=distill,
            n_prompts=n_prompts, decoder_depth=decoder_depth, decoder_heads=decoder_heads,
            dropout=dropout)
        self._datasets: list[tuple[int, Any, Dataset]] = []

    def get_config(self) -> dict[str, Any]:
        return {**self._objective_config(), "hidden": self.hidden}

    # ------------------------------------------------------------------ stages and data

    def training_dataset(self, split: Any, transform: Callable | None, tokenizer: Callable | None,
                         *, epoch: int = 0, epochs: int = 1) -> Dataset:
        """Stage 1: one item per image (dense caption); stage 2: caption pairs with tokens."""
        self.check_split(split)
        stage = 1 if epoch < stage1_epoch_count(self.stage1_fraction, epochs) else 2
        for known_stage, known_split, dataset in self._datasets:
            if known_stage == stage and known_split is split:
                return dataset
        dataset = _DenseItems(split) if stage == 1 else _TokenPairs(split)
        self._datasets.append((stage, split, dataset))
        return dataset

    def get_extra_state(self) -> dict[str, Any]:
        return {} if self.teacher_cache is None else {"teacher_cache": self.teacher_cache}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.teacher_cache = state.get("teacher_cache") if state else None

    def on_epoch_start(self, epoch: int, context: EpochContext | None = None) -> None:
        """At stage 2's first epoch, cache the stage-1 text adapter's dense-caption targets."""
        if context is None:
            return
        if enter_epoch_stage(self.planned_stage1_epochs, self.stage1_fraction, epoch,
                             context.epochs) == 1:
            self._set_stage(1)
            self.teacher_cache = None
            return
        self._set_stage(2)
        n_images = context.train_split.n_images
        if self.teacher_cache is not None:
            if len(self.teacher_cache) != n_images:
                raise ValueError(f"the cached teacher targets cover {len(self.teacher_cache)} "
                                 f"images, the training split has {n_images}")
            return
        with torch.no_grad():
            was_training = self.training
            self.eval()
            dense = _floats(context.train_split.dense_pooled).to(context.device)
            self.teacher_cache = self.text_adapter(dense).float().cpu()
            self.train(was_training)
        logger.info("D2S (features): stage 2 starts; teacher targets of %d images cached",
                    n_images)

    # ------------------------------------------------------------------ encoding
    def encode_images(self, images: torch.Tensor, indices: torch.Tensor | None = None
                      ) -> torch.Tensor:
        return self.image_adapter(images.float())

    def student_texts(self, pooled: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor
                      ) -> torch.Tensor:
        """``normalize(a_T(g) + gamma normalize(r))`` (stage 2) or ``a_T(g)`` (stage 1)."""
        adapted = self.text_adapter(pooled.float())
        if self.stage_now == 1:
            return adapted
        prompt = self.decoder(tokens.float(), valid)
        return F.normalize(adapted + self.gamma * F.normalize(prompt, dim=-1), dim=-1)

    def encode_text_features(self, split: Any, rows: np.ndarray) -> torch.Tensor:
        device = self.gamma.device
        pooled = _floats(split.txt_pooled[rows]).to(device)
        if self.stage_now == 1:
            return self.text_adapter(pooled)
        if split.txt_tokens is None or split.txt_len is None:
            raise ValueError(f"D2S stage 2 encodes captions from their token states; split "
                             f"{split.name!r} has no txt_tokens (encode with --tokens)")
        tokens = _floats(split.txt_tokens[rows]).to(device)
        valid = torch.arange(tokens.shape[1], device=device)[None, :] < torch.as_tensor(
            np.asarray(split.txt_len[rows]), device=device)[:, None]
        return self.student_texts(pooled, tokens, valid)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], gather: GatherFn,
                      epoch: int = 0) -> dict[str, torch.Tensor]:
        images = gather(self.encode_images(batch["image"]))
        image_ids = gather(batch["image_index"])
        if "dense" in batch:
            dense = gather(self.text_adapter(batch["dense"].float()))
            return self.dense_matching(images, dense, image_ids, epoch)
        texts = self.student_texts(batch["text"], batch["tokens"], batch["valid"])
        return self.sparse_losses(images, texts, gather(texts), image_ids,
                                  batch["image_index"], epoch)
