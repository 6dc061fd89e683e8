"""Cross-modal image-text retrieval on CLIP backbones (placeholder until its own issue)."""
