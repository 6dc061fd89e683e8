"""Multi-view clustering estimators (scikit-learn API).

The spectral estimators (MGF, mPAC) need only numpy, scipy and scikit-learn. The deep estimators
(MGBCC, VGMGC) need PyTorch (``pip install 'mvlearn-plus[deep]'``); they are imported on first
access, so ``import mvlearn_plus.cluster`` works without torch.
"""

from mvlearn_plus.cluster._concatenation import ConcatenatedKMeans, ConcatenatedSpectralClustering
from mvlearn_plus.cluster._mgf import MultiGraphFusionClustering
from mvlearn_plus.cluster._mpac import PartitionAlignmentClustering

import importlib.util

_DEEP = {
    "GranularBallContrastiveClustering": "mvlearn_plus.cluster._mgbcc",
    "VariationalGraphGeneratorClustering": "mvlearn_plus.cluster._vgmgc",
}



def _torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


# ``from mvlearn_plus.cluster import *`` must keep working without torch.
__all__ = [
    "ConcatenatedKMeans",
    "ConcatenatedSpectralClustering",
    "MultiGraphFusionClustering",
    "PartitionAlignmentClustering",
] + (
    list(_DEEP) if _torch_installed() else []
)


def __getattr__(name):
    if name in _DEEP:
        import importlib

        return getattr(importlib.import_module(_DEEP[name]), name)
    raise AttributeError(f"module 'mvlearn_plus.cluster' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_DEEP))
