"""Noisy correspondence: simulated caption shuffles and the published noise files (spec 3).

Noise touches the training split only. Two layouts exist:

* **caption level** (NCR, BiCro, L2RM): an int array of length ``N_c = 5 N_I``;
  ``map[c]`` is the image paired with caption ``c``, which is noisy iff
  ``map[c] != c // 5``. The five captions of an image are shuffled independently.
* **image level** (RCL): a permutation of length ``N_I``; every caption of image ``k``
  is paired with image ``map[k]``, so whole images are swapped. This is a different
  protocol; :func:`load_noise_file` expands it to captions and labels it so.

References
----------
.. [1] Huang, Z., Niu, G., Liu, X., Ding, W., Xiao, X., Wu, H., and Peng, X.
   "Learning with Noisy Correspondence for Cross-modal Matching." NeurIPS 2021.
.. [2] Hu, P., Huang, Z., Peng, D., Wang, X., and Peng, X. "Cross-Modal Retrieval with
   Partially Mismatched Pairs." IEEE TPAMI 2023 (RCL).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._split import RetrievalSplit, as_id_array

logger = logging.getLogger(__name__)

__all__ = ["shuffle_captions", "load_noise_file", "noisy_fraction", "add_noise", "save_noise_file"]

_PROTOCOLS = {
    "caption": "caption-level shuffle (NCR/BiCro/L2RM)",
    "image": "image-level swap (RCL: all captions of an image move together)",
}


def _n_noisy(ratio: float, n: int) -> int:
    # floor(r N) computed on a rounded product so that 0.29 * 100 gives 29, not 28.
    return int(math.floor(round(ratio * n, 9)))


def shuffle_captions(text_image_ids: np.ndarray, ratio: float, seed: int = 0) -> np.ndarray:
    """Simulate noisy correspondence by shuffling the images of a fraction of captions.

    Exactly ``floor(ratio * N)`` captions are picked with ``numpy.random.default_rng
    (seed)``; their image assignments are permuted among themselves, then every picked
    caption still pointing at its own image swaps targets with another picked caption.
    So exactly ``floor(ratio * N)`` captions end up paired with a wrong image and the
    number of captions per image is unchanged.

    Parameters
    ----------
    text_image_ids : array-like of int, shape (N,)
        Clean image index of each caption (e.g. ``c // 5``).
    ratio : float
        Noise ratio in ``[0, 1)``.
    seed : int, default=0
        Seed of the generator; the same seed gives the same map.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        The noisy map (a new array; the input is not modified).

    Raises
    ------
    ValueError
        If ``ratio`` is outside ``[0, 1)``, or no derangement exists: a single caption
        is picked, or more than half of the picked captions share one image (e.g. a tiny
        split with a single image).

    References
    ----------
    .. [1] Huang et al. "Learning with Noisy Correspondence for Cross-modal Matching."
       NeurIPS 2021.
    """
    ids = as_id_array(text_image_ids)
    if not (0.0 <= float(ratio) < 1.0):
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    n = ids.shape[0]
    k = _n_noisy(float(ratio), n)
    out = ids.copy()
    if k == 0:
        return out
    if k == 1:
        raise ValueError(
            f"ratio={ratio} picks a single caption of {n}, which cannot be shuffled among "
            "itself; use a larger ratio or split"
        )
    rng = np.random.default_rng(seed)
    picked = rng.choice(n, size=k, replace=False)
    own = ids[picked]
    new = own[rng.permutation(k)]
    for j in np.flatnonzero(new == own):
        if new[j] != own[j]:  # already repaired as the partner of an earlier swap
            continue
        # Partner m must own another image and not target j's image, so that both
        # end up noisy after the swap. A few random draws almost always succeed;
        # the full scan keeps degenerate inputs exact.
        partner = -1
        for m in rng.integers(0, k, size=32):
            if own[m] != own[j] and new[m] != own[j]:
                partner = int(m)
                break
        if partner < 0:
            ok = np.flatnonzero((own != own[j]) & (new != own[j]))
            if ok.size == 0:
                raise ValueError(
                    f"cannot make {k} captions noisy: too many of the picked captions "
                    f"belong to image {own[j]}"
                )
            partner = int(ok[rng.integers(ok.size)])
        new[j], new[partner] = new[partner], new[j]
    out[picked] = new
    return out


def noisy_fraction(noisy_ids: np.ndarray, clean_ids: np.ndarray) -> float:
    """Fraction of captions whose image differs from the clean one.

    Parameters
    ----------
    noisy_ids, clean_ids : array-like of int, shape (N,)

    Returns
    -------
    float
    """
    noisy_ids, clean_ids = np.asarray(noisy_ids), np.asarray(clean_ids)
    if noisy_ids.shape != clean_ids.shape:
        raise ValueError(f"shapes differ: {noisy_ids.shape} vs {clean_ids.shape}")
    return float(np.mean(noisy_ids != clean_ids)) if noisy_ids.size else 0.0


def load_noise_file(
    path: str | os.PathLike[str],
    n_images: int,
    level: str | None = None,
    captions_per_image: int = 5,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Read a published noise index file as a caption-level map.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy`` file: caption level (length ``captions_per_image * n_images``, e.g.
        BiCro's ``f30k_precomp_0.2.npy``) or image level (length ``n_images``, RCL's
        ``noise_inx_0.2.npy``).
    n_images : int
        Number of training images in "precomp" order (caption ``c`` belongs to image
        ``c // captions_per_image``).
    level : {"caption", "image"} or None
        The layout. ``None`` infers it from the length, which is only possible when
        ``captions_per_image > 1``.
    captions_per_image : int, default=5
    return_info : bool, default=False
        Also return a dict with ``level``, ``protocol``, ``noisy_fraction`` and ``path``.

    Returns
    -------
    map : numpy.ndarray of int64, shape (captions_per_image * n_images,)
        Image index of each caption. An image-level file is expanded with
        ``map[c] = file[c // captions_per_image]`` (RCL's whole-image protocol).
    info : dict
        Only when ``return_info`` is true.

    Raises
    ------
    FileNotFoundError
        If the file is missing.
    ValueError
        On a length matching neither layout, an ambiguous length without ``level``,
        a non-integer dtype, indices out of range, or an image-level file that is not
        a permutation.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"noise file not found: {path}")
    if n_images < 1 or captions_per_image < 1:
        raise ValueError("n_images and captions_per_image must be >= 1")
    if level not in (None, "caption", "image"):
        raise ValueError(f"level must be 'caption', 'image' or None, got {level!r}")
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 1:
        raise ValueError(f"{path}: expected a 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{path}: expected integer indices, got dtype {arr.dtype}")
    n_caps = captions_per_image * n_images
    length = arr.shape[0]
    if level is None:
        if n_caps == n_images:
            raise ValueError(
                f"{path}: with one caption per image the caption and image layouts have the "
                "same length; pass level='caption' or level='image'"
            )
        if length == n_caps:
            level = "caption"
        elif length == n_images:
            level = "image"
        else:
            raise ValueError(
                f"{path}: length {length} matches neither {n_caps} captions (caption level) "
                f"nor {n_images} images (image level)"
            )
    expected = n_caps if level == "caption" else n_images
    if length != expected:
        raise ValueError(f"{path}: {level}-level noise needs length {expected}, got {length}")
    if length and (arr.min() < 0 or arr.max() >= n_images):
        raise ValueError(f"{path}: indices must lie in [0, {n_images}), got [{arr.min()}, {arr.max()}]")
    arr = arr.astype(np.int64)
    if level == "image":
        if np.any(np.bincount(arr, minlength=n_images) != 1):
            raise ValueError(f"{path}: an image-level (RCL) noise file must be a permutation of 0..{n_images - 1}")
        caption_map = np.repeat(arr, captions_per_image)
    else:
        caption_map = arr
    clean = np.arange(n_caps, dtype=np.int64) // captions_per_image
    info = {
        "path": str(path),
        "level": level,
        "protocol": _PROTOCOLS[level],
        "noisy_fraction": noisy_fraction(caption_map, clean),
    }
    logger.info("noise file %s: %s, noisy fraction %.4f", path.name, info["protocol"], info["noisy_fraction"])
    return (caption_map, info) if return_info else caption_map


def save_noise_file(path: str | os.PathLike[str], noisy_ids: np.ndarray) -> Path:
    """Save a caption-level noise map as int64 ``.npy`` (the NCR/BiCro layout).

    Parameters
    ----------
    path : str or os.PathLike
    noisy_ids : array-like of int

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, as_id_array(noisy_ids, "noisy_ids"))
    return path


def add_noise(split: RetrievalSplit, ratio: float, seed: int = 0) -> RetrievalSplit:
    """Return ``split`` with a fraction ``ratio`` of its captions shuffled.

    Parameters
    ----------
    split : RetrievalSplit
        A training split; its clean pairing is the one that gets shuffled.
    ratio : float
        Noise ratio in ``[0, 1)``.
    seed : int, default=0

    Returns
    -------
    RetrievalSplit
        A copy whose ``text_image_ids`` are noisy and ``clean_text_image_ids`` clean.

    References
    ----------
    .. [1] Huang et al. "Learning with Noisy Correspondence for Cross-modal Matching."
       NeurIPS 2021.
    """
    clean = split.text_image_ids if split.clean_text_image_ids is None else split.clean_text_image_ids
    return split.with_noise(shuffle_captions(clean, ratio, seed))
