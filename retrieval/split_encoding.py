"""A model on a split: embeddings of every image and caption, feature folders, metrics.

:func:`encode_split` encodes a split once (every unique image, every caption) for evaluation;
:func:`encode_to_features` writes it in the precomputed-feature format (spec 4.4) with the
optional token arrays; :func:`evaluate_split` scores a method or a bare backbone. All of them
encode through :mod:`retrieval.encoding`'s one loop.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from retrieval.backbones import weights_fingerprint
from retrieval.data.dense import split_dense_caption
from retrieval.encoding import encode_image_tokens, encode_images, encode_text_tokens, \
    encode_texts

__all__ = ["encode_split", "encode_to_features", "evaluate_split"]


def encode_split(method, split, *, batch_size: int = 256, verbose: bool = True,
                 max_images: int | None = None, amp: str = "off", num_workers: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode every unique image once and every caption of a split.

    Returns image embeddings, caption embeddings and the caption -> image ids (the clean
    ones when the split carries noise: evaluation always uses the true pairs). ``amp`` and
    ``num_workers`` are those of :func:`~retrieval.backbones.encode_images`.
    """
    if max_images is not None and split.n_images > max_images:
        split = split.subset(max_images)
    ids = split.clean_text_image_ids if split.clean_text_image_ids is not None \
        else split.text_image_ids
    images = encode_images(method, split.image_paths, batch_size=batch_size, verbose=verbose,
                           amp=amp, num_workers=num_workers)
    texts = encode_texts(method, split.captions, batch_size=batch_size, verbose=verbose, amp=amp)
    return images, texts, np.asarray(ids, dtype=np.int64)


def encode_to_features(method, split, folder: str | os.PathLike, *, batch_size: int = 256,
                       verbose: bool = True, extra_manifest: dict[str, Any] | None = None,
                       tokens: bool = False, image_tokens: bool = False, amp: str = "off",
                       num_workers: int = 0):
    """Encode a split and write it in the precomputed-feature format (spec 4.4).

    Evaluation can then be rerun from ``folder`` without the backbone
    (``load_features`` + :func:`retrieval.evaluation.retrieval_metrics`, or
    ``python -m retrieval evaluate --data-root folder``), and the feature forms of the methods
    train on it (``train --method NAME --data-root folder``).

    Parameters
    ----------
    method : RetrievalMethod or ClipBackbone
    split : RetrievalSplit
        When it carries dense captions (the synthetic set, ``dense_captions.jsonl``, or
        ``with_dense_captions``), their pooled embeddings are written too (``dense_pooled``:
        sentence chunks within the context, chunk embeddings averaged, as D2S does).
    folder : path
    tokens : bool, default=False
        Also write the captions' projected token states (``txt_tokens``, float16, and
        ``txt_len``), which D2S's feature form decodes. About ``L x d x 2`` bytes per caption.
    image_tokens : bool, default=False
        Also write the images' output patch tokens in the joint space (``img_tokens``: patch
        states after ``ln_post`` times the visual projection, float16), which AVSE's late-view
        fallback selects from. About ``N x d x 2`` bytes per image (ViT-B/32: 49 x 512).

    Returns
    -------
    Path
        The split's sub-folder.
    """
    import open_clip

    from retrieval.data import save_features

    backbone = method.backbone if hasattr(method, "backbone") else method
    images, texts, ids = encode_split(method, split, batch_size=batch_size, verbose=verbose,
                                      amp=amp, num_workers=num_workers)
    optional: dict[str, np.ndarray] = {}
    if getattr(split, "dense_captions", None) is not None:
        optional["dense_pooled"] = _encode_dense_captions(method, backbone, split.dense_captions,
                                                          batch_size=batch_size, verbose=verbose,
                                                          amp=amp)
    if tokens:
        optional["txt_tokens"], optional["txt_len"] = encode_text_tokens(
            backbone, split.captions, batch_size=batch_size, verbose=verbose, amp=amp)
    if image_tokens:
        optional["img_tokens"] = encode_image_tokens(backbone, split.image_paths,
                                                     batch_size=batch_size, verbose=verbose,
                                                     amp=amp, num_workers=num_workers)
    manifest = {
        "model": backbone.name, "weights": backbone.pretrained or "random",
        "method": getattr(method, "name", "backbone"), "open_clip": open_clip.__version__,
        "preprocess": repr(backbone.preprocess), "d": backbone.embed_dim,
        "w": backbone.vision_width, "context_length": backbone.context_length,
        "backbone_options": backbone.build_options,
        "weights_fingerprint": weights_fingerprint(backbone.model),
        "normalisation": "l2", "txt_tokens_space": "joint (ln_final states x text projection)",
        "img_tokens_space": "joint (ln_post patch states x visual projection, CLS excluded)",
        **(extra_manifest or {}),
    }
    return save_features(folder, split.name, images, texts, ids, manifest, **optional)


def _encode_dense_captions(method, backbone, dense_captions, *, batch_size: int,
                           verbose: bool, amp: str = "off") -> np.ndarray:
    chunks = [split_dense_caption(text, backbone.tokenizer, backbone.context_length - 2)
              for text in dense_captions]
    owner = np.repeat(np.arange(len(chunks)), [len(c) for c in chunks])
    flat = [piece for pieces in chunks for piece in pieces]
    embedded = encode_texts(method, flat, batch_size=batch_size, verbose=verbose, amp=amp)
    summed = np.zeros((len(chunks), embedded.shape[1]), dtype=np.float64)
    np.add.at(summed, owner, embedded)
    summed /= np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)
    return summed.astype(np.float32)


def evaluate_split(method, split, *, batch_size: int = 256, verbose: bool = True,
                   max_images: int | None = None, protocol: str = "full", amp: str = "off",
                   num_workers: int = 0, **metric_kwargs) -> dict[str, float]:
    """Retrieval metrics (spec 2.2) of a method or backbone on a split.

    A :class:`RetrievalMethod` evaluates itself (:meth:`RetrievalMethod.evaluate_split`: its
    own scoring, e.g. AVSE's multi-vector path); a bare backbone is scored on its pooled
    embeddings. ``protocol="1k-folds"`` averages five folds of 1,000 images (COCO 1K).
    """
    from retrieval.evaluation import protocol_metrics

    if hasattr(method, "evaluate_split"):
        return method.evaluate_split(split, batch_size=batch_size, verbose=verbose,
                                     max_images=max_images, protocol=protocol, amp=amp,
                                     num_workers=num_workers, **metric_kwargs)
    images, texts, ids = encode_split(method, split, batch_size=batch_size, verbose=verbose,
                                      max_images=max_images, amp=amp, num_workers=num_workers)
    return protocol_metrics(images, texts, ids, protocol, **metric_kwargs)
