"""Input checks shared by the evaluation modules: embeddings, caption -> image ids, K values.

Torch tensors are accepted everywhere (detached and moved to the CPU); torch is never imported.
"""

from __future__ import annotations

from typing import Any, Sequence, Tuple

import numpy as np

# Score blocks of the rank computations stay below this many float32 entries (64 MB), whatever
# the gallery size: the full n_images x n_texts matrix is never materialised.
_MAX_BLOCK_ENTRIES = 1 << 24


def _to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        try:
            x = x.numpy()
        except TypeError:
            # bfloat16 (and other dtypes numpy lacks) must be widened before the conversion.
            x = x.float().numpy()
    return np.asarray(x)


def _check_embeddings(x: Any, name: str) -> np.ndarray:
    """Validate a 2-D finite embedding matrix and return it L2-normalised in float32."""
    x = _to_numpy(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {x.shape}.")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}).")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}.")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise ValueError(f"{name} has non-finite values (first in row {int(np.argmin(finite))}).")
    norms = np.linalg.norm(x, axis=1)
    zero = norms == 0
    if zero.any():
        raise ValueError(
            f"{name} row {int(np.flatnonzero(zero)[0])} is a zero vector: it has no direction "
            "and cannot be L2-normalised."
        )
    return np.ascontiguousarray(x / norms[:, None], dtype=np.float32)


def _check_ids(text_image_ids: Any, n_images: int, n_texts: int) -> np.ndarray:
    """Validate the caption -> image map; every image needs at least one caption."""
    ids = _to_numpy(text_image_ids)
    if ids.ndim != 1:
        raise ValueError(f"text_image_ids must be 1-D, got shape {ids.shape}.")
    if ids.shape[0] != n_texts:
        raise ValueError(
            f"text_image_ids has {ids.shape[0]} entries but there are {n_texts} text embeddings."
        )
    if not (np.issubdtype(ids.dtype, np.integer) and ids.dtype != np.bool_):
        raise ValueError(f"text_image_ids must be integers, got dtype {ids.dtype}.")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_images):
        bad = int(np.flatnonzero((ids < 0) | (ids >= n_images))[0])
        raise ValueError(
            f"text_image_ids[{bad}] = {ids[bad]} is not an image index in [0, {n_images})."
        )
    counts = np.bincount(ids, minlength=n_images)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise ValueError(
            f"{missing.size} image(s) have no caption (first: image {int(missing[0])}); every image "
            "needs at least one caption for image-to-text recall."
        )
    return ids


def _check_ks(ks: Sequence[int]) -> Tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks}.")
    return ks


def _validate(
    image_embeddings: Any, text_embeddings: Any, text_image_ids: Any
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = _check_embeddings(image_embeddings, "image_embeddings")
    texts = _check_embeddings(text_embeddings, "text_embeddings")
    if images.shape[1] != texts.shape[1]:
        raise ValueError(
            f"image and text embeddings differ in dimension: {images.shape[1]} vs {texts.shape[1]}."
        )
    ids = _check_ids(text_image_ids, images.shape[0], texts.shape[0])
    return images, texts, ids

