"""`python -m worker.models`: which model files the image needs, fetched once."""

from __future__ import annotations

from pathlib import Path

import pytest

from stillhouse.schemas.manifest import ModelFile
from stillhouse.workflows.loader import WorkflowCatalog
from worker.models import fetch, wanted

CATALOG = WorkflowCatalog.load()


def test_each_declared_model_is_wanted_once() -> None:
    everything = wanted(CATALOG, [])
    files = [(m.folder, m.file) for m in everything]
    assert len(files) == len(set(files))
    assert ("checkpoints", "v1-5-pruned-emaonly-fp16.safetensors") in files
    assert ("upscale_models", "RealESRGAN_x2.pth") in files
    assert [m.file for m in wanted(CATALOG, ["flux-schnell-txt2img"])] == [
        "flux1-schnell-fp8.safetensors"
    ]


def test_present_files_are_kept_and_missing_ones_need_a_url(tmp_path: Path) -> None:
    present = tmp_path / "checkpoints" / "a.safetensors"
    present.parent.mkdir()
    present.write_bytes(b"weights")
    assert fetch(ModelFile(folder="checkpoints", file="a.safetensors"), tmp_path) == "kept"
    with pytest.raises(SystemExit, match="has no url"):
        fetch(ModelFile(folder="checkpoints", file="b.safetensors"), tmp_path)


def test_the_models_catalogs_checkpoints_and_loras_are_wanted_too(tmp_path: Path) -> None:
    catalog_file = tmp_path / "models.toml"
    catalog_file.write_text(
        """
[checkpoints.juggernaut]
title = "Juggernaut XL"
family = "sdxl"
file = "juggernaut_xl_v9.safetensors"
url = "https://example.com/juggernaut_xl_v9.safetensors"

[loras.glow]
title = "Neon Glow"
family = "sdxl"
file = "glow-xl.safetensors"
url = "https://example.com/glow-xl.safetensors"

[loras.local]
title = "Already there"
family = "sdxl"
file = "local.safetensors"
"""
    )
    files = {(m.folder, m.file) for m in wanted(CATALOG, ["sdxl-txt2img"], catalog_file)}
    assert files == {
        ("checkpoints", "sd_xl_base_1.0.safetensors"),
        ("checkpoints", "juggernaut_xl_v9.safetensors"),
        ("loras", "glow-xl.safetensors"),
    }
