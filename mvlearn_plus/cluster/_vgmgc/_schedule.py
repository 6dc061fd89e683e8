"""The training schedule of the corrected variant, and the backend it trains on."""

from __future__ import annotations

from mvlearn_plus.cluster._vgmgc._data import candidate_pattern
from mvlearn_plus.cluster._vgmgc._dense import DenseBackend
from mvlearn_plus.cluster._vgmgc._self_training import dec_target
from mvlearn_plus.cluster._vgmgc._sparse import SparseBackend

#: Defaults of ``kl_step`` and ``kl_max`` (IDEC's ``gamma = 0.1``; see the estimator's Notes),
#: kept against the paper's 5 and 1000 by ``benchmarks/tune_deep.py`` (``tune_deep.md``).
KL_STEP = 0.05
KL_MAX = 0.1


class Schedule:
    """Pretraining, then a DEC loss whose weight ramps to ``kl_max``; detached DEC targets.

    One instance per training run (it holds the current DEC target). The reference variant
    (:class:`._reference.ReferenceSchedule`) overrides what the official code does differently.
    """

    kl_step_default = KL_STEP
    kl_max_default = KL_MAX

    def __init__(self, estimator):
        self.pretrain = self._pretrain_epochs(estimator)
        self.kl_step = estimator.kl_step if estimator.kl_step is not None \
            else self.kl_step_default
        self.kl_max = estimator.kl_max if estimator.kl_max is not None else self.kl_max_default
        self.interval = self._interval(estimator)
        self.self_training = estimator.self_training
        self._target = None

    def _pretrain_epochs(self, estimator):
        return estimator.pretrain_epochs

    def _interval(self, estimator):
        return estimator.update_interval

    @staticmethod
    def backend(estimator, algorithm, device):
        """A factory ``(patterns, shared_input) -> backend`` for the chosen path."""
        if algorithm == "dense":
            return lambda patterns, shared_input: DenseBackend(patterns, estimator, device)

        def sparse(patterns, shared_input):
            candidates = candidate_pattern(patterns, shared_input, estimator.candidate_k)
            return SparseBackend(patterns, candidates, estimator, device)

        return sparse

    def forward(self, net, problem):
        return net.training_forward(problem)

    def clustering_on(self, epoch):
        return self.self_training and epoch >= self.pretrain

    def kl_weight(self, phase):
        # After pretraining, the first clustering epoch already has weight kl_step.
        return min(self.kl_step * (phase + 1), self.kl_max)

    def dec_target(self, q_fused, phase):
        """The detached target, refreshed every ``interval`` clustering epochs."""
        if phase % self.interval == 0 or self._target is None:
            self._target = dec_target(q_fused.detach())
        return self._target
