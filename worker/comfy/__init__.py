"""Talking to ComfyUI: keeping its process up, its HTTP API, following a prompt."""
