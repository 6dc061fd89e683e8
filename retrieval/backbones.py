"""open_clip backbones: building by name, checkpoint loading, token access and freezing.

Every retrieval method stands on a :class:`ClipBackbone`, a thin ``nn.Module`` around an
open_clip ``CLIP`` model that exposes what the methods need (spec 1.2): pooled embeddings,
the patch tokens of the image tower, the per-token text states with their mask, the token path
before the vision transformer, and the preprocessing transforms.

The tiny configurations in ``retrieval/model_configs`` (``tiny-vit``, ``tiny-vit-64``,
``tiny-vit-quickgelu``) are registered with open_clip when this module is imported; they build
with random weights in well under a second on a CPU and serve the tests and the offline demo.

References
----------
.. [1] Radford et al., "Learning Transferable Visual Models From Natural Language
   Supervision", ICML 2021.
.. [2] Cherti et al., "Reproducible scaling laws for contrastive language-image learning",
   CVPR 2023 (open_clip).
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import open_clip
import torch
from torch import nn
from torch.nn import functional as F

# The batched encoders live with the one encoding loop; their public names stay here too.
from retrieval.encoding import AMP_MODES, encode_images, encode_texts, inference_autocast  # noqa: F401

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
TINY_MODELS = tuple(sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json")))
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

_registered = False


def register_model_configs() -> None:
    """Register the shipped tiny configurations with open_clip (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True


register_model_configs()


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, truncated or does not fit the architecture."""


class UnsupportedModelError(NotImplementedError):
    """A model whose towers lack what a method needs (patch tokens of a timm or ConvNeXt
    tower, per-token states of a custom text tower); the message names the model and what
    works instead."""


# --------------------------------------------------------------------------------------------
# Checkpoint reading
# --------------------------------------------------------------------------------------------
def load_tensor_file(path: str | os.PathLike) -> Any:
    """Read a ``torch.save`` file (``weights_only=True``) or a ``.safetensors`` file.

    The one place where checkpoints are read: a missing, empty, truncated or corrupt file, a
    TorchScript archive or a pickle that carries code all become a :class:`CheckpointError`
    that says which.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    if path.suffix != ".safetensors" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(name.endswith("constants.pkl") or "/code/" in name for name in names):
            raise CheckpointError(
                f"{path} is a TorchScript archive (as OpenAI distributes its CLIP weights), not a "
                "state dict; convert it once with open_clip.load_openai_model(path, jit=False) "
                "and save model.state_dict(), or use the 'openai' tag online, with a "
                "'-quickgelu' config")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one clear message
        raise CheckpointError(
            f"could not read checkpoint {path} ({type(exc).__name__}: {exc}); the file is "
            "truncated or corrupt, or not a tensor checkpoint (weights_only=True refuses "
            "pickled code)") from exc


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pt``/``.pth``/``.bin`` (``torch.load``) or ``.safetensors``.

    The file may hold the state dict itself or a dict with a ``state_dict`` (or ``model``)
    entry; a ``module.`` prefix left by DataParallel/DDP is stripped. Loading always uses
    ``weights_only=True``, so a pickle that carries code is refused.

    Raises
    ------
    CheckpointError
        When the file is missing, empty, truncated or holds no tensors.
    """
    raw = load_tensor_file(path)
    if isinstance(raw, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in raw and isinstance(raw[key], dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict) or not any(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict of tensors")
    state = {}
    for key, value in raw.items():
        if key.startswith("module."):
            key = key[len("module."):]
        state[key] = value
    return state


def load_weights(model: nn.Module, path: str | os.PathLike, *, strict: bool = True) -> None:
    """Load a local checkpoint into an open_clip model, explaining any mismatch.

    Parameters
    ----------
    model : nn.Module
        An open_clip ``CLIP``/``CustomTextCLIP`` model.
    path : path-like
        ``.pt``/``.pth``/``.bin``/``.safetensors`` file (see :func:`read_state_dict`).
    strict : bool, default=True
        If True, any missing or unexpected key, or a shape mismatch, is an error.

    Raises
    ------
    CheckpointError
        With the number of missing and unexpected keys (and a few of each) or the first
        shape mismatches, so that a checkpoint of another architecture is recognised at once.
    """
    state = read_state_dict(path)
    expected = model.state_dict()
    # open_clip stores logit_scale as a 0-d or 1-d tensor depending on the version.
    if "logit_scale" in state and "logit_scale" in expected:
        state["logit_scale"] = state["logit_scale"].reshape(expected["logit_scale"].shape)
    check_state_fits(expected, state, f"checkpoint {path}", strict=strict)
    model.load_state_dict(state, strict=strict)
    logger.info("loaded weights from %s (%d tensors)", path, len(state))


def check_state_fits(expected: dict[str, Any], state: dict[str, Any], source: str, *,
                     strict: bool = True) -> None:
    """Raise a :class:`CheckpointError` explaining why ``state`` does not fit a model.

    The one report of a weights mismatch (backbone files, run checkpoints, a run's backbone):
    the counts of missing and unexpected keys with a few of each, and the first shape
    mismatches. Extra states (``get_extra_state``: data-sized method state) have no fixed
    shape and are not compared. Without ``strict`` only shape mismatches count.
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape) if torch.is_tensor(state[k]) else '?'} vs "
        f"model {tuple(expected[k].shape)}"
        for k in expected if k in state and torch.is_tensor(expected[k])
        and (not torch.is_tensor(state[k]) or state[k].shape != expected[k].shape)]
    if mismatched or (strict and (missing or unexpected)):
        parts = [f"{source} does not fit the model architecture:"]
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[:2]})")
        raise CheckpointError(" ".join(parts))


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save a model's state dict (``.safetensors`` by suffix, else ``torch.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a model's weights (names, dtypes, shapes and bytes of its state dict).

    Identifies the weights themselves, wherever they were loaded from: features, runs and
    caches record it, and features made by other weights are refused.
    """
    import hashlib

    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        if not torch.is_tensor(value):
            continue
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _is_local_file(pretrained: str) -> bool:
    return Path(pretrained).suffix in CHECKPOINT_SUFFIXES or os.sep in pretrained \
        or Path(pretrained).exists()


def _embed_dim(model: nn.Module, name: str) -> int:
    """Joint embedding size of an open_clip model, whatever its image tower.

    open_clip's own towers record ``output_dim``; a timm tower (ConvNeXt, SigLIP's ViT) does
    not, so the text side's projection gives it (both towers end in the joint space).
    """
    output_dim = getattr(model.visual, "output_dim", None)
    if output_dim is not None:
        return int(output_dim)
    projection = getattr(model, "text_projection", None)
    if projection is None and hasattr(model, "text"):
        projection = getattr(model.text, "text_projection", None)
        if projection is None and getattr(model.text, "output_dim", None) is not None:
            return int(model.text.output_dim)
    if isinstance(projection, nn.Linear):
        return int(projection.out_features)
    if torch.is_tensor(projection):
        return int(projection.shape[-1])
    raise UnsupportedModelError(f"{name}: cannot tell its embedding size (no output_dim on "
                                f"{type(model.visual).__name__}, no text projection)")


def _vision_width(visual: nn.Module) -> int:
    """Width of the image tower's token states (a timm trunk: its feature count)."""
    if hasattr(visual, "width"):
        return int(visual.width)
    if hasattr(visual, "conv1"):
        return int(visual.conv1.out_channels)
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and hasattr(trunk, "num_features"):
        return int(trunk.num_features)
    return int(getattr(visual, "output_dim", 0))


