"""Real weights and real files (issue 25): activations follow the weights, user mistakes are
one-line errors naming the file, entry or option and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from retrieval.backbones import CheckpointError, create_backbone, save_weights

ROOT = Path(__file__).resolve().parents[2]


def _quick_gelu_in(backbone) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(module, QuickGELU) for module in backbone.model.modules())


@pytest.fixture
def quickgelu_tag(tmp_path, monkeypatch):
    """A pretrained tag of ``tiny-vit`` recorded, as open_clip records ``openai``, as trained
    with QuickGELU; its weights are a local file, so nothing is downloaded."""
    import open_clip.pretrained as registry

    weights = save_weights(create_backbone("tiny-vit").model, tmp_path / "tag.pt")
    monkeypatch.setitem(registry._PRETRAINED, "tiny-vit", {
        "quickgelu_tag": {"file": str(weights), "quick_gelu": True},
        "gelu_tag": {"file": str(weights)}})
    return "quickgelu_tag"


def test_a_quickgelu_tag_builds_the_quickgelu_model(quickgelu_tag, recwarn):
    backbone = create_backbone("tiny-vit", quickgelu_tag)
    assert _quick_gelu_in(backbone)
    assert backbone.build_options["force_quick_gelu"] is True  # recorded: load_run rebuilds it
    assert not [w for w in recwarn if "QuickGELU mismatch" in str(w.message)]
    assert not _quick_gelu_in(create_backbone("tiny-vit", "gelu_tag"))


def test_force_quick_gelu_with_a_gelu_tag_is_refused(quickgelu_tag):
    with pytest.raises(ValueError, match="drop --force-quick-gelu"):
        create_backbone("tiny-vit", "gelu_tag", force_quick_gelu=True)


def test_unknown_tag_names_the_option_and_the_known_tags(quickgelu_tag):
    with pytest.raises(ValueError, match=r"--pretrained 'opneai' .*tags: \[.quickgelu_tag."):
        create_backbone("tiny-vit", "opneai")


def test_offline_tag_is_a_checkpoint_error_with_the_fix(monkeypatch):
    import open_clip.pretrained as registry

    monkeypatch.setitem(registry._PRETRAINED, "tiny-vit", {
        "online": {"url": "https://example.invalid/tiny.pt", "quick_gelu": True}})
    monkeypatch.setattr(registry, "has_hf_hub", lambda *args, **kwargs: False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(registry, "download_pretrained_from_url", offline)
    with pytest.raises(CheckpointError, match="--pretrained 'online'.*could not be fetched.*"
                                              "local weights file"):
        create_backbone("tiny-vit", "online")


def test_open_clip_is_pinned_below_4():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [dep for deps in project["project"]["optional-dependencies"].values() for dep in deps
            if dep.startswith("open-clip-torch")]
    assert pins and all("<4" in pin for pin in pins), pins


def test_readme_recipe_uses_the_quickgelu_config_for_openai_weights():
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines()
             if "python -m retrieval" in line and "--pretrained $CLIP" in line]
    assert lines and all("-quickgelu" in line for line in lines), lines
