"""Reading image files: RGB conversion that keeps 16-bit images right, errors that name the file,
and a scan that finds unreadable images before a run depends on them.

Real image folders hold the odd truncated JPEG or 16-bit PNG. PIL alone turns the first into
``OSError: image file is truncated`` with no path, deep inside a DataLoader worker, and the
second into an almost white picture (``convert("RGB")`` clips 16-bit values at 255).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._split import RetrievalSplit

logger = logging.getLogger(__name__)

__all__ = ["UnreadableImageError", "load_rgb", "find_unreadable_images", "drop_unreadable_images"]

# Modes holding more than 8 bits per pixel (PIL opens 16-bit grey PNGs as "I;16" or "I").
_WIDE_INTEGER_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class UnreadableImageError(OSError):
    """An image file that cannot be decoded (truncated, corrupt, not an image); names the file."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _WIDE_INTEGER_MODES:
        values = np.asarray(img, dtype=np.float64)
        # 16-bit data scales by 255/65535; an "I" image whose values fit in 8 bits is 8-bit
        # data in a wide container and is kept as is.
        if img.mode != "I" or values.max(initial=0) > 255:
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if values.max(initial=0) <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8),
                               mode="L").convert("RGB")
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file and convert it to 8-bit RGB.

    Grey, palette, RGBA and CMYK images convert as PIL does; 16-bit grey images are scaled to
    8 bits (not clipped), float images in [0, 1] are scaled to [0, 255].

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    PIL.Image.Image

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    UnreadableImageError
        When the file is truncated, corrupt or not an image; the message names it.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(img)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except Image.DecompressionBombError as exc:
        # PIL's guard against a header that claims billions of pixels (a decompression bomb,
        # or a corrupt header): the file is never decoded, so it is as unreadable as a
        # truncated one. Its message names no file.
        raise UnreadableImageError(
            f"cannot read image {path}: {exc} (PIL refuses images over "
            f"{2 * Image.MAX_IMAGE_PIXELS} pixels; pass --skip-bad-images, or "
            "skip_bad_images=True, to leave such images out)") from exc
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise UnreadableImageError(
            f"cannot read image {path}: {exc} (a truncated or corrupt file; pass "
            "--skip-bad-images, or skip_bad_images=True, to leave such images out)") from exc


def _failure(path: str) -> str | None:
    try:
        load_rgb(path)
    except (UnreadableImageError, FileNotFoundError) as exc:
        return str(exc)
    return None


def find_unreadable_images(paths: Sequence[str], *, workers: int | None = None,
                           verbose: bool = False) -> dict[int, str]:
    """Decode every image once and return the ones that fail: ``{position: reason}``.

    Parameters
    ----------
    paths : sequence of str
    workers : int, optional
        Decoding threads (PIL releases the GIL while it decodes); default: the CPUs.
    verbose : bool, default=False
        A progress bar.
    """
    from tqdm.auto import tqdm

    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        reasons = list(tqdm(pool.map(_failure, list(paths), chunksize=64), total=len(paths),
                            desc="check images", disable=not verbose, leave=False))
    return {i: reason for i, reason in enumerate(reasons) if reason is not None}


def drop_unreadable_images(split: RetrievalSplit, *, workers: int | None = None,
                           verbose: bool = False) -> tuple[RetrievalSplit, dict[str, str]]:
    """The split without its unreadable images (and their captions), and what was dropped.

    Every image is decoded once (:func:`find_unreadable_images`); each failure is logged with
    its reason, and the count is logged at the end. Evaluation on the returned split scores
    only the readable images, so its numbers are not those of the full benchmark split: the
    caller reports the count.

    Returns
    -------
    split : RetrievalSplit
    dropped : dict of str to str
        Path -> reason of every image left out.
    """
    bad = find_unreadable_images(split.image_paths, workers=workers, verbose=verbose)
    if not bad:
        return split, {}
    for position, reason in bad.items():
        logger.warning("skipping image %s: %s", split.image_paths[position], reason)
    logger.warning("split %r: skipped %d unreadable image(s) of %d, with their captions",
                   split.name, len(bad), split.n_images)
    return split.without_images(sorted(bad)), {split.image_paths[i]: r for i, r in bad.items()}