# --------------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------------
class ClipBackbone(nn.Module):
    """An open_clip CLIP model with the feature access the retrieval methods need.

    Build it with :func:`create_backbone`. The wrapped model is ``self.model``; its
    preprocessing transforms are ``preprocess_train`` and ``preprocess`` (evaluation), its
    tokenizer ``tokenizer``.

    Attributes
    ----------
    name : str
        open_clip model name.
    pretrained : str or None
        Tag or path the weights came from (None: random initialisation).
    build_options : dict
        The :func:`create_backbone` options the model was built with
        (``force_quick_gelu``, ``precision``, ``open_clip_kwargs``); JSON-serialisable.
    embed_dim : int
        Joint embedding size ``d``.
    vision_width, text_width : int
        Tower widths ``w``.
    context_length : int
        Text context length of the tokenizer.
    """

    def __init__(self, model: nn.Module, preprocess_train, preprocess, tokenizer, name: str,
                 pretrained: str | None, build_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        # How the model was built beyond its name (QuickGELU, precision, open_clip overrides):
        # recorded with every run and feature folder, so that a reload builds the same model.
        self.build_options = dict(build_options or {})
        self.preprocess_train = preprocess_train
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.pretrained = pretrained
        self.embed_dim = _embed_dim(model, name)
        self.vision_width = _vision_width(model.visual)
        self.text_width = int(model.token_embedding.embedding_dim) \
            if hasattr(model, "token_embedding") else int(model.text.width)
        self.context_length = int(getattr(model, "context_length", 77))

    # ---------------------------------------------------------------------- basic encoders
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids ``(B, context_length)`` (truncated, EOT kept)."""
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenizer(list(texts))

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Pooled image embeddings ``(B, d)``."""
        return self.model.encode_image(images, normalize=normalize)

    def encode_text(self, token_ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Pooled text embeddings ``(B, d)`` (EOT token state times the projection)."""
        return self.model.encode_text(token_ids, normalize=normalize)

    # ---------------------------------------------------------------------- token access
    def _require_plain_vit(self) -> nn.Module:
        visual = self.model.visual
        plain = (hasattr(visual, "conv1") and hasattr(visual, "class_embedding")
                 and getattr(visual, "attn_pool", None) is None
                 and getattr(visual, "pool_type", "tok") == "tok"
                 and not getattr(visual, "final_ln_after_pool", False))
        if not plain:
            raise UnsupportedModelError(
                f"token access needs a plain open_clip VisionTransformer with CLS pooling; "
                f"{self.name} has {type(visual).__name__} (attentional pool, average pool or a "
                "timm/ConvNeXt/ResNet tower are not supported)")
        return visual

    def image_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled embedding and projected patch tokens.

        Returns
        -------
        pooled : Tensor ``(B, d)``
        tokens : Tensor ``(B, N, d)``
            Patch states after ``ln_post`` (CLS excluded) times the visual projection.
        """
        visual = self._require_plain_vit()
        states = self.pre_transformer_tokens(images)
        states = visual.transformer(states)
        states = visual.ln_post(states)
        pooled = states[:, 0] @ visual.proj
        tokens = states[:, 1:] @ visual.proj
        return pooled, tokens

    def pre_transformer_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Token sequence entering the vision transformer, ``(B, 1 + N, w)`` (CLS first).

        ``conv1`` -> flatten -> prepend the class embedding -> add positional embeddings ->
        ``ln_pre``. ``ln_pre`` acts per token, so a method may select tokens from this output
        and pass them to :meth:`encode_image_tokens` (AVSE's radial views).
        """
        visual = self._require_plain_vit()
        x = visual.conv1(images)
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + visual.positional_embedding.to(x.dtype)
        return visual.ln_pre(x)

    def encode_image_tokens(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Finish the vision path from (possibly selected) pre-transformer tokens.

        ``tokens`` is ``(B, 1 + M, w)`` with the CLS token first, as returned (and optionally
        sub-selected) by :meth:`pre_transformer_tokens`; returns ``(B, d)``.
        """
        visual = self._require_plain_vit()
        states = visual.transformer(tokens)
        pooled = visual.ln_post(states[:, 0]) @ visual.proj
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def text_end_positions(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Position of the token whose state is the caption's pooled embedding, ``(B,)``.

        Honours the model's text pooling: ``argmax`` (OpenAI CLIP: the end-of-text id is the
        largest), ``eos`` (the model's own end-of-text id), ``last`` or ``first``.
        """
        model = self.model
        pool = getattr(model, "text_pool_type", "argmax")
        if pool == "argmax":
            return token_ids.argmax(dim=-1)
        if pool == "eos":
            eos_id = getattr(model, "text_eos_id", None)
            if eos_id is None:
                raise UnsupportedModelError(f"{self.name}: eos text pooling without an eos id")
            return (token_ids == eos_id).int().argmax(dim=-1)
        if pool == "last":
            return torch.full(token_ids.shape[:1], token_ids.shape[1] - 1, dtype=torch.long,
                              device=token_ids.device)
        if pool == "first":
            return torch.zeros(token_ids.shape[:1], dtype=torch.long, device=token_ids.device)
        raise UnsupportedModelError(f"{self.name} pools its text with {pool!r}: no single token "
                                  "state is the caption embedding")

    def project_text(self, states: torch.Tensor) -> torch.Tensor:
        """Text states in the joint space: the text projection, or the states themselves for
        a model without one (its text width is the embedding size)."""
        projection = self.model.text_projection
        if projection is None:
            return states
        if isinstance(projection, nn.Linear):
            return projection(states)
        return states @ projection

    def text_tokens(self, token_ids: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled text embedding, projected per-token states and their validity mask.

        Returns
        -------
        pooled : Tensor ``(B, d)``
            The state at :meth:`text_end_positions` in the joint space: what the model's own
            ``encode_text`` returns, for every open_clip text pooling with a single token.
        tokens : Tensor ``(B, L, d)``
            ``ln_final`` states in the joint space (:meth:`project_text`).
        mask : BoolTensor ``(B, L)``
            True on positions ``0..end`` (padding after the pooled token masked). With a
            causal text transformer only the end state summarises the whole caption.
        """
        model = self.model
        if not hasattr(model, "token_embedding"):
            raise UnsupportedModelError(
                f"per-token text states need the built-in CLIP text tower; {self.name} uses "
                f"{type(getattr(model, 'text', None)).__name__}")
        cast = model.transformer.get_cast_dtype()
        x = model.token_embedding(token_ids).to(cast) + model.positional_embedding.to(cast)
        x = model.transformer(x, attn_mask=model.attn_mask)
        states = model.ln_final(x)
        tokens = self.project_text(states)
        end = self.text_end_positions(token_ids)
        pooled = tokens[torch.arange(tokens.shape[0], device=tokens.device), end]
        positions = torch.arange(token_ids.shape[1], device=token_ids.device)
        mask = positions[None, :] <= end[:, None]
        if getattr(model, "text_pool_type", "argmax") == "first":
            mask = token_ids != 0
        return pooled, tokens, mask


def _activation_of_tag(name: str, tag: str, force_quick_gelu: bool) -> bool:
    """Whether the model must be built with QuickGELU for the weights of ``tag``.

    open_clip 3 no longer switches a model to QuickGELU for a tag trained with it (OpenAI's):
    it only warns, and the GELU model then loses accuracy silently. The tag's own record
    decides here; an unknown tag is refused with the known ones.
    """
    tag_cfg = open_clip.get_pretrained_cfg(name, tag)
    if not tag_cfg:
        known = open_clip.list_pretrained_tags_by_model(name)
        raise ValueError(
            f"--pretrained {tag!r} is neither a file nor an open_clip pretrained tag of {name!r}; "
            f"its tags: {known or 'none (pass a local weights file)'}")
    model_cfg = open_clip.get_model_config(name) or {}
    tag_quick = bool(tag_cfg.get("quick_gelu", False))
    model_quick = bool(model_cfg.get("quick_gelu", False))
    if force_quick_gelu and not tag_quick:
        raise ValueError(f"--force-quick-gelu: the weights of tag {tag!r} ({name}) were trained "
                         "with GELU; drop --force-quick-gelu (force_quick_gelu=False)")
    if tag_quick and not model_quick and not force_quick_gelu:
        logger.info("tag %r of %s was trained with QuickGELU: building the model with it",
                    tag, name)
        return True
    return force_quick_gelu


class _without_open_clip_random_warning:
    """Context manager: drop open_clip's "No pretrained weights loaded" record while active."""

    def __init__(self, active: bool) -> None:
        self.active = active

    @staticmethod
    def filter(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    def __enter__(self) -> None:
        if self.active:
            logging.getLogger().addFilter(self.filter)

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            logging.getLogger().removeFilter(self.filter)


def create_backbone(
    name: str,
    pretrained: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    force_quick_gelu: bool = False,
    precision: str = "fp32",
    open_clip_kwargs: dict[str, Any] | None = None,
    warn_random: bool = True,
) -> ClipBackbone:
    """Build an open_clip model by name.

    Parameters
    ----------
    name : str
        Any ``open_clip.list_models()`` name (the shipped tiny configs included) or
        ``local-dir:/folder`` (config and weights from a folder).
    pretrained : str, path or None
        ``None`` (random weights), an open_clip pretrained tag such as ``"openai"`` (needs the
        network on first use) or a local ``.pt``/``.pth``/``.bin``/``.safetensors`` file. A tag
        trained with QuickGELU (``"openai"``) builds the model with QuickGELU, as its record in
        open_clip says (``force_quick_gelu`` is then recorded as True). A local copy of OpenAI
        weights must go with a ``*-quickgelu`` config or ``force_quick_gelu=True``; the two
        activations cannot be told apart from the weights, and the wrong one loses accuracy
        silently.
    device : str or torch.device, default="cpu"
    force_quick_gelu : bool, default=False
    precision : str, default="fp32"
        open_clip precision (``"fp32"``, ``"fp16"``, ``"bf16"``, ``"amp"``...).
    open_clip_kwargs : dict, optional
        Further options of ``open_clip.create_model_and_transforms`` (``force_image_size``,
        ``force_context_length``, ``force_custom_text``, config overrides such as a whole
        ``text_cfg``...). JSON-serialisable values only: they are recorded with the run.
    warn_random : bool, default=True
        Warn when a model that is not one of the shipped tiny test models gets random weights
        (no ``pretrained``): its retrieval numbers are those of an untrained model.

    Returns
    -------
    ClipBackbone

    Raises
    ------
    ValueError
        For an unknown model name or pretrained tag, or ``force_quick_gelu`` with a tag
        trained with GELU.
    CheckpointError
        For a missing, truncated or mismatched local checkpoint, or a tag whose weights
        cannot be fetched (offline).
    """
    register_model_configs()
    if not str(name).startswith(("local-dir:", "hf-hub:")) and name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r}; shipped tiny models: "
                         f"{list(TINY_MODELS)}; see open_clip.list_models()")
    local_file = None
    tag = None
    if pretrained is not None:
        pretrained = str(pretrained)
        if _is_local_file(pretrained):
            local_file = Path(pretrained)
            if not local_file.is_file():
                raise CheckpointError(f"checkpoint file not found: {local_file}")
            if "openai" in local_file.name.lower() and not (
                    force_quick_gelu or "quickgelu" in name.lower()):
                logger.warning("%s looks like OpenAI weights; they need QuickGELU: use the "
                               "'%s-quickgelu' config or force_quick_gelu=True", local_file, name)
        else:
            tag = pretrained
    if tag is not None and not str(name).startswith(("local-dir:", "hf-hub:")):
        force_quick_gelu = _activation_of_tag(name, tag, force_quick_gelu)
    overrides = dict(open_clip_kwargs or {})
    clash = {"pretrained", "device", "precision", "force_quick_gelu"} & set(overrides)
    if clash:
        raise ValueError(f"open_clip_kwargs may not set {sorted(clash)}: they are arguments "
                         "of create_backbone")
    if pretrained is None and warn_random and name not in TINY_MODELS:
        logger.warning("%s has random weights (no --pretrained given): its embeddings are "
                       "those of an untrained model; pass an open_clip tag or a weights file",
                       name)
    # open_clip warns "No pretrained weights loaded" whenever it loads none itself; that is
    # untrue when the weights come next (a local file here, a run's weights in load_run), so
    # only then is its warning held back. A truly random model keeps it.
    weights_follow = local_file is not None or (pretrained is None and not warn_random)
    try:
        with _without_open_clip_random_warning(weights_follow):
            model, preprocess_train, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=tag, device=device, precision=precision,
                force_quick_gelu=force_quick_gelu, **overrides)
    except TypeError as exc:
        raise ValueError(f"open_clip could not build {name!r} with options {overrides}: "
                         f"{exc}") from exc
    except RuntimeError as exc:
        if tag is None or "Failed to download" not in str(exc):
            raise
        # The tag is known (checked above): only fetching its weights failed.
        raise CheckpointError(
            f"--pretrained {tag!r}: the weights of {name} could not be fetched (offline, or "
            f"HF_HUB_OFFLINE set, and not in the cache): {str(exc).splitlines()[0][:200]}; "
            "download them once with network access, or pass a local weights file") from None
    if local_file is not None:
        load_weights(model, local_file)
        model.to(device)
    source = tag or (str(local_file) if local_file else "random initialisation")
    logger.info("built %s with weights from %s", name, source)
    context = overrides.get("force_context_length")
    try:
        tokenizer = open_clip.get_tokenizer(name, **({"context_length": int(context)} if context
                                                     else {}))
    except ModuleNotFoundError as exc:
        # SigLIP and other models with Hugging Face tokenizers need transformers, an optional
        # dependency of open_clip.
        raise UnsupportedModelError(f"the tokenizer of {name} needs the {exc.name!r} package: "
                                    f"pip install {exc.name}") from None
    options = {"force_quick_gelu": bool(force_quick_gelu), "precision": str(precision),
               "open_clip_kwargs": overrides}
    return ClipBackbone(model, preprocess_train, preprocess, tokenizer, name,
                        None if pretrained is None else str(pretrained), options)


# --------------------------------------------------------------------------------------------
# Freezing
# --------------------------------------------------------------------------------------------
def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Set ``requires_grad`` of every parameter of ``module``."""
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


def freeze_backbone(backbone: ClipBackbone, *, image_unlocked_blocks: int = 0,
                    text_unlocked_blocks: int = 0, towers: str = "both") -> None:
    """Freeze the towers, leaving the last N transformer blocks of each trainable.

    Parameters
    ----------
    backbone : ClipBackbone
    image_unlocked_blocks, text_unlocked_blocks : int, default=0
        Number of final transformer blocks (with the layers after them: ``ln_post``/``proj``
        and ``ln_final``/``text_projection``) left trainable. 0 freezes the tower entirely.
    towers : {"both", "image", "text"}, default="both"
        Which towers to touch.
    """
    model = backbone.model
    if towers in ("both", "image"):
        visual = model.visual
        set_requires_grad(visual, False)
        if image_unlocked_blocks > 0:
            for block in visual.transformer.resblocks[-image_unlocked_blocks:]:
                set_requires_grad(block, True)
            set_requires_grad(visual.ln_post, True)
            visual.proj.requires_grad_(True)
    if towers in ("both", "text"):
        text_modules = [model.token_embedding, model.transformer, model.ln_final]
        for module in text_modules:
            set_requires_grad(module, False)
        model.positional_embedding.requires_grad_(False)
        projection = model.text_projection

        def set_projection(flag: bool) -> None:
            if isinstance(projection, nn.Module):
                set_requires_grad(projection, flag)
            elif projection is not None:  # None: a model without a text projection
                projection.requires_grad_(flag)

        set_projection(False)
        if text_unlocked_blocks > 0:
            for block in model.transformer.resblocks[-text_unlocked_blocks:]:
                set_requires_grad(block, True)
            set_requires_grad(model.ln_final, True)
            set_projection(True)


def unfreeze_backbone(backbone: ClipBackbone) -> None:
    """Make every backbone parameter trainable again."""
    set_requires_grad(backbone.model, True)


def freeze_all_but(module: nn.Module, trainable: Iterable[str]) -> list[str]:
    """Freeze every parameter of ``module`` except those whose name contains a given part.

    Used by prompt methods ("prompts only"): ``freeze_all_but(method, ["prompt"])``.
    Returns the names left trainable.
    """
    parts = tuple(trainable)
    kept = []
    for name, parameter in module.named_parameters():
        keep = any(part in name for part in parts)
        parameter.requires_grad_(keep)
        if keep:
            kept.append(name)
    return kept


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (only the trainable ones if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
