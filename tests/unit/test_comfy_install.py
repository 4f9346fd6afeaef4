"""`stillhouse up --install-comfy` needs the internet and says so plainly without it."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from stillhouse.commands import comfy_install


def test_without_the_internet_install_comfy_stops_with_a_plain_explanation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(comfy_install, "_reachable", lambda host: host == "pypi.org")
    with pytest.raises(click.ClickException) as refused:
        comfy_install.install(tmp_path / "comfyui")
    message = refused.value.message
    assert "github.com, huggingface.co cannot be reached from here (no internet?)" in message
    assert "without it for preview mode" in message and "COMFYUI_URL" in message
    assert not (tmp_path / "comfyui").exists(), "nothing half-installed"


def test_the_default_workflows_models_are_what_gets_downloaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STILLHOUSE_WORKFLOWS__DIR", raising=False)  # the shipped ones
    [(folder, file, url)] = comfy_install._default_models()
    assert (folder, file) == ("checkpoints", "v1-5-pruned-emaonly-fp16.safetensors")
    assert url.startswith("https://huggingface.co/")
