"""Run folders: building methods, saving and reading their weights, rebuilding a trained one.

A run folder holds ``config.json`` (model, method and training settings), ``checkpoint_last.pt``
(everything needed to resume), ``model_best.pt`` (the method's weights at the best validation
rSum), ``history.json`` and ``train.log``. Every file is written atomically (a temporary file
renamed over the old one), so a run killed while saving keeps its previous file; tensors are
always read back with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from retrieval.backbones import CheckpointError, check_state_fits, create_backbone, \
    load_tensor_file
from retrieval.methods.base import RetrievalMethod, get_method

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_FILE", "LAST_CHECKPOINT", "BEST_WEIGHTS", "HISTORY_FILE", "is_run_folder",
           "build_method", "build_feature_method", "cpu_state_dict", "load_method_state",
           "read_run_config", "load_run", "load_run_backbone_state", "save_atomically",
           "load_checkpoint_file"]

CONFIG_FILE = "config.json"
LAST_CHECKPOINT = "checkpoint_last.pt"
BEST_WEIGHTS = "model_best.pt"
HISTORY_FILE = "history.json"

#: Reads a checkpoint the trainer wrote (an old alias of
#: :func:`~retrieval.backbones.load_tensor_file`, the one checkpoint reader).
load_checkpoint_file = load_tensor_file


def save_atomically(payload: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` (or, for text, a write) to a temporary file renamed over ``path``.

    A process killed while writing leaves the previous file whole, never a truncated one
    that a later resume or ``load_run`` would fail on.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(payload, str):
        tmp.write_text(payload)
    else:
        torch.save(payload, tmp)
    tmp.replace(path)
    return path


def is_run_folder(path: str | os.PathLike | None) -> bool:
    """True when ``path`` is a training run folder (holds ``config.json``)."""
    return path is not None and Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def load_run_backbone_state(run_dir: str | os.PathLike, *, which: str = "best"
                            ) -> tuple[str, dict[str, torch.Tensor], Path]:
    """The backbone weights of a finished run: (model name, CLIP state dict, file read).

    The run's method may be any registered one: only its ``backbone.`` weights are returned,
    under the open_clip model's own key names.
    """
    config = read_run_config(run_dir)
    if "model" not in config:
        raise CheckpointError(f"{Path(run_dir) / CONFIG_FILE} lacks 'model'")
    path, state = _run_weights(run_dir, which)
    prefix = "backbone.model."
    backbone_state = {key[len(prefix):]: value for key, value in state.items()
                      if key.startswith(prefix)}
    if not backbone_state:
        raise CheckpointError(f"{path} holds no backbone weights (no '{prefix}*' keys)")
    return config["model"], backbone_state, path


def build_method(method: str, model: str, pretrained: str | os.PathLike | None = None, *,
                 method_config: dict[str, Any] | None = None,
                 device: str | torch.device = "cpu",
                 backbone_options: dict[str, Any] | None = None,
                 warn_random: bool = True) -> RetrievalMethod:
    """Build a registered method on a fresh backbone.

    Parameters
    ----------
    method : str
        A registered method name (``retrieval.methods.METHODS``).
    model : str
        open_clip model name.
    pretrained : str or path, optional
        ``None`` (random weights), an open_clip tag, a local weights file, or a **training run
        folder**: the method then starts from that run's fine-tuned CLIP (its selected weights;
        the run may be of another method, and must be of the same ``model``).
    method_config : dict, optional
    device : str or torch.device, default="cpu"
    backbone_options : dict, optional
        :func:`~retrieval.backbones.create_backbone` options (``force_quick_gelu``,
        ``precision``, ``open_clip_kwargs``); recorded in the run's ``config.json``. From a
        run folder, that run's options are used unless these are given.
    warn_random : bool, default=True
        Warn about random weights (see :func:`~retrieval.backbones.create_backbone`).
    """
    options = dict(backbone_options or {})
    if is_run_folder(pretrained):
        run_model, state, path = load_run_backbone_state(pretrained)
        if run_model != model:
            raise ValueError(f"--pretrained run {pretrained} trained model {run_model!r}, not "
                             f"{model!r}")
        # The run's own options, with what the caller gives on top.
        options = {**(read_run_config(pretrained).get("backbone_options") or {}), **options}
        backbone = create_backbone(model, None, device="cpu", warn_random=False, **options)
        check_state_fits(backbone.model.state_dict(), state,
                         f"{path} (the backbone of run {pretrained}, for {model!r})")
        backbone.model.load_state_dict(state)
        backbone.pretrained = str(path)
        logger.info("backbone of %s initialised from run %s (%s)", model, pretrained, path.name)
        backbone = backbone.to(device)
    else:
        backbone = create_backbone(model, pretrained, device=device, warn_random=warn_random,
                                   **options)
    method_class = get_method(method)
    try:
        instance = method_class.from_config(backbone, dict(method_config or {}))
    except TypeError as exc:
        # An unknown or misspelt hyper-parameter: name it and the option that set it.
        raise ValueError(f"--method-config (method_config) of {method!r}: {exc}; see "
                         f"help({method_class.__name__}) for its hyper-parameters") from None
    if pretrained is None and warn_random:
        # Said in the run log, not only in the docs: these methods train from random weights
        # without an error, to a result far below the baseline.
        note = instance.random_start_warning()
        if note:
            logger.warning("%s from random weights (no --pretrained): %s", method, note)
    return instance.to(device)


def build_feature_method(method: str, features: Any, *,
                         method_config: dict[str, Any] | None = None,
                         device: str | torch.device = "cpu") -> RetrievalMethod:
    """Build a method's feature form: heads trained on precomputed features (spec 4.4).

    Parameters
    ----------
    method : str
        A method with a feature form (``retrieval.methods.features.FEATURE_METHODS``).
    features : FeatureSplit, FeatureSpace or dict
        A split of the features folder (or its manifest) the method will train on.
    method_config : dict, optional
    device : str or torch.device, default="cpu"
    """
    from retrieval.methods.features import FeatureSpace, get_feature_method

    method_class = get_feature_method(method)
    config = dict(method_config or {})
    if isinstance(features, FeatureSpace):
        instance = method_class.from_config(features, config)
    elif hasattr(features, "manifest"):
        instance = method_class.from_split(features, config)
    else:
        instance = method_class.from_config(FeatureSpace.from_manifest(features), config)
    return instance.to(device)


def cpu_state_dict(module: torch.nn.Module) -> dict[str, Any]:
    """``module.state_dict()`` detached on the CPU, extra states (dicts of tensors) included."""

    def to_cpu(value: Any) -> Any:
        if torch.is_tensor(value):
            return value.detach().cpu()
        if isinstance(value, dict):
            return {key: to_cpu(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(to_cpu(item) for item in value)
        return value

    return {key: to_cpu(value) for key, value in module.state_dict().items()}


def load_method_state(method: RetrievalMethod, state: dict[str, torch.Tensor],
                      source: str = "checkpoint") -> None:
    """Load a method state dict, reporting missing/unexpected keys and shape mismatches."""
    check_state_fits(method.state_dict(), state, source)
    method.load_state_dict(state)


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a run folder (FileNotFoundError / CheckpointError if unusable)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a training run folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def _run_weights(run_dir: str | os.PathLike, which: str) -> tuple[Path, dict[str, Any]]:
    """(file, method state dict) of a run: the validation-selected weights or the last ones."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    best = Path(run_dir) / BEST_WEIGHTS
    if which == "best" and best.is_file():
        return best, load_tensor_file(best)
    if which == "best":
        logger.warning("%s has no %s: using the last epoch, not a validation-selected one",
                       run_dir, BEST_WEIGHTS)
    path = Path(run_dir) / LAST_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{run_dir} holds neither {BEST_WEIGHTS} nor {LAST_CHECKPOINT}: "
                              "the run never finished an epoch")
    state = load_tensor_file(path).get("method")
    if state is None:
        raise CheckpointError(f"{path} holds no method weights")
    return path, state


