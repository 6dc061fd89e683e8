"""The learning-rate schedule: linear warm-up then cosine decay, restarted in every training
phase (D2S's two stages). It counts optimiser updates, not batches."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["phased_warmup_cosine", "warmup_cosine"]


def phased_warmup_cosine(phase_steps: list[int], warmup_fraction: float):
    """Warm-up then cosine decay restarted in every training phase (e.g. D2S's two stages).

    ``phase_steps`` are the optimiser steps of the phases in order; each warms up over
    ``warmup_fraction`` of its own steps, so a short first phase is not spent warming up.
    """
    bounds = np.cumsum([0] + list(phase_steps))
    schedules = [warmup_cosine(n, int(warmup_fraction * n)) for n in phase_steps]

    def factor(step: int) -> float:
        phase = int(np.searchsorted(bounds, step, side="right")) - 1
        phase = min(max(phase, 0), len(schedules) - 1)
        return schedules[phase](step - int(bounds[phase]))

    return factor


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Multiplier of the learning rate at a step: linear warm-up, then cosine decay to 0."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
