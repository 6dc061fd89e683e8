"""The shared losses of the retrieval methods (spec 0).

All take a similarity matrix ``scores`` of shape ``(B_img, B_txt)`` between the images and the
captions of a batch (possibly gathered across processes), the image id of every row and of
every column, and treat two pairs with the **same image id** as positives of each other: the
other captions of an image are never used as its negatives.

References
----------
.. [1] Faghri, Fleet, Kiros, Fidler, "VSE++: Improving Visual-Semantic Embeddings with Hard
   Negatives", BMVC 2018 (hinge triplet with hardest negatives).
.. [2] van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive Coding",
   2018; Radford et al., "Learning Transferable Visual Models From Natural Language
   Supervision", ICML 2021 (symmetric InfoNCE).
.. [3] Huang et al., "Learning with Noisy Correspondence for Cross-modal Matching", NeurIPS 2021
   (soft margins from soft correspondence labels).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def same_image_mask(row_image_ids: torch.Tensor, col_image_ids: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B_img, B_txt)`` mask, True where row and column show the same image."""
    return row_image_ids[:, None] == col_image_ids[None, :]


def _check(scores: torch.Tensor, row_ids: torch.Tensor, col_ids: torch.Tensor) -> None:
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D, got shape {tuple(scores.shape)}")
    if scores.shape != (row_ids.shape[0], col_ids.shape[0]):
        raise ValueError(f"scores {tuple(scores.shape)} do not match {row_ids.shape[0]} row ids "
                         f"and {col_ids.shape[0]} column ids")


