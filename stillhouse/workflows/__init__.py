"""Workflows: ComfyUI graphs + manifests -> typed binding and offline validation."""
