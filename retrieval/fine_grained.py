"""Fine-grained evaluation: swapped-twin accuracy, for any method (spec 5.4).

Recall@K can be earned by recognising the category alone. Swapped twins test the finer
part: for each test image, its true caption and *twins* of it that change one attribute or
the category (:mod:`retrieval.rewriting`). An image counts as a success for a kind when its
true caption scores **strictly** above every twin of that kind (a tie fails: a model blind
to the swapped word scores both alike).

Twins come from the split: the synthetic set's object records (``split.objects``: the true
caption is the canonical description and the twins swap one object's colour or shape, seeded
per image), or published negatives (``split.negatives``, FDRD: four category swaps per
image).

Like SugarCrepe and Winoground, the accuracy is reported in both directions. *Image to text*
(``twin_i2t_{kind}``, also ``twin_acc_{kind}``): the image prefers its true caption to the
caption twins. *Text to image* (``twin_t2i_{kind}``): the true caption prefers its image to the
split's *twin images*, images whose objects differ from it in exactly one object's colour
(attribute) or shape (category) and nothing else, found from the object records. *Group*
(``twin_group_{kind}``): both right for the same image, over the images that have caption
twins and twin images. Splits without object records (FDRD) have no twin images: their
text-to-image and group scores are ``nan`` over 0 images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from retrieval.rewriting import TWIN_KINDS, positive_from_objects, twins_from_objects

__all__ = ["TwinSet", "split_twins", "twin_image_pairs", "twin_accuracy", "twin_scores_accuracy",
           "twin_direction_accuracy"]


@dataclass
class TwinSet:
    """The true caption and the swapped twins of each image of a split.

    Attributes
    ----------
    positives : list of str
        One true caption per image.
    twins : dict of str to list of list of str
        Per kind (``"attribute"``, ``"category"``), the twins of each image (possibly none).
    """

    positives: list[str]
    twins: dict[str, list[list[str]]]


def split_twins(split: Any, *, counts: dict[str, int] | None = None, seed: int = 0
                ) -> TwinSet | None:
    """The twins a split carries, or ``None`` when it carries none.

    Parameters
    ----------
    split : RetrievalSplit
    counts : dict, optional
        Twins per kind drawn from object records (default 2 attribute and 2 category twins).
    seed : int, default=0
        Seeds the draw per image (``default_rng([seed, image])``), so an image's twins do not
        depend on the order or subset of the split.
    """
    negatives = getattr(split, "negatives", None)
    if negatives is not None:
        positives = [split.captions[captions[0]] for captions in split.image_captions]
        return TwinSet(positives, {"category": [list(n) for n in negatives]})
    objects = getattr(split, "objects", None)
    if objects is None:
        return None
    counts = counts or {"attribute": 2, "category": 2}
    positives, twins = [], {kind: [] for kind in counts}
    for index, records in enumerate(objects):
        positives.append(positive_from_objects(records))
        drawn = twins_from_objects(records, counts, np.random.default_rng([seed, index]))
        for kind in counts:
            twins[kind].append(drawn[kind])
    return TwinSet(positives, twins)


def twin_scores_accuracy(positive_scores: np.ndarray, twin_scores: list[np.ndarray]
                         ) -> tuple[float, float, int]:
    """Accuracy (percent of images whose true caption beats all its twins strictly), win
    rate (percent of image-twin pairs won strictly) and the number of images with twins."""
    wins, pairs, images, successes = 0, 0, 0, 0
    for positive, twins in zip(np.asarray(positive_scores, dtype=np.float64), twin_scores):
        twins = np.asarray(twins, dtype=np.float64)
        if twins.size == 0:
            continue
        images += 1
        beaten = positive > twins
        successes += int(beaten.all())
        wins += int(beaten.sum())
        pairs += beaten.size
    if not images:
        return float("nan"), float("nan"), 0
    return 100.0 * successes / images, 100.0 * wins / pairs, images


def twin_image_pairs(objects: list[list[dict[str, Any]]]) -> dict[str, list[list[int]]]:
    """Per kind, the twin images of each image: the other images whose object records differ
    from its own in exactly one object's colour (``"attribute"``) or shape (``"category"``),
    every other object and the changed object's position and size equal.

    Parameters
    ----------
    objects : list of list of dict
        Object records of each image (``shape``, ``colour``, ``size``, ``position``).

    Returns
    -------
    dict of str to list of list of int
    """
    described = [sorted((str(o["position"]), str(o["size"]), str(o["shape"]), str(o["colour"]))
                        for o in records) for records in objects]
    result: dict[str, list[list[int]]] = {}
    for kind, field in (("attribute", 3), ("category", 2)):
        # Images sharing a description with one object's field left open differ at most
        # in that field of that object; equal descriptions are no twins.
        buckets: dict[tuple, list[int]] = {}
        for image, records in enumerate(described):
            for k in range(len(records)):
                key = tuple(tuple(None if (j == k and f == field) else value
                                  for f, value in enumerate(record))
                            for j, record in enumerate(records))
                buckets.setdefault(key, []).append(image)
        twins: list[set[int]] = [set() for _ in described]
        for members in buckets.values():
            for image in members:
                twins[image].update(other for other in members
                                    if described[other] != described[image])
        result[kind] = [sorted(found) for found in twins]
    return result


def twin_direction_accuracy(positive_scores: np.ndarray, caption_twin_scores: list[np.ndarray],
                            image_twin_scores: list[np.ndarray]) -> dict[str, float]:
    """Image-to-text, text-to-image and group accuracy from per-image scores (percent).

    Parameters
    ----------
    positive_scores : array ``(N,)``
        ``S(I_i, P_i)``: each image with its true caption.
    caption_twin_scores : list of arrays
        ``S(I_i, T)`` for the caption twins ``T`` of image ``i`` (possibly none).
    image_twin_scores : list of arrays
        ``S(J, P_i)`` for the twin images ``J`` of image ``i`` (possibly none).

    Returns
    -------
    dict
        ``i2t``, ``t2i``, ``group`` (percent of counted images; a tie fails; ``nan`` when
        none is counted) and ``images_i2t``, ``images_t2i``, ``images_group`` (the counts).
        The group counts an image with caption twins and twin images, and succeeds when
        both directions do.

    References
    ----------
    .. [1] Thrush et al., "Winoground: Probing Vision and Language Models for
       Visio-Linguistic Compositionality", CVPR 2022 (text, image and group scores).
    .. [2] Hsieh et al., "SugarCrepe: Fixing Hackable Benchmarks for Vision-Language
       Compositionality", NeurIPS 2023.
    """
    positive_scores = np.asarray(positive_scores, dtype=np.float64)
    if not len(caption_twin_scores) == len(image_twin_scores) == len(positive_scores):
        raise ValueError("one positive score, one list of caption-twin scores and one of "
                         "image-twin scores per image")
    outcomes: dict[str, list[bool]] = {"i2t": [], "t2i": [], "group": []}
    for positive, captions, images in zip(positive_scores, caption_twin_scores,
                                          image_twin_scores):
        captions, images = np.asarray(captions, np.float64), np.asarray(images, np.float64)
        text_ok = bool((positive > captions).all()) if captions.size else None
        image_ok = bool((positive > images).all()) if images.size else None
        if text_ok is not None:
            outcomes["i2t"].append(text_ok)
        if image_ok is not None:
            outcomes["t2i"].append(image_ok)
        if text_ok is not None and image_ok is not None:
            outcomes["group"].append(text_ok and image_ok)
    result: dict[str, float] = {}
    for name, values in outcomes.items():
        result[name] = 100.0 * sum(values) / len(values) if values else float("nan")
        result[f"images_{name}"] = float(len(values))
    return result


@torch.no_grad()
def twin_accuracy(method: Any, split: Any, *, batch_size: int = 256, verbose: bool = False,
                  max_images: int | None = None, seed: int = 0) -> dict[str, float]:
    """Swapped-twin accuracy of a method on a split (empty dict when it carries no twins).

    Returns ``twin_acc_{kind}`` (percent of images whose true caption scores strictly above
    all its twins of that kind), ``twin_win_{kind}`` (percent of image-twin pairs won) and
    ``twin_images_{kind}`` (images with at least one twin of that kind); and, as SugarCrepe
    and Winoground report, ``twin_i2t_{kind}`` (the same as ``twin_acc_{kind}``),
    ``twin_t2i_{kind}`` (percent of images whose true caption scores its own image strictly
    above every twin image of the split) and ``twin_group_{kind}`` (both right for the same
    image), with their counts ``twin_images_t2i_{kind}`` and ``twin_images_group_{kind}``
    (see :func:`twin_direction_accuracy`).
    """
    from retrieval.encoding import encode_images, encode_texts

    if not hasattr(split, "image_paths"):
        return {}  # precomputed features carry no captions to swap
    if max_images is not None and split.n_images > max_images:
        split = split.subset(max_images)
    twin_set = split_twins(split, seed=seed)
    if twin_set is None:
        return {}
    images = encode_images(method, split.image_paths, batch_size=batch_size, verbose=verbose)
    texts = list(twin_set.positives)
    owners: dict[str, list[slice]] = {}
    for kind, per_image in twin_set.twins.items():
        owners[kind] = []
        for twins in per_image:
            owners[kind].append(slice(len(texts), len(texts) + len(twins)))
            texts.extend(twins)
    embedded = encode_texts(method, texts, batch_size=batch_size, verbose=verbose)
    image_tensor, text_tensor = torch.from_numpy(images), torch.from_numpy(embedded)
    objects = getattr(split, "objects", None)
    # Published negatives (FDRD) come without twin images.
    image_twins = twin_image_pairs(objects) if objects is not None and \
        getattr(split, "negatives", None) is None else {}
    results: dict[str, float] = {}
    for kind in TWIN_KINDS:
        if kind not in owners:
            continue
        positive_scores, twin_scores, reverse_scores = [], [], []
        for index, rows in enumerate(owners[kind]):
            block = torch.cat([text_tensor[index:index + 1], text_tensor[rows]])
            scores = method.score(image_tensor[index:index + 1], block)[0].float().numpy()
            positive_scores.append(scores[0])
            twin_scores.append(scores[1:])
            others = image_twins[kind][index] if kind in image_twins else []
            reverse_scores.append(
                method.score(image_tensor[others], text_tensor[index:index + 1])[:, 0]
                .float().numpy() if others else np.zeros(0))
        accuracy, win_rate, counted = twin_scores_accuracy(np.array(positive_scores),
                                                           twin_scores)
        results[f"twin_acc_{kind}"] = accuracy
        results[f"twin_win_{kind}"] = win_rate
        results[f"twin_images_{kind}"] = float(counted)
        directions = twin_direction_accuracy(np.array(positive_scores), twin_scores,
                                             reverse_scores)
        for name in ("i2t", "t2i", "group"):
            results[f"twin_{name}_{kind}"] = directions[name]
        for name in ("t2i", "group"):
            results[f"twin_images_{name}_{kind}"] = directions[f"images_{name}"]
    return results
