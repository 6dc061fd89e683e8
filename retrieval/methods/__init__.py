"""Retrieval methods: one class each, sharing :class:`RetrievalMethod`'s interface."""

from retrieval.methods.base import METHODS, GatherFn, RetrievalMethod, get_method, register_method
from retrieval.methods.contrastive import ContrastiveFineTune

__all__ = ["METHODS", "GatherFn", "RetrievalMethod", "ContrastiveFineTune", "get_method",
           "register_method"]
