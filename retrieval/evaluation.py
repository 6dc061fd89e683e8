"""Image-text retrieval evaluation: one import for recall, ranks, COCO folds, FAISS indices and re-ranking.

Every retrieval number of the project goes through the functions gathered here (spec
``retrieval.md`` sections 2.2-2.4 and 6), so that all methods are scored the same way. They live in
one module per concept -- :mod:`retrieval.metrics` (metrics and protocols), :mod:`retrieval.indices`
(exact and approximate FAISS indices), :mod:`retrieval.rerank` (multi-vector short list and
re-ranking), :mod:`retrieval.gpu_placement` (which GPUs an index uses) -- and are importable from
here under the same names:

* :func:`retrieval_metrics` -- R@K both directions, rSum, medR and meanR with **pessimistic ties**
  (a negative scoring equal to the positive, up to float rounding, ranks ahead of it). Recall comes from a FAISS search with
  the short-list rule of spec 2.3; ranks from a blocked matrix product (never a full score matrix).
* :func:`fold_metrics` and the dataset shortcuts :func:`coco_1k_metrics`, :func:`coco_5k_metrics`,
  :func:`flickr_1k_metrics`.
* :func:`build_index` / :func:`search` -- exact and approximate (HNSW, IVF, IVF-PQ) FAISS indices, on
  GPU when one is available; :func:`compare_to_exact` reports what an approximate index costs in
  task recall.
* :func:`shortlist_rerank`, :func:`rerank_metrics`, :func:`shortlist_recall_loss` -- the multi-vector
  path (spec 2.4): a pooled-vector FAISS short list, exact re-scoring of the candidates, and the recall
  lost against exhaustive scoring.

These modules stand on numpy and faiss only; torch tensors are accepted (converted with
``.detach().cpu().numpy()``) but torch is never imported here.

References
----------
.. [1] A. Karpathy and L. Fei-Fei, "Deep visual-semantic alignments for generating image descriptions",
   CVPR 2015 (the Flickr30K / COCO test splits and the 1K/5K protocols).
.. [2] F. Faghri, D. J. Fleet, J. R. Kiros and S. Fidler, "VSE++: Improving visual-semantic embeddings
   with hard negatives", BMVC 2018 (R@K, rSum, medR as used by the VSE family).
.. [3] J. Johnson, M. Douze and H. Jegou, "Billion-scale similarity search with GPUs", IEEE Trans. Big
   Data 2019 (FAISS).
.. [4] Y. A. Malkov and D. A. Yashunin, "Efficient and robust approximate nearest neighbor search using
   hierarchical navigable small world graphs", IEEE TPAMI 2020 (HNSW).
.. [5] H. Jegou, M. Douze and C. Schmid, "Product quantization for nearest neighbor search", IEEE TPAMI
   2011 (IVF, PQ).
"""

from __future__ import annotations

from retrieval.gpu_placement import resolve_faiss_gpus
from retrieval.indices import INDEX_KINDS, build_index, search
from retrieval.metrics import (
    coco_1k_metrics,
    coco_5k_metrics,
    compare_to_exact,
    flickr_1k_metrics,
    fold_metrics,
    protocol_metrics,
    retrieval_metrics,
    tie_tolerance,
)
from retrieval.rerank import RescoreFn, ScoreFn, exhaustive_metrics, rerank_metrics, \
    shortlist_recall_loss, shortlist_rerank  # noqa: F401 (the type aliases stay importable)

__all__ = [
    "INDEX_KINDS",
    "build_index",
    "search",
    "resolve_faiss_gpus",
    "tie_tolerance",
    "retrieval_metrics",
    "fold_metrics",
    "protocol_metrics",
    "coco_1k_metrics",
    "coco_5k_metrics",
    "flickr_1k_metrics",
    "compare_to_exact",
    "shortlist_rerank",
    "rerank_metrics",
    "exhaustive_metrics",
    "shortlist_recall_loss",
]
