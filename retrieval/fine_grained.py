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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from retrieval.rewriting import TWIN_KINDS, positive_from_objects, twins_from_objects

__all__ = ["TwinSet", "split_twins", "twin_accuracy", "twin_scores_accuracy"]


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


@torch.no_grad()
def twin_accuracy(method: Any, split: Any, *, batch_size: int = 256, verbose: bool = False,
                  max_images: int | None = None, seed: int = 0) -> dict[str, float]:
    """Swapped-twin accuracy of a method on a split (empty dict when it carries no twins).

    Returns ``twin_acc_{kind}`` (percent of images whose true caption scores strictly above
    all its twins of that kind), ``twin_win_{kind}`` (percent of image-twin pairs won) and
    ``twin_images_{kind}`` (images with at least one twin of that kind).
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
    results: dict[str, float] = {}
    for kind in TWIN_KINDS:
        if kind not in owners:
            continue
        positive_scores, twin_scores = [], []
        for index, rows in enumerate(owners[kind]):
            block = torch.cat([text_tensor[index:index + 1], text_tensor[rows]])
            scores = method.score(image_tensor[index:index + 1], block)[0].float().numpy()
            positive_scores.append(scores[0])
            twin_scores.append(scores[1:])
        accuracy, win_rate, counted = twin_scores_accuracy(np.array(positive_scores),
                                                           twin_scores)
        results[f"twin_acc_{kind}"] = accuracy
        results[f"twin_win_{kind}"] = win_rate
        results[f"twin_images_{kind}"] = float(counted)
    return results
