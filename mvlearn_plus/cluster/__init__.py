"""Multi-view clustering estimators (scikit-learn API)."""

from mvlearn_plus.cluster._mgf import MultiGraphFusionClustering
from mvlearn_plus.cluster._mpac import PartitionAlignmentClustering

__all__ = ["MultiGraphFusionClustering", "PartitionAlignmentClustering"]
