"""PyTorch datasets over a :class:`~retrieval.data.RetrievalSplit` (imports torch).

* :class:`PairDataset` -- training pairs, one item per caption (caption ``c`` with image
  ``text_image_ids[c]``, noisy or not).
* :class:`ImageDataset` / :class:`TextDataset` -- each unique image / caption once, for
  encoding a gallery (spec 2.1: encode each test image once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ._split import RetrievalSplit
from .images import load_rgb

__all__ = ["PairDataset", "ImageDataset", "TextDataset", "load_rgb"]


def _to_tensor(img: Image.Image) -> torch.Tensor:
    # Fallback when no transform is given: CHW float in [0, 1], like torchvision's ToTensor.
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def _tokenize_one(tokenizer: Callable, caption: str) -> torch.Tensor:
    tokens = tokenizer([caption])
    tokens = torch.as_tensor(tokens)
    # open_clip tokenizers return (1, L) for a list of one string.
    if tokens.ndim == 2:
        tokens = tokens[0]
    return tokens.long()


class _ImageLoader:
    """Opens images, keeping up to ``cache_size`` decoded RGB images in an LRU cache."""

    def __init__(self, paths: Sequence[str], transform: Callable | None, cache_size: int) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[int, Image.Image] = OrderedDict()

    def __call__(self, index: int) -> torch.Tensor:
        img = self._cache.get(index)
        if img is None:
            img = load_rgb(self.paths[index])
            if self.cache_size > 0:
                self._cache[index] = img
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        out = self.transform(img) if self.transform is not None else _to_tensor(img)
        return torch.as_tensor(out, dtype=torch.float32) if not isinstance(out, torch.Tensor) else out.float()


class PairDataset(Dataset):
    """Image-caption training pairs, one item per caption.

    Parameters
    ----------
    split : RetrievalSplit
        The (possibly noisy) split; the pair of caption ``c`` is image
        ``split.text_image_ids[c]``.
    transform : callable or None
        PIL RGB image -> float tensor ``(3, H, W)`` (e.g. open_clip's preprocess).
        ``None`` converts to ``[0, 1]`` without resizing.
    tokenizer : callable
        List of strings -> ``LongTensor (n, L)`` (e.g. ``open_clip.get_tokenizer``).
    cache_size : int, default=0
        Keep that many decoded images in memory; useful for small sets, where each image
        is read once per caption. Each DataLoader worker holds its own cache.

    Notes
    -----
    Items are dicts ``{"image": FloatTensor (3, H, W), "text": LongTensor (L,),
    "image_index": int, "caption_index": int}``. The clean labels are deliberately
    not part of an item: training must never see them.
    """

    def __init__(
        self,
        split: RetrievalSplit,
        transform: Callable | None,
        tokenizer: Callable,
        cache_size: int = 0,
    ) -> None:
        self.split = split
        self.tokenizer = tokenizer
        self._images = _ImageLoader(split.image_paths, transform, cache_size)

    def __len__(self) -> int:
        return self.split.n_captions

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"caption index {index} out of range for {len(self)} captions")
        index %= len(self)
        image_index = int(self.split.text_image_ids[index])
        return {
            "image": self._images(image_index),
            "text": _tokenize_one(self.tokenizer, self.split.captions[index]),
            "image_index": image_index,
            "caption_index": index,
        }


class ImageDataset(Dataset):
    """Each image once, for encoding.

    Parameters
    ----------
    paths : sequence of str
        Image files (e.g. ``split.image_paths``).
    transform : callable or None
        As in :class:`PairDataset`.
    cache_size : int, default=0

    Notes
    -----
    Items are dicts ``{"image": FloatTensor (3, H, W), "index": int}``.
    """

    def __init__(self, paths: Sequence[str], transform: Callable | None, cache_size: int = 0) -> None:
        self._images = _ImageLoader(paths, transform, cache_size)

    def __len__(self) -> int:
        return len(self._images.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        return {"image": self._images(index), "index": index}


class TextDataset(Dataset):
    """Each caption once, for encoding.

    Parameters
    ----------
    captions : sequence of str
    tokenizer : callable
        As in :class:`PairDataset`.

    Notes
    -----
    Items are dicts ``{"text": LongTensor (L,), "index": int}``.
    """

    def __init__(self, captions: Sequence[str], tokenizer: Callable) -> None:
        self.captions = list(captions)
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        return {"text": _tokenize_one(self.tokenizer, self.captions[index]), "index": index}
