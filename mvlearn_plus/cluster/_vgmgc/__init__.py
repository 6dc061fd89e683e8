"""VGMGC: variational graph generator for multi-view graph clustering (Chen et al.).

Modules, by concept:

* :mod:`._estimator` -- the scikit-learn estimator and its training loop;
* :mod:`._data` -- features, targets and graph operators prepared once per fit;
* :mod:`._objective` -- the graph terms both paths share, and the pair sampling of the sparse
  path's unbiased estimates;
* :mod:`._dense`, :mod:`._sparse` -- the two backends (all pairs; candidate edges plus sampled
  pairs);
* :mod:`._network` -- generator, encoders, decoders;
* :mod:`._self_training` -- the DEC loss and the label-free view weights;
* :mod:`._schedule` -- the corrected training schedule;
* :mod:`._reference` -- the official code's behaviour (``variant="reference"``), kept apart.
"""

from mvlearn_plus.cluster._vgmgc._estimator import (
    DENSE_MAX_NODES,
    VariationalGraphGeneratorClustering,
)

__all__ = ["DENSE_MAX_NODES", "VariationalGraphGeneratorClustering"]
