"""mvlearn-plus: multi-view clustering estimators with a scikit-learn API.

The public entry points are re-exported from the sub-packages:

* :mod:`mvlearn_plus.cluster` -- the estimators: spectral ``MultiGraphFusionClustering`` (MGF)
  and ``PartitionAlignmentClustering`` (mPAC); deep ``GranularBallContrastiveClustering``
  (MGBCC) and ``VariationalGraphGeneratorClustering`` (VGMGC), which need PyTorch.
* :mod:`mvlearn_plus.datasets` -- ``list_datasets``, ``load_dataset``, ``load_mat``,
  ``load_npz``.
* :mod:`mvlearn_plus.metrics` -- ``evaluate_clustering`` and the individual scores.
* :mod:`mvlearn_plus.preprocessing` -- ``preprocess_views``.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "cluster", "datasets", "metrics", "preprocessing", "graphs"]


def __getattr__(name):
    # Sub-packages load lazily so `import mvlearn_plus` stays cheap.
    if name in {"cluster", "datasets", "metrics", "preprocessing", "graphs", "utils"}:
        import importlib

        return importlib.import_module(f"mvlearn_plus.{name}")
    raise AttributeError(f"module 'mvlearn_plus' has no attribute {name!r}")
