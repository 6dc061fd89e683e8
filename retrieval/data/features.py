"""Precomputed open_clip features (spec 4.4).

Layout (one folder per backbone; one sub-folder per split)::

    folder/
      manifest.json              model, weights source + sha256, open_clip version, preprocess,
                                 d, w, context length, normalisation, command, and
                                 "splits": {split: {"n_images", "n_captions", "arrays"}}
      test/img_pooled.npy        (N_I, d) float
      test/txt_pooled.npy        (N_T, d) float
      test/txt_img.npy           (N_T,) int64, caption -> image index
      test/img_tokens.npy        optional (N_I, N, w) float16
      test/txt_tokens.npy        optional (N_T, L, w) float16
      test/txt_len.npy           optional (N_T,) int64, valid tokens per caption
      test/dense_pooled.npy      optional (N_I, d) float, pooled dense-caption features
      train/...

Token arrays can be large (F30K B-16 output tokens: about 9 GB), so they are opened with
``mmap_mode='r'``. A folder belongs to one backbone: saving another model's features
into it, or loading it while expecting another model, is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._split import as_id_array

logger = logging.getLogger(__name__)

__all__ = ["FeatureSplit", "save_features", "load_features", "MANIFEST_FILE", "OPTIONAL_ARRAYS"]

MANIFEST_FILE = "manifest.json"
REQUIRED_ARRAYS = ("img_pooled", "txt_pooled", "txt_img")
#: Optional per-split arrays; the token arrays are stored as float16.
OPTIONAL_ARRAYS = ("img_tokens", "txt_tokens", "txt_len", "dense_pooled")
_FP16_ARRAYS = ("img_tokens", "txt_tokens")


@dataclass(eq=False)
class FeatureSplit:
    """Features of one split, as read by :func:`load_features`.

    Parameters
    ----------
    name : str
        Split name.
    img_pooled : numpy.ndarray, shape (n_images, d)
    txt_pooled : numpy.ndarray, shape (n_captions, d)
    txt_img : numpy.ndarray of int64, shape (n_captions,)
        Image index of each caption.
    manifest : dict
        The folder's manifest.
    img_tokens, txt_tokens, txt_len, dense_pooled : numpy.ndarray or None
        Optional arrays (memory-mapped when loaded with ``mmap=True``).
    clean_text_image_ids : numpy.ndarray of int64 or None
        The clean pairing when noise was applied (:meth:`with_noise`); for analysis only,
        never for training.
    """

    name: str
    img_pooled: np.ndarray
    txt_pooled: np.ndarray
    txt_img: np.ndarray
    manifest: dict = field(repr=False)
    img_tokens: np.ndarray | None = field(default=None, repr=False)
    txt_tokens: np.ndarray | None = field(default=None, repr=False)
    txt_len: np.ndarray | None = field(default=None, repr=False)
    dense_pooled: np.ndarray | None = field(default=None, repr=False)
    clean_text_image_ids: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_shapes(self.name, self.img_pooled, self.txt_pooled, self.txt_img, self.optional_arrays())
        if self.clean_text_image_ids is not None and self.clean_text_image_ids.shape != self.txt_img.shape:
            raise ValueError(f"{self.name}: clean_text_image_ids has shape {self.clean_text_image_ids.shape}, "
                             f"expected {self.txt_img.shape}")

    def with_noise(self, text_image_ids: np.ndarray) -> "FeatureSplit":
        """A copy whose captions are paired with ``text_image_ids`` (noisy correspondence).

        The current clean pairing is kept in ``clean_text_image_ids`` for analysis (spec 3);
        the feature arrays are shared, not copied.
        """
        noisy = np.asarray(text_image_ids)
        if noisy.shape != self.txt_img.shape or not np.issubdtype(noisy.dtype, np.integer):
            raise ValueError(f"{self.name}: a noisy pairing must be {self.txt_img.shape[0]} integer image "
                             f"indices, got shape {noisy.shape} of {noisy.dtype}")
        clean = self.txt_img if self.clean_text_image_ids is None else self.clean_text_image_ids
        return dataclasses.replace(self, txt_img=noisy.astype(np.int64), clean_text_image_ids=np.array(clean))

    @property
    def n_images(self) -> int:
        """Number of images."""
        return int(self.img_pooled.shape[0])

    @property
    def n_captions(self) -> int:
        """Number of captions."""
        return int(self.txt_pooled.shape[0])

    @property
    def model(self) -> str | None:
        """The open_clip model name recorded in the manifest."""
        return self.manifest.get("model")

    # Same name as RetrievalSplit's field, so evaluation code can take either.
    @property
    def text_image_ids(self) -> np.ndarray:
        """Alias of ``txt_img``."""
        return self.txt_img

    def optional_arrays(self) -> dict[str, np.ndarray]:
        """The optional arrays that are present, by name."""
        return {k: getattr(self, k) for k in OPTIONAL_ARRAYS if getattr(self, k) is not None}


def _check_shapes(
    where: str,
    img_pooled: np.ndarray,
    txt_pooled: np.ndarray,
    txt_img: np.ndarray,
    optional: Mapping[str, np.ndarray],
) -> None:
    if img_pooled.ndim != 2 or txt_pooled.ndim != 2:
        raise ValueError(
            f"{where}: img_pooled and txt_pooled must be 2-D, got {img_pooled.shape} and {txt_pooled.shape}"
        )
    n_img, d = img_pooled.shape
    n_txt = txt_pooled.shape[0]
    if txt_pooled.shape[1] != d:
        raise ValueError(f"{where}: img_pooled has d={d} but txt_pooled has d={txt_pooled.shape[1]}")
    if txt_img.shape != (n_txt,):
        raise ValueError(f"{where}: txt_img has shape {txt_img.shape}, expected ({n_txt},)")
    if n_txt and (txt_img.min() < 0 or txt_img.max() >= n_img):
        raise ValueError(f"{where}: txt_img must lie in [0, {n_img}), got [{txt_img.min()}, {txt_img.max()}]")
    expected_lead = {"img_tokens": n_img, "dense_pooled": n_img, "txt_tokens": n_txt, "txt_len": n_txt}
    expected_ndim = {"img_tokens": 3, "txt_tokens": 3, "txt_len": 1, "dense_pooled": 2}
    for name, arr in optional.items():
        if name not in expected_ndim:
            raise ValueError(f"{where}: unknown optional array {name!r}; known: {OPTIONAL_ARRAYS}")
        if arr.ndim != expected_ndim[name] or arr.shape[0] != expected_lead[name]:
            raise ValueError(
                f"{where}: {name} has shape {arr.shape}, expected {expected_ndim[name]}-D with "
                f"{expected_lead[name]} rows"
            )
    if "dense_pooled" in optional and optional["dense_pooled"].shape[1] != d:
        raise ValueError(f"{where}: dense_pooled has d={optional['dense_pooled'].shape[1]}, expected {d}")
    if "txt_tokens" in optional and "txt_len" in optional:
        if optional["txt_len"].size and optional["txt_len"].max() > optional["txt_tokens"].shape[1]:
            raise ValueError(f"{where}: txt_len exceeds the token length {optional['txt_tokens'].shape[1]}")


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"feature manifest not found: {path}")
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: the manifest must be a JSON object")
    return manifest


def _write_json_atomic(path: Path, obj: Any) -> None:
    # A crash mid-write must not leave a truncated manifest next to valid arrays.
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def save_features(
    folder: str | os.PathLike[str],
    split: str,
    img_pooled: np.ndarray,
    txt_pooled: np.ndarray,
    txt_img: np.ndarray,
    manifest: Mapping[str, Any],
    **optional_arrays: np.ndarray,
) -> Path:
    """Write the features of one split and merge its sizes into ``manifest.json``.

    Parameters
    ----------
    folder : str or os.PathLike
        The feature folder (created).
    split : str
        Split name; arrays go to ``folder/split/``.
    img_pooled : numpy.ndarray, shape (n_images, d)
    txt_pooled : numpy.ndarray, shape (n_captions, d)
    txt_img : array-like of int, shape (n_captions,)
    manifest : mapping
        Description of how the features were made; must contain ``"model"``. Other
        keys of an existing manifest are kept and updated.
    **optional_arrays : numpy.ndarray
        Any of ``img_tokens``, ``txt_tokens`` (stored as float16), ``txt_len``,
        ``dense_pooled``.

    Returns
    -------
    pathlib.Path
        The split's sub-folder.

    Raises
    ------
    ValueError
        On inconsistent shapes, an unknown optional array, a manifest without
        ``"model"``, or a folder that already holds another model's features.
    """
    folder = Path(folder)
    if not split or "/" in split or "\\" in split or split.startswith("."):
        raise ValueError(f"invalid split name {split!r}")
    if "model" not in manifest:
        raise ValueError("the manifest must name the backbone under 'model'")
    img_pooled = np.asarray(img_pooled)
    txt_pooled = np.asarray(txt_pooled)
    txt_img = as_id_array(txt_img, "txt_img")
    optional = {k: np.asarray(v) for k, v in optional_arrays.items() if v is not None}
    for name in _FP16_ARRAYS:
        if name in optional:
            optional[name] = optional[name].astype(np.float16, copy=False)
    if "txt_len" in optional:
        optional["txt_len"] = as_id_array(optional["txt_len"], "txt_len")
    _check_shapes(f"features of split {split!r}", img_pooled, txt_pooled, txt_img, optional)

    merged: dict[str, Any] = {}
    if (folder / MANIFEST_FILE).is_file():
        merged = _read_manifest(folder)
        if merged.get("model") != manifest["model"]:
            raise ValueError(
                f"{folder} holds features of model {merged.get('model')!r}; refusing to add "
                f"{manifest['model']!r} (use one folder per backbone)"
            )
        old, new = merged.get("weights_fingerprint"), manifest.get("weights_fingerprint")
        if old is not None and new is not None and old != new:
            raise ValueError(
                f"{folder} holds features made by other weights (fingerprint {old[:12]}, "
                f"{merged.get('weights')!r}) than these ({new[:12]}, "
                f"{manifest.get('weights')!r}); use one folder per set of weights, so that "
                "training and evaluation splits always share their weights")
    splits = dict(merged.get("splits", {}))
    merged.update({k: v for k, v in manifest.items() if k != "splits"})
    splits[split] = {
        "n_images": int(img_pooled.shape[0]),
        "n_captions": int(txt_pooled.shape[0]),
        "d": int(img_pooled.shape[1]),
        "arrays": sorted([*REQUIRED_ARRAYS, *optional]),
    }
    merged["splits"] = splits

    out = folder / split
    out.mkdir(parents=True, exist_ok=True)
    for name, arr in {"img_pooled": img_pooled, "txt_pooled": txt_pooled, "txt_img": txt_img, **optional}.items():
        np.save(out / f"{name}.npy", arr)
    _write_json_atomic(folder / MANIFEST_FILE, merged)
    logger.info("saved %s features of split %s to %s", manifest["model"], split, out)
    return out


def load_features(
    folder: str | os.PathLike[str],
    split: str = "test",
    expected_model: str | None = None,
    mmap: bool = True,
) -> FeatureSplit:
    """Read the features of one split.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder holding ``manifest.json``.
    split : str, default="test"
    expected_model : str, optional
        The backbone the caller will use; a manifest naming another model is refused,
        since features of different backbones live in different spaces.
    mmap : bool, default=True
        Open the optional (large) arrays with ``mmap_mode='r'``; pooled arrays are
        always read into memory.

    Returns
    -------
    FeatureSplit

    Raises
    ------
    FileNotFoundError
        If the manifest or an array file is missing.
    ValueError
        On another model's manifest, an unknown split, or shapes that disagree with
        each other or with the manifest.
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if expected_model is not None and manifest.get("model") != expected_model:
        raise ValueError(
            f"{folder / MANIFEST_FILE} describes features of model {manifest.get('model')!r}, "
            f"not {expected_model!r}; re-encode with the expected backbone"
        )
    splits = manifest.get("splits", {})
    if split not in splits:
        raise ValueError(f"{folder}: no split {split!r} in the manifest; available: {sorted(splits)}")
    sub = folder / split
    arrays: dict[str, np.ndarray] = {}
    for name in (*REQUIRED_ARRAYS, *OPTIONAL_ARRAYS):
        path = sub / f"{name}.npy"
        if not path.is_file():
            if name in REQUIRED_ARRAYS:
                raise FileNotFoundError(f"feature file not found: {path}")
            continue
        arrays[name] = np.load(path, mmap_mode="r" if (mmap and name in OPTIONAL_ARRAYS) else None)
    listed = splits[split].get("arrays")
    if listed is not None:
        absent = sorted(set(listed) - set(arrays))
        if absent:
            raise FileNotFoundError(f"{sub}: arrays listed in the manifest are missing: {absent}")
    arrays["txt_img"] = as_id_array(arrays["txt_img"], "txt_img")
    info = splits[split]
    for key, got in (("n_images", arrays["img_pooled"].shape[0]), ("n_captions", arrays["txt_pooled"].shape[0])):
        if key in info and int(info[key]) != int(got):
            raise ValueError(f"{sub}: manifest says {key}={info[key]} but the arrays have {got}")
    d = arrays["img_pooled"].shape[1] if arrays["img_pooled"].ndim == 2 else None
    if manifest.get("d") is not None and d is not None and int(manifest["d"]) != d:
        raise ValueError(f"{sub}: manifest says d={manifest['d']} but img_pooled has d={d}")
    return FeatureSplit(name=split, manifest=manifest, **arrays)
