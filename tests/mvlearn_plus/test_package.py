import subprocess
import sys

import mvlearn_plus


def test_spectral_estimators_need_only_core_dependencies():
    # torch and matplotlib are extras: importing the spectral estimators must not load them.
    code = (
        "import sys, mvlearn_plus, mvlearn_plus.cluster, mvlearn_plus.metrics, "
        "mvlearn_plus.preprocessing, mvlearn_plus.graphs, mvlearn_plus.datasets\n"
        "bad = [m for m in ('torch', 'matplotlib', 'faiss', 'open_clip') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names():
    assert mvlearn_plus.__version__
    from mvlearn_plus.cluster import MultiGraphFusionClustering, PartitionAlignmentClustering

    assert mvlearn_plus.cluster.MultiGraphFusionClustering is MultiGraphFusionClustering
    assert PartitionAlignmentClustering.__module__ == "mvlearn_plus.cluster._mpac"


def test_deep_estimators_are_public_names():
    import pytest

    pytest.importorskip("torch")
    from mvlearn_plus.cluster import (
        GranularBallContrastiveClustering,
        VariationalGraphGeneratorClustering,
    )

    assert "GranularBallContrastiveClustering" in mvlearn_plus.cluster.__all__
    assert GranularBallContrastiveClustering.__module__ == "mvlearn_plus.cluster._mgbcc"
    assert VariationalGraphGeneratorClustering.__module__.startswith("mvlearn_plus.cluster._vgmgc")
    assert "VariationalGraphGeneratorClustering" in dir(mvlearn_plus.cluster)
