"""Methods on precomputed features: frozen towers, trained heads (spec 1.3, 4.4).

A features folder (``python -m retrieval encode``) holds pooled image and caption embeddings of
a frozen CLIP, and optionally token states and dense-caption embeddings. A method whose towers
stay frozen can train on it without loading images or a backbone: ``train --method NAME
--data-root FEATURES`` picks the method's *feature form*, registered here under the same name
as the method (:data:`FEATURE_METHODS`). The one :class:`~retrieval.training.Trainer` trains it
exactly as it trains the end-to-end methods (same schedule, selection on validation,
checkpoints, resume, DDP); only what a training item is changes.

Feature forms: ``contrastive`` (residual adapters on both pooled embeddings, InfoNCE: the
frozen-tower baseline), ``d2s`` (D2S-VSE's adapter form, :mod:`retrieval.methods.d2s_features`),
``pcsr`` (PCSR's ``adapter`` mode, :mod:`retrieval.methods.pcsr_features`) and ``avse`` (only the "late views" fallback of spec 4.4, a flagged deviation:
:mod:`retrieval.methods.avse_features`). DCAR's prompts live inside the towers, so it has none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from retrieval.losses import hinge_triplet, info_nce
from retrieval.methods.base import GatherFn, RetrievalMethod

__all__ = ["FEATURE_METHODS", "FeatureSpace", "FeatureMethod", "ResidualAdapter",
           "FeaturePairDataset", "AdapterContrastive", "register_feature_method",
           "get_feature_method"]

FEATURE_METHODS: dict[str, type["FeatureMethod"]] = {}
# Why a method has no feature form, for the error message.
_NO_FEATURE_FORM = {
    "dcar": "its prompts live inside the frozen towers",
}


def register_feature_method(cls: type["FeatureMethod"]) -> type["FeatureMethod"]:
    """Class decorator adding a feature form to :data:`FEATURE_METHODS` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name`")
    FEATURE_METHODS[cls.name] = cls
    return cls


def get_feature_method(name: str) -> type["FeatureMethod"]:
    """The feature form of method ``name`` (clear error saying why a method has none)."""
    try:
        return FEATURE_METHODS[name]
    except KeyError:
        reason = _NO_FEATURE_FORM.get(name, "it has no feature form")
        raise ValueError(
            f"method {name!r} cannot train on precomputed features: {reason}. Methods with a "
            f"feature form: {sorted(FEATURE_METHODS)}; train {name!r} on the images instead"
        ) from None


@dataclass(frozen=True)
class FeatureSpace:
    """Where the features come from: the manifest fields a feature method depends on.

    Attributes
    ----------
    model : str
        open_clip model that encoded the features.
    weights : str
        Where its weights came from (file, tag or run), as recorded in the manifest.
    d : int
        Joint embedding size of the pooled features (and of the token states).
    """

    model: str
    weights: str
    d: int
    fingerprint: str | None = None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "FeatureSpace":
        missing = [key for key in ("model", "d") if manifest.get(key) is None]
        if missing:
            raise ValueError(f"the features manifest lacks {missing}")
        return cls(model=str(manifest["model"]), weights=str(manifest.get("weights", "unknown")),
                   d=int(manifest["d"]), fingerprint=manifest.get("weights_fingerprint"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ResidualAdapter(nn.Module):
    """``a(x) = normalize(x + W2 GELU(W1 LN(x)))`` with a small ``W2`` (spec 5.2, 5.3).

    ``W2`` starts at zero, so at step 0 the adapter returns the (normalised) frozen CLIP
    embedding and training starts from CLIP's alignment.
    """

    def __init__(self, d: int, hidden: int | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, hidden or 2 * d)
        self.down = nn.Linear(hidden or 2 * d, d)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x + self.down(F.gelu(self.up(self.norm(x)))), dim=-1)


class FeaturePairDataset(Dataset):
    """One item per caption of a :class:`~retrieval.data.FeatureSplit`: its pooled caption
    embedding and its image's pooled embedding (the possibly noisy training pair)."""

    def __init__(self, split: Any) -> None:
        # Copies: feature arrays may be read-only memory maps.
        self.images = torch.from_numpy(np.array(split.img_pooled, dtype=np.float32))
        self.texts = torch.from_numpy(np.array(split.txt_pooled, dtype=np.float32))
        self.text_image_ids = torch.from_numpy(np.asarray(split.text_image_ids, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.texts.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.text_image_ids[index]
        return {"image": self.images[image], "text": self.texts[index], "image_index": image,
                "caption_index": torch.tensor(int(index))}


class FeatureMethod(RetrievalMethod):
    """Base class of the feature forms: heads on a frozen CLIP's precomputed embeddings.

    Same interface as :class:`RetrievalMethod` (``training_step``, ``training_dataset``, the
    epoch hooks, ``evaluate_split``, extra state), with a :class:`FeatureSpace` in place of the
    backbone. ``encode_images`` / ``encode_texts`` map pooled features through the heads.

    Parameters
    ----------
    space : FeatureSpace
    """

    #: Optional arrays of the features folder the method needs to train on a split...
    train_arrays: ClassVar[tuple[str, ...]] = ()
    #: ... and to evaluate on one.
    eval_arrays: ClassVar[tuple[str, ...]] = ()

    def __init__(self, space: FeatureSpace) -> None:
        nn.Module.__init__(self)
        self.space = space

    def train(self, mode: bool = True) -> "FeatureMethod":
        return nn.Module.train(self, mode)

    def starts_from_trained_weights(self) -> bool:
        """Always: the features come from a CLIP, and the adapters' last layer starts at zero,
        so untrained they reproduce its retrieval; a run that only makes validation worse then
        ends with that CLIP, as a ``--pretrained`` run does. (A head that does not start at
        the CLIP is still validated untrained; any epoch that helps beats it.)"""
        return True

    @classmethod
    def from_config(cls, space: FeatureSpace, config: dict[str, Any]) -> "FeatureMethod":
        return cls(space, **config)

    @classmethod
    def from_split(cls, split: Any, config: dict[str, Any]) -> "FeatureMethod":
        """Build for the features of ``split`` (sizes the config leaves open come from it)."""
        return cls.from_config(FeatureSpace.from_manifest(split.manifest), config)

    def check_split(self, split: Any, purpose: str = "train") -> None:
        """Refuse a features split that lacks what the method needs (``purpose`` "train" or
        "eval"), or that was encoded by another model or other weights."""
        if not hasattr(split, "img_pooled"):
            raise ValueError(f"the feature form of {self.name!r} works on precomputed features "
                             "(a folder written by `python -m retrieval encode`)")
        needed = self.train_arrays if purpose == "train" else self.eval_arrays
        missing = [name for name in needed if getattr(split, name) is None]
        if missing:
            raise ValueError(f"method {self.name!r} on features needs {missing} in split "
                             f"{split.name!r}; write them with `encode` (see its --help)")
        if split.model is not None and split.model != self.space.model:
            raise ValueError(f"split {split.name!r} holds features of {split.model!r}, the "
                             f"method was built for {self.space.model!r}")
        weights = split.manifest.get("weights")
        fingerprint = split.manifest.get("weights_fingerprint")
        if fingerprint is not None and self.space.fingerprint is not None:
            # The weights' own digest decides (a moved or renamed weights file is the same).
            if fingerprint != self.space.fingerprint:
                raise ValueError(
                    f"split {split.name!r} holds features made by other weights ({weights!r}, "
                    f"fingerprint {fingerprint[:12]}) than the method was trained on "
                    f"({self.space.weights!r}, fingerprint {self.space.fingerprint[:12]}); "
                    "encode the data with the training features' weights")
        elif weights is not None and str(weights) != self.space.weights:
            raise ValueError(f"split {split.name!r} holds features of weights {weights!r}, "
                             f"the method was trained on features of {self.space.weights!r}")
        if split.img_pooled.shape[1] != self.space.d:
            raise ValueError(f"split {split.name!r} has d={split.img_pooled.shape[1]}, the "
                             f"method expects d={self.space.d}")

    # ------------------------------------------------------------------ encoding
    def encode_images(self, images: torch.Tensor, indices: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """Pooled image features ``(B, d)`` -> embeddings (identity by default)."""
        return F.normalize(images.float(), dim=-1)

    def encode_texts(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Pooled caption features ``(B, d)`` -> embeddings (identity by default)."""
        return F.normalize(token_ids.float(), dim=-1)

    def _device(self) -> torch.device:
        return next((p.device for p in self.parameters()), torch.device("cpu"))

    def encode_image_features(self, split: Any, start: int, stop: int) -> torch.Tensor:
        """Image embeddings of images ``start:stop`` of a features split (override to use
        other arrays; the positions identify the images)."""
        pooled = np.array(split.img_pooled[start:stop], dtype=np.float32)
        return self.encode_images(torch.from_numpy(pooled).to(self._device()))

    def encode_text_features(self, split: Any, rows: np.ndarray) -> torch.Tensor:
        """Caption embeddings of rows ``rows`` of a features split (override to use tokens)."""
        pooled = np.array(split.txt_pooled[rows], dtype=np.float32)
        return self.encode_texts(torch.from_numpy(pooled).to(self._device()))

    # ------------------------------------------------------------------ training
    def training_dataset(self, split: Any, transform: Callable | None, tokenizer: Callable | None,
                         *, epoch: int = 0, epochs: int = 1) -> Dataset:
        """One item per caption (pooled features); ``transform`` / ``tokenizer`` are unused."""
        self.check_split(split)
        return self._pair_dataset(split)

    def _pair_dataset(self, split: Any) -> FeaturePairDataset:
        # One dataset object per split: epochs share a loader.
        cached = getattr(self, "_pairs", None)
        if cached is None or cached[0] is not split:
            self._pairs = (split, FeaturePairDataset(split))
        return self._pairs[1]

    # ------------------------------------------------------------------ evaluation
    def evaluate_split(self, split: Any, *, batch_size: int = 256, verbose: bool = True,
                       max_images: int | None = None, protocol: str = "full",
                       amp: str = "off", num_workers: int = 0,
                       **metric_kwargs: Any) -> dict[str, float]:
        """Metrics of the heads on a features split (exact FAISS search, spec 2.3).

        ``amp`` and ``num_workers`` concern image encoding, which features do not need."""
        images, texts, ids = self.encode_features(split, batch_size=batch_size,
                                                  max_images=max_images)
        return self.evaluate_embeddings(images, texts, ids, protocol=protocol, **metric_kwargs)

    @torch.no_grad()
    def encode_features(self, split: Any, *, batch_size: int = 1024,
                        max_images: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embeddings of every image and caption of a features split, and caption -> image."""
        self.check_split(split, "eval")
        was_training = self.training
        self.eval()
        try:
            ids = np.asarray(split.text_image_ids, dtype=np.int64)
            n_images = split.n_images if max_images is None else min(max_images, split.n_images)
            rows = np.flatnonzero(ids < n_images)
            images = [self.encode_image_features(split, a, min(a + batch_size, n_images)
                                                 ).reshape(min(batch_size, n_images - a), -1)
                      .float().cpu() for a in range(0, n_images, batch_size)]
            texts = [self.encode_text_features(split, rows[a:a + batch_size]).float().cpu()
                     for a in range(0, len(rows), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(images).numpy(), torch.cat(texts).numpy(), ids[rows]

    # ------------------------------------------------------------------ optimisation
    def new_modules(self) -> list[nn.Module]:
        return [module for _, module in self.named_children()]

    def parameter_groups(self, lr_backbone: float, lr_new: float, weight_decay: float
                         ) -> list[dict[str, Any]]:
        """Every parameter is a new module's (``lr_new``); no decay on 1-D tensors."""
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (decay if parameter.ndim >= 2 and "prompt" not in name else no_decay).append(
                    parameter)
        groups = [{"params": decay, "lr": lr_new, "weight_decay": weight_decay, "name": "new"},
                  {"params": no_decay, "lr": lr_new, "weight_decay": 0.0,
                   "name": "new_no_decay"}]
        return [group for group in groups if group["params"]]


@register_feature_method
class AdapterContrastive(FeatureMethod):
    """The contrastive baseline's feature form: residual adapters on frozen CLIP embeddings.

    Each modality gets ``a(x) = normalize(x + W2 GELU(W1 LN(x)))`` (``W1: d -> 2d``, ``W2``
    starting at zero, so training starts at zero-shot CLIP); the pair loss is InfoNCE with a
    learned temperature (initialised at CLIP's 0.01 and clamped at 0.01 from below), or the
    hinge triplet loss. This is the frozen-tower baseline of spec 1.3 ("heads on pooled
    features") and the adapter the PCSR ``adapter`` mode builds on.

    Parameters
    ----------
    space : FeatureSpace
    loss : {"infonce", "triplet"}, default="infonce"
    margin : float, default=0.2
    hidden : int, optional
        Adapter hidden width (default ``2 d``).

    References
    ----------
    Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
    ICML 2021. Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature
    Adapters", IJCV 2024.
    """

    name = "contrastive"

    def __init__(self, space: FeatureSpace, loss: str = "infonce", margin: float = 0.2,
                 hidden: int | None = None) -> None:
        super().__init__(space)
        if loss not in ("infonce", "triplet"):
            raise ValueError(f"loss must be 'infonce' or 'triplet', got {loss!r}")
        self.loss = loss
        self.margin = margin
        self.hidden = hidden
        self.image_adapter = ResidualAdapter(space.d, hidden)
        self.text_adapter = ResidualAdapter(space.d, hidden)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(100.0))))

    def get_config(self) -> dict[str, Any]:
        return {"loss": self.loss, "margin": self.margin, "hidden": self.hidden}

    def encode_images(self, images: torch.Tensor, indices: torch.Tensor | None = None
                      ) -> torch.Tensor:
        return self.image_adapter(images.float())

    def encode_texts(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.text_adapter(token_ids.float())

    def training_step(self, batch: dict[str, torch.Tensor], gather: GatherFn,
                      epoch: int = 0) -> dict[str, torch.Tensor]:
        images = gather(self.encode_images(batch["image"]))
        texts = gather(self.encode_texts(batch["text"]))
        image_ids = gather(batch["image_index"])
        scores = images @ texts.t()
        if self.loss == "infonce":
            temperature = 1.0 / self.logit_scale.clamp(max=4.6052).exp()
            loss = info_nce(scores, image_ids, temperature=temperature)
        else:
            loss = hinge_triplet(scores, image_ids, margin=self.margin, hardest=epoch > 0)
        return {"loss": loss}
