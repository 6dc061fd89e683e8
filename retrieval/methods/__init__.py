"""Retrieval methods: one class each, sharing :class:`RetrievalMethod`'s interface."""

from retrieval.methods.avse import AsymmetricVisualSemanticEmbedding
from retrieval.methods.base import (METHODS, EpochContext, GatherFn, RetrievalMethod, get_method,
                                    register_method)
from retrieval.methods.contrastive import ContrastiveFineTune
from retrieval.methods.d2s import DenseToSparseDistillation

__all__ = ["METHODS", "AsymmetricVisualSemanticEmbedding", "ContrastiveFineTune", "DenseToSparseDistillation",
           "EpochContext",
           "GatherFn", "RetrievalMethod", "get_method", "register_method"]
