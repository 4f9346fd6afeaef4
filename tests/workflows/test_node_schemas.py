"""The node schema snapshot: made by our own command from /object_info, prose stripped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stillhouse.workflows.node_schemas import NodeSchemas
from tests.workflows.captures import RAW_OBJECT_INFO

ROOT = Path(__file__).resolve().parents[2]

# The shapes /object_info really uses (checked against the captured answer): classic
# list combos, new-style COMBO with options, empty model lists, uploads, tooltips.
RAW: dict[str, Any] = {
    "KSampler": {
        "input": {
            "required": {
                "model": ["MODEL", {"tooltip": "The model used for denoising."}],
                "seed": [
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 18446744073709551615,
                        "control_after_generate": True,
                        "tooltip": "seed",
                    },
                ],
                "sampler_name": [["euler", "ddim"], {"tooltip": "The algorithm."}],
            }
        },
        "input_order": {"required": ["model", "seed", "sampler_name"]},
        "output": ["LATENT"],
        "output_is_list": [False],
        "output_name": ["LATENT"],
        "name": "KSampler",
        "display_name": "KSampler",
        "description": "Uses the provided model to denoise the latent image.",
        "python_module": "nodes",
        "category": "sampling",
        "output_node": False,
        "output_tooltips": ["The denoised latent."],
    },
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["a.safetensors", "b.ckpt"], {"tooltip": "x"}]}},
        "output": ["MODEL", "CLIP", "VAE"],
        "output_node": False,
        "display_name": "Load Checkpoint",
    },
    "UpscaleModelLoader": {
        "input": {"required": {"model_name": ["COMBO", {"multiselect": False, "options": []}]}},
        "output": ["UPSCALE_MODEL"],
        "output_node": False,
    },
    "VAELoader": {
        "input": {"required": {"vae_name": [["pixel_space", "ae.safetensors"]]}},
        "output": ["VAE"],
        "output_node": False,
    },
    "LoadImage": {
        "input": {"required": {"image": [["example.png"], {"image_upload": True}]}},
        "output": ["IMAGE", "MASK"],
        "output_node": False,
    },
    "SaveImage": {
        "input": {
            "required": {
                "images": ["IMAGE", {"tooltip": "The images to save."}],
                "filename_prefix": ["STRING", {"default": "ComfyUI", "tooltip": "p"}],
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        },
        "output": [],
        "output_node": True,
    },
}


def test_prose_and_installed_files_are_dropped() -> None:
    schemas = NodeSchemas.from_object_info(RAW)
    text = schemas.dump()
    for prose in ("tooltip", "description", "denoise the latent", "python_module", "category"):
        assert prose not in text
    ksampler = schemas.root["KSampler"]
    assert ksampler.inputs["seed"].max == 18446744073709551615  # exact, not a float
    assert ksampler.inputs["sampler_name"].options == ["euler", "ddim"]
    assert ksampler.outputs == ["LATENT"]
    ckpt = schemas.root["CheckpointLoaderSimple"].inputs["ckpt_name"]
    assert ckpt.files and ckpt.options == []
    assert schemas.root["UpscaleModelLoader"].inputs["model_name"].files
    vae = schemas.root["VAELoader"].inputs["vae_name"]
    assert vae.files and vae.options == ["pixel_space"]
    image = schemas.root["LoadImage"].inputs["image"]
    assert image.upload and image.options is None
    save = schemas.root["SaveImage"]
    assert save.output_node and set(save.inputs) == {"images", "filename_prefix"}
    assert NodeSchemas.model_validate(json.loads(text)) == schemas


class _ObjectInfo(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path != "/object_info":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def comfy_object_info() -> Iterator[str]:
    """An HTTP server answering GET /object_info like ComfyUI, with RAW."""
    _ObjectInfo.body = json.dumps(RAW).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ObjectInfo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def snapshot(comfy_url: str, out: Path) -> subprocess.CompletedProcess[str]:
    command = ["workflows", "snapshot", "--comfy-url", comfy_url, "--out", str(out)]
    return subprocess.run(
        [sys.executable, "-m", "stillhouse", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "STILLHOUSE_LOG__FORMAT": "text"},
    )


def test_snapshot_command_refreshes_from_a_running_comfyui(
    comfy_object_info: str, tmp_path: Path
) -> None:
    out = tmp_path / "node_schemas.json"
    result = snapshot(comfy_object_info, out)
    assert result.returncode == 0, result.stderr
    assert "6 node types" in result.stdout
    assert NodeSchemas.load(out) == NodeSchemas.from_object_info(RAW)


def test_snapshot_command_says_clearly_when_comfyui_is_not_there(tmp_path: Path) -> None:
    from tests.support import free_port

    result = snapshot(f"http://127.0.0.1:{free_port()}", tmp_path / "x.json")
    assert result.returncode == 1
    assert "could not read http://127.0.0.1:" in result.stderr
    assert not (tmp_path / "x.json").exists()


def test_shipped_snapshot_covers_comfyui_core_nodes() -> None:
    schemas = NodeSchemas.load()
    assert len(schemas.root) > 400
    for node in (
        "KSampler",
        "CheckpointLoaderSimple",
        "SaveImage",
        "LoadImage",
        "EmptySD3LatentImage",
        "ImageUpscaleWithModel",
    ):
        assert schemas.get(node) is not None
    assert "tooltip" not in (ROOT / "stillhouse" / "workflows" / "node_schemas.json").read_text()


@pytest.mark.skipif(
    not RAW_OBJECT_INFO.exists(), reason="raw /object_info capture not on this machine"
)
def test_shipped_snapshot_is_what_the_command_makes_of_the_capture() -> None:
    raw = json.loads(RAW_OBJECT_INFO.read_text())
    assert NodeSchemas.load() == NodeSchemas.from_object_info(raw)