def info_nce(scores: torch.Tensor, image_ids: torch.Tensor, text_image_ids: torch.Tensor | None
             = None, *, temperature: float | torch.Tensor = 0.05) -> torch.Tensor:
    """Symmetric InfoNCE with same-image masking, mean of both directions (spec 0, N).

    Parameters
    ----------
    scores : Tensor ``(B, B)``
        Cosine similarities; pair ``p`` is ``(row p, column p)`` (the diagonal).
    image_ids : Tensor ``(B,)``
        Image id of every pair.
    text_image_ids : Tensor ``(B,)``, optional
        Image id of every column; defaults to ``image_ids``.
    temperature : float or Tensor, default=0.05
        Softmax temperature ``tau``; pass ``1 / logit_scale.exp()`` for CLIP's learned one.

    Returns
    -------
    Tensor
        Scalar loss: cross-entropy of the rows and of the columns of ``scores / tau`` against
        the diagonal, with the off-diagonal entries of the same image removed.
    """
    text_image_ids = image_ids if text_image_ids is None else text_image_ids
    _check(scores, image_ids, text_image_ids)
    if scores.shape[0] != scores.shape[1]:
        raise ValueError("info_nce needs paired rows and columns (a square score matrix)")
    logits = scores / temperature
    same = same_image_mask(image_ids, text_image_ids)
    off_diagonal_same = same & ~torch.eye(len(image_ids), dtype=torch.bool, device=scores.device)
    logits = logits.masked_fill(off_diagonal_same, float("-inf"))
    target = torch.arange(len(image_ids), device=scores.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def hinge_triplet(scores: torch.Tensor, image_ids: torch.Tensor, text_image_ids: torch.Tensor |
                  None = None, *, margin: float | torch.Tensor = 0.2, hardest: bool = True,
                  exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Bidirectional hinge triplet loss, summed over the batch (spec 0, H).

    ``L = sum_p agg_{q: M_pq = 0} [margin - s_pp + s_pq]_+ + agg_{q: M_qp = 0}
    [margin - s_pp + s_qp]_+`` with ``agg`` the maximum (``hardest=True``, VSE++) or the sum.

    Parameters
    ----------
    scores : Tensor ``(B, B)``
        Similarities; pair ``p`` is the diagonal entry.
    image_ids : Tensor ``(B,)``
        Image id of every row (and of every column unless ``text_image_ids`` is given).
    text_image_ids : Tensor ``(B,)``, optional
    margin : float or Tensor ``(B,)``, default=0.2
        One margin, or per-pair margins (soft margins, spec 0 Hsoft).
    hardest : bool, default=True
        Hardest negative per anchor (VSE++) instead of the sum over negatives.
    exclude : Tensor ``(B, B)`` of bool, optional
        Further entries that are not negatives (e.g. a caption reused by two pairs, whose
        copies would otherwise be each other's hardest negative at zero gradient).

    Returns
    -------
    Tensor
        Scalar loss, summed over the batch as in the official codes.
    """
    text_image_ids = image_ids if text_image_ids is None else text_image_ids
    _check(scores, image_ids, text_image_ids)
    if scores.shape[0] != scores.shape[1]:
        raise ValueError("hinge_triplet needs paired rows and columns (a square score matrix)")
    positive = scores.diagonal()
    margin = torch.as_tensor(margin, dtype=scores.dtype, device=scores.device)
    if margin.ndim == 1:
        margin_rows, margin_cols = margin[:, None], margin[None, :]
    else:
        margin_rows = margin_cols = margin
    negatives = ~same_image_mask(image_ids, text_image_ids)
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {tuple(exclude.shape)}, scores "
                             f"{tuple(scores.shape)}")
        negatives = negatives & ~exclude
    # image p as anchor: captions q of other images; caption p as anchor: images q.
    cost_i2t = (margin_rows - positive[:, None] + scores).clamp(min=0) * negatives
    cost_t2i = (margin_cols - positive[None, :] + scores).clamp(min=0) * negatives
    if hardest:
        return cost_i2t.max(dim=1).values.sum() + cost_t2i.max(dim=0).values.sum()
    return cost_i2t.sum() + cost_t2i.sum()


MATCH_LOSSES = ("hinge", "infonce")


def check_match_loss(match_loss: str, temperature: float) -> None:
    """Refuse an unknown matching loss or a non-positive temperature, naming the value."""
    if match_loss not in MATCH_LOSSES:
        raise ValueError(f"match_loss must be one of {MATCH_LOSSES}, got {match_loss!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def matching_loss(scores: torch.Tensor, image_ids: torch.Tensor, *, kind: str = "hinge",
                  margin: float = 0.2, hardest: bool = True, temperature: float = 0.05,
                  score_range: float = 1.0) -> torch.Tensor:
    """The matching loss of a method that offers both: VSE++ hinge or InfoNCE.

    ``"hinge"`` is :func:`hinge_triplet` (the papers' loss of AVSE and D2S-VSE); ``"infonce"``
    is :func:`info_nce` on ``scores / score_range`` (so a score summed over ``q`` chunks lies in
    ``[-1, 1]`` like a cosine) at ``temperature``. The InfoNCE form is our option, not the
    papers': on small budgets the hinge with hardest negatives lowered validation rSum below the
    start (``benchmarks/results/retrieval_fall_ablation.md``), while InfoNCE adapters dipped less
    and recovered above it. The hinge is summed over the batch and InfoNCE is a mean, so other
    loss terms weigh about a batch size more against InfoNCE.
    """
    if kind == "infonce":
        return info_nce(scores / score_range, image_ids, temperature=temperature)
    return hinge_triplet(scores, image_ids, margin=margin, hardest=hardest)


def soft_margin_triplet(scores: torch.Tensor, image_ids: torch.Tensor, soft_labels: torch.Tensor,
                        text_image_ids: torch.Tensor | None = None, *, margin: float = 0.2,
                        exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Hardest-negative triplet with per-pair soft margins ``m(y) = margin (10^y - 1) / 9``.

    A pair believed clean (``y = 1``) keeps the full margin; a pair believed noisy (``y = 0``)
    gets none, so it stops pulling its image and caption together (spec 0, Hsoft).

    Parameters
    ----------
    scores : Tensor ``(B, B)``
    image_ids : Tensor ``(B,)``
    soft_labels : Tensor ``(B,)``
        Correspondence confidence of every pair, in ``[0, 1]``.
    text_image_ids : Tensor ``(B,)``, optional
    margin : float, default=0.2
        Margin of a fully clean pair.
    exclude : Tensor ``(B, B)`` of bool, optional
        Further entries that are not negatives (see :func:`hinge_triplet`).
    """
    soft_labels = torch.as_tensor(soft_labels, dtype=scores.dtype, device=scores.device)
    if soft_labels.shape != (scores.shape[0],):
        raise ValueError(f"soft_labels must have shape ({scores.shape[0]},), got "
                         f"{tuple(soft_labels.shape)}")
    if torch.any((soft_labels < 0) | (soft_labels > 1)):
        raise ValueError("soft_labels must lie in [0, 1]")
    return hinge_triplet(scores, image_ids, text_image_ids,
                         margin=soft_margins(soft_labels, margin), hardest=True, exclude=exclude)


def soft_margins(soft_labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Per-pair margins ``margin (10^y - 1) / 9`` of soft labels ``y`` in ``[0, 1]``.

    Not checked (that would read the labels back from the device): a training loop whose
    labels are in range by construction passes these to :func:`hinge_triplet`;
    :func:`soft_margin_triplet` checks them first.
    """
    return margin * (torch.pow(10.0, soft_labels) - 1.0) / 9.0
