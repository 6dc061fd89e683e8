"""Shared utilities: input validation."""

from mvlearn_plus.utils.validation import check_graphs, check_n_clusters, check_views

__all__ = ["check_views", "check_graphs", "check_n_clusters"]
