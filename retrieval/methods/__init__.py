"""Retrieval methods: one class each, sharing :class:`RetrievalMethod`'s interface.

Feature forms (heads trained on precomputed features of a frozen CLIP) are registered under the
method's name in :data:`FEATURE_METHODS` (:mod:`retrieval.methods.features`).
"""

from retrieval.methods.avse import AsymmetricVisualSemanticEmbedding
from retrieval.methods.avse_features import LateViewAdapters
from retrieval.methods.base import (METHODS, EpochContext, GatherFn, RetrievalMethod, get_method,
                                    register_method)
from retrieval.methods.contrastive import ContrastiveFineTune
from retrieval.methods.d2s import DenseToSparseDistillation
from retrieval.methods.dcar import DualPromptCategoryReweighting
from retrieval.methods.d2s_features import DenseToSparseAdapters
from retrieval.methods.features import (FEATURE_METHODS, AdapterContrastive, FeatureMethod,
                                        FeatureSpace, ResidualAdapter, get_feature_method,
                                        register_feature_method)
from retrieval.methods.pcsr import PseudoLabelConsistencyRefinement
from retrieval.methods.pcsr_features import PseudoLabelRefinementAdapters

__all__ = ["FEATURE_METHODS", "METHODS", "AdapterContrastive", "AsymmetricVisualSemanticEmbedding",
           "ContrastiveFineTune", "DenseToSparseAdapters", "DenseToSparseDistillation", "DualPromptCategoryReweighting",
           "EpochContext", "FeatureMethod",
           "FeatureSpace", "GatherFn", "LateViewAdapters", "PseudoLabelConsistencyRefinement",
           "PseudoLabelRefinementAdapters", "ResidualAdapter", "RetrievalMethod", "get_feature_method",
           "get_method", "register_feature_method", "register_method"]
