"""Cross-modal image-text retrieval on open_clip backbones, evaluated with FAISS.

Subpackages and modules: :mod:`retrieval.backbones` (open_clip models, checkpoints, token
access, freezing), :mod:`retrieval.data` (Karpathy JSON, folder, precomputed features, the
synthetic set, noisy correspondence), :mod:`retrieval.evaluation` (Recall@K both ways, rSum,
COCO 1K/5K, approximate indices, shortlist re-ranking), :mod:`retrieval.losses`,
:mod:`retrieval.training` (the one trainer) and :mod:`retrieval.methods`.

Nothing heavy is imported here, so ``import retrieval`` is cheap; import the submodules.
"""

__version__ = "0.1.0"
