"""Choosing among clusterings without labels.

* :class:`LabelFreeSelector` -- fits several candidate clusterings of multi-view data and keeps
  the one the label-free criteria rank best.
* Criteria, each ``(views, labels) -> score`` (higher is better) and never reading true labels:
  :func:`silhouette_criterion`, :func:`reference_cut_criterion`, :func:`view_cut_criterion`,
  :func:`consensus_criterion`, combined by :func:`rank_criteria`; the guard
  :func:`is_degenerate` (with :func:`size_entropy`).
* :func:`score_partitions`, :func:`select_partition` -- the same scoring and choice for
  partitions that already exist (no fitting).
* :func:`default_candidates` -- the default candidate set for a data size.
"""

from mvlearn_plus.model_selection._candidates import default_candidates
from mvlearn_plus.model_selection._criteria import (
    CRITERIA,
    consensus_criterion,
    is_degenerate,
    rank_criteria,
    reference_cut_criterion,
    silhouette_criterion,
    size_entropy,
    view_cut_criterion,
)
from mvlearn_plus.model_selection._selector import (
    LabelFreeSelector,
    score_partitions,
    select_partition,
)

__all__ = [
    "CRITERIA",
    "LabelFreeSelector",
    "consensus_criterion",
    "default_candidates",
    "is_degenerate",
    "rank_criteria",
    "reference_cut_criterion",
    "score_partitions",
    "select_partition",
    "silhouette_criterion",
    "size_entropy",
    "view_cut_criterion",
]
