"""Analysis of noisy correspondence: a method's predicted clean subset scored against the truth.

The true pairing of a training split with simulated or published noise is data, read here from
the data side (the split as loaded, before the trainer hands methods a view without it); a
method never sees it. The scores go to the run's history only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["correspondence_analysis"]


def correspondence_analysis(train_split: Any, epoch_log: dict[str, Any], name: str,
                            predicted_clean: Any) -> None:
    """Record a method's predicted clean subset, scored against the true correspondence.

    Writes ``{name}_clean`` (size) and, when ``train_split`` knows its clean pairing (noise
    simulated or read from a file), ``{name}_clean_precision`` (share of the predicted set
    that is truly clean) and ``{name}_clean_recall`` (share of the truly clean pairs found).
    For analysis only: the result goes to the run's history, never back to the method.
    """
    predicted = np.asarray(predicted_clean, dtype=bool)
    epoch_log[f"{name}_clean"] = int(predicted.sum())
    clean_ids = getattr(train_split, "clean_text_image_ids", None)
    if clean_ids is None:
        return
    truly_clean = np.asarray(train_split.text_image_ids) == np.asarray(clean_ids)
    if truly_clean.shape != predicted.shape:
        raise ValueError(f"{name}: a predicted clean mask of {predicted.shape[0]} pairs for a "
                         f"split of {truly_clean.shape[0]} captions")
    hits = int(np.sum(predicted & truly_clean))
    epoch_log[f"{name}_clean_precision"] = hits / max(1, int(predicted.sum()))
    epoch_log[f"{name}_clean_recall"] = hits / max(1, int(truly_clean.sum()))