def load_run(run_dir: str | os.PathLike, *, which: str = "best",
             device: str | torch.device = "cpu") -> RetrievalMethod:
    """Rebuild a trained method from its run folder.

    The backbone is built with random weights from the recorded model name and then receives
    the trained weights, so the original pretrained file is not needed.

    Parameters
    ----------
    run_dir : path
    which : {"best", "last"}, default="best"
        ``model_best.pt`` (selected on validation) or the last checkpoint.
    """
    config = read_run_config(run_dir)
    missing = [key for key in ("method", "model") if key not in config]
    if missing:
        raise CheckpointError(f"{Path(run_dir) / CONFIG_FILE} lacks {missing}")
    if "features" in config:
        from retrieval.methods.features import FeatureSpace

        try:
            space = FeatureSpace(**config["features"])
        except TypeError as exc:
            raise CheckpointError(f"{Path(run_dir) / CONFIG_FILE}: bad 'features' entry "
                                  f"({exc})") from exc
        method = build_feature_method(config["method"], space,
                                      method_config=config.get("method_config"))
    else:
        # The recorded build options (QuickGELU, precision, open_clip overrides) rebuild the
        # very model that was trained; runs written before they were recorded have none.
        method = build_method(config["method"], config["model"], None,
                              method_config=config.get("method_config"), device="cpu",
                              backbone_options=config.get("backbone_options"),
                              warn_random=False)
    path, state = _run_weights(run_dir, which)
    load_method_state(method, state, source=str(path))
    if hasattr(method, "backbone"):
        # Features encoded from this model must name where its weights came from.
        method.backbone.pretrained = str(path)
    return method.to(device)
