"""The one batched encoding loop: images, captions and their token states.

Every encoder of the package (pooled image and caption embeddings, the images' patch tokens,
the captions' token states) runs through :func:`encode_batches`, which owns what each of them
needs: evaluation mode (restored afterwards), the device, the input dtype of a model built in
bf16/fp16, mixed precision (:func:`inference_autocast`), DataLoader workers, pinned memory and
the progress bar. :func:`amp_dtype` is the one reading of an ``amp`` setting, shared with the
trainer.

This module imports nothing else of the package, so :mod:`retrieval.backbones` can re-export
its encoders and every layer above can use it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

__all__ = ["AMP_MODES", "amp_dtype", "inference_autocast", "encode_batches", "encode_images",
           "encode_texts", "encode_image_tokens", "encode_text_tokens"]

AMP_MODES = ("off", "auto", "bf16", "fp16")


def amp_dtype(device: torch.device, amp: str = "off", *, on_cpu: bool = True
              ) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` setting on ``device`` (None: no autocast).

    ``"off"``: None; ``"auto"``: bf16 on a CUDA device that supports it, else fp16 there, and
    None on other devices; ``"bf16"`` / ``"fp16"``: that type, on the CPU only when ``on_cpu``
    (inference may use CPU autocast; training stays in fp32 there).
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    device = torch.device(device)
    if amp == "off" or (device.type != "cuda" and (amp == "auto" or not on_cpu)):
        return None
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return torch.bfloat16 if amp == "bf16" else torch.float16


def inference_autocast(device: torch.device, amp: str = "off"):
    """The autocast context of encoding under ``amp`` (see :func:`amp_dtype`)."""
    dtype = amp_dtype(torch.device(device), amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _backbone_of(encoder: nn.Module) -> nn.Module:
    # A method owns its backbone; a backbone is its own.
    return getattr(encoder, "backbone", encoder)


def _image_input_dtype(backbone: nn.Module) -> torch.dtype:
    # A model built in bf16/fp16 (open_clip precision) needs its pixels in the type of its
    # first convolution or linear layer (open_clip leaves embeddings and norms in fp32).
    for module in backbone.model.visual.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return module.weight.dtype
    return torch.float32


class _TokenBatches(Dataset):
    """Captions tokenised a batch at a time (one tokenizer call per batch, in the workers)."""

    def __init__(self, captions: Sequence[str], tokenizer: Callable, batch_size: int) -> None:
        self.captions, self.tokenizer, self.batch_size = list(captions), tokenizer, batch_size

    def __len__(self) -> int:
        return -(-len(self.captions) // self.batch_size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = index * self.batch_size
        part = self.captions[start:start + self.batch_size]
        return {"text": torch.as_tensor(self.tokenizer(part)),
                "index": torch.arange(start, start + len(part))}


@torch.no_grad()
def encode_batches(encoder: nn.Module, dataset: Dataset, step: Callable[..., Any], *,
                   key: str, batch_size: int | None, device: str | torch.device | None = None,
                   amp: str = "off", num_workers: int = 0, verbose: bool = True,
                   desc: str = "encode") -> list[np.ndarray]:
    """Run ``step`` over a dataset in batches and stack its outputs on the host.

    Parameters
    ----------
    encoder : nn.Module
        A backbone or a method; put in evaluation mode for the pass and restored after it.
    dataset : Dataset
        Items are dicts with the input under ``key`` and its position under ``"index"`` (or
        bare tensors); ``batch_size=None`` when the dataset's items are batches already.
    step : callable
        ``step(inputs, indices) -> tensor or tuple of tensors``, run under the autocast of
        ``amp``; ``inputs`` are on the device, pixels in the model's own input dtype.
    key : {"image", "text"}
    amp : {"off", "auto", "bf16", "fp16"}
        Mixed precision (:func:`inference_autocast`).

    Returns
    -------
    list of numpy.ndarray
        One array per output of ``step``, float32 (integer outputs keep their type), rows in
        dataset order.
    """
    from tqdm.auto import tqdm

    backbone = _backbone_of(encoder)
    device = torch.device(device) if device is not None else backbone.device
    input_dtype = _image_input_dtype(backbone) if key == "image" else None
    was_training = encoder.training
    encoder.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    outputs: list[list[np.ndarray]] = []
    start = 0
    try:
        for batch in tqdm(loader, desc=desc, disable=not verbose, leave=False):
            if isinstance(batch, dict):
                inputs, indices = batch[key], batch.get("index")
            else:
                inputs, indices = batch, None
            if indices is None:
                # Datasets of bare tensors: positions in the dataset (the loader keeps order).
                indices = torch.arange(start, start + inputs.shape[0])
            start += inputs.shape[0]
            inputs = inputs.to(device=device, dtype=input_dtype, non_blocking=True)
            with inference_autocast(device, amp):
                result = step(inputs, indices.to(device))
            result = result if isinstance(result, tuple) else (result,)
            if not outputs:
                outputs = [[] for _ in result]
            for chunks, value in zip(outputs, result):
                value = value.detach()
                chunks.append((value.float() if value.is_floating_point() else value)
                              .cpu().numpy())
    finally:
        encoder.train(was_training)
    return [np.concatenate(chunks) for chunks in outputs]


def _pooled(encoder, arrays: list[np.ndarray], normalize: bool) -> np.ndarray:
    if not arrays:
        return np.zeros((0, _backbone_of(encoder).embed_dim), np.float32)
    out = arrays[0].astype(np.float32, copy=False)
    if normalize:
        out = F.normalize(torch.from_numpy(out), dim=-1).numpy()
    return out


def encode_images(encoder, images, *, batch_size: int = 64,
                  device: str | torch.device | None = None, transform=None,
                  verbose: bool = True, num_workers: int = 0, normalize: bool = True,
                  amp: str = "off") -> np.ndarray:
    """Encode images in batches to a float32 array ``(N, d)``.

    Parameters
    ----------
    encoder : ClipBackbone or retrieval method
        Anything with ``encode_image(tensor) -> (B, d)``; a method's
        ``encode_images(tensor, indices=...)`` is used when present, with each image's position
        in ``images``.
    images : sequence of paths, or a torch Dataset returning image tensors
    transform : callable, optional
        PIL image -> tensor; defaults to the backbone's evaluation ``preprocess``.
    num_workers : int, default=0
        DataLoader workers decoding and transforming images.
    amp : {"off", "auto", "bf16", "fp16"}, default="off"
        Mixed precision of the forward pass (:func:`inference_autocast`). A model built in
        bf16 or fp16 encodes in its own precision either way.
    """
    method_encode = getattr(encoder, "encode_images", None)

    def step(batch, indices):
        if method_encode is not None:
            # Methods get each image's dataset index (per-image seeded evaluation views).
            return method_encode(batch, indices=indices)
        return encoder.encode_image(batch)

    arrays = encode_batches(encoder, _image_dataset(encoder, images, transform), step,
                            key="image", batch_size=batch_size, device=device, amp=amp,
                            num_workers=num_workers, verbose=verbose, desc="encode images")
    return _pooled(encoder, arrays, normalize)


def encode_texts(encoder, captions: Sequence[str], *, batch_size: int = 256,
                 device: str | torch.device | None = None, verbose: bool = True,
                 normalize: bool = True, amp: str = "off", num_workers: int = 0) -> np.ndarray:
    """Encode captions in batches to a float32 array ``(N, d)`` (see :func:`encode_images`)."""
    encode = getattr(encoder, "encode_texts", None) or encoder.encode_text
    arrays = encode_batches(encoder, _token_batches(encoder, captions, batch_size),
                            lambda ids, indices: encode(ids), key="text", batch_size=None,
                            device=device, amp=amp, num_workers=num_workers, verbose=verbose,
                            desc="encode texts")
    return _pooled(encoder, arrays, normalize)


def encode_image_tokens(backbone, images, *, batch_size: int = 64,
                        device: str | torch.device | None = None, verbose: bool = True,
                        num_workers: int = 0, amp: str = "off") -> np.ndarray:
    """The images' projected patch tokens ``(N, P, d)`` as float16 (CLS excluded)."""
    arrays = encode_batches(backbone, _image_dataset(backbone, images, None),
                            lambda batch, indices: backbone.image_tokens(batch)[1],
                            key="image", batch_size=batch_size, device=device, amp=amp,
                            num_workers=num_workers, verbose=verbose,
                            desc="encode image tokens")
    return arrays[0].astype(np.float16)


def encode_text_tokens(backbone, captions: Sequence[str], *, batch_size: int = 256,
                       device: str | torch.device | None = None, verbose: bool = True,
                       num_workers: int = 0, amp: str = "off"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The captions' projected token states ``(N, L, d)`` (float16) and valid lengths."""

    def step(ids, indices):
        _, tokens, valid = backbone.text_tokens(ids)
        return tokens, valid.sum(dim=1)

    tokens, lengths = encode_batches(
        backbone, _token_batches(backbone, captions, batch_size), step, key="text",
        batch_size=None, device=device, amp=amp, num_workers=num_workers, verbose=verbose,
        desc="encode tokens")
    return tokens.astype(np.float16), lengths.astype(np.int64)


def _image_dataset(encoder, images, transform) -> Dataset:
    if isinstance(images, Dataset):
        return images
    from retrieval.data.torch_datasets import ImageDataset

    return ImageDataset(list(images), transform or _backbone_of(encoder).preprocess)


def _token_batches(encoder, captions: Sequence[str], batch_size: int) -> Dataset:
    return _TokenBatches(captions, _backbone_of(encoder).tokenize, int(batch_size))
