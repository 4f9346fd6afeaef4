"""Opt-in: the shipped SD1.5 and upscale workflows, bound as the intake binds them (with
LoRAs chained in), run on a real ComfyUI; each must finish, and its images must have the
size and count the ComfyUI double predicts for the same graph (where they differ, the
real one is right and the double is fixed).

Needs STILLHOUSE_TEST_COMFY_URL (a ComfyUI with the random-weight SD1.5 installed as the
shipped checkpoint name, see DEVELOPERS.md), STILLHOUSE_TEST_COMFY_DIR (its folder: the
test writes a LoRA with no weights and random-weight ESRGAN 2x/4x models there) and
STILLHOUSE_TEST_COMFY_PYTHON (its Python, which has torch and spandrel to make them).
The SDXL, FLUX and ControlNet graphs need models too large for random weights on a CPU:
they are checked offline only (`stillhouse workflows check`).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stillhouse.schemas.manifest import ParamValue
from stillhouse.workflows.binder import bind
from stillhouse.workflows.loader import WorkflowCatalog
from stillhouse.workflows.loras import LoraChoice
from tests.doubles.comfy.images import plan

COMFY_URL = os.environ.get("STILLHOUSE_TEST_COMFY_URL", "")
COMFY_DIR = os.environ.get("STILLHOUSE_TEST_COMFY_DIR", "")
COMFY_PYTHON = os.environ.get("STILLHOUSE_TEST_COMFY_PYTHON", "")
pytestmark = pytest.mark.skipif(
    not (COMFY_URL and COMFY_DIR and COMFY_PYTHON),
    reason="set STILLHOUSE_TEST_COMFY_URL, _DIR and _PYTHON to run",
)
CATALOG = WorkflowCatalog.load()
LORA = "stillhouse-test-empty-lora.safetensors"
JOB_TIMEOUT_S = 600.0
SMALL: dict[str, ParamValue] = {"steps": 1, "prompt": "a lighthouse", "seed": 7}
# Per workflow: its values beyond SMALL (64 px sources keep a CPU run short).
CASES: dict[str, dict[str, ParamValue]] = {
    "sd15-txt2img": {"width": 256, "height": 256, "count": 2},  # its smallest
    "sd15-img2img": {"image": "source.png"},
    "sd15-variations": {"image": "source.png", "count": 2},
    "sd15-inpaint": {"image": "source.png", "mask": "mask.png"},
    "sd15-outpaint": {"image": "source.png", "left": 16, "right": 16, "top": 8, "bottom": 8},
    "sd15-upscale-creative": {"image": "source.png"},
    "upscale-2x": {"image": "source.png"},
    "upscale-4x": {"image": "source.png"},
}
# Random-weight ESRGAN (RRDBNet) models, as spandrel (ComfyUI's loader) reads them.
MAKE_MODELS = """
import sys, torch
from safetensors.torch import save_file
from spandrel.architectures.ESRGAN import ESRGAN
folder, lora = sys.argv[1], sys.argv[2]
for scale in (2, 4):
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=1, scale=scale)
    torch.save(net.state_dict(), f"{folder}/upscale_models/RealESRGAN_x{scale}.pth")
save_file({}, f"{folder}/loras/{lora}")
"""


def _get(path: str) -> Any:
    with urllib.request.urlopen(f"{COMFY_URL}{path}", timeout=30) as answer:  # noqa: S310
        return json.load(answer)


def _post(path: str, body: bytes, content_type: str) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the ComfyUI the tester named
        f"{COMFY_URL}{path}", data=body, headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return json.load(answer)


def _upload(name: str, data: bytes) -> None:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + data
    body += f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\n'.encode()
    body += f"true\r\n--{boundary}--\r\n".encode()
    _post("/upload/image", body, f"multipart/form-data; boundary={boundary}")


def _png(width: int, height: int, color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def comfy_inputs() -> dict[str, bytes]:
    """The models the graphs load (made once) and the input images, uploaded."""
    folder = Path(COMFY_DIR) / "models"
    (folder / "upscale_models").mkdir(exist_ok=True)
    (folder / "loras").mkdir(exist_ok=True)
    subprocess.run([COMFY_PYTHON, "-c", MAKE_MODELS, str(folder), LORA], check=True, timeout=300)
    mask = Image.new("RGB", (64, 64), "black")
    mask.paste((255, 255, 255), (16, 16, 48, 48))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return {"source.png": _png(64, 64, "teal"), "mask.png": buffer.getvalue()}


def _run(graph: dict[str, Any]) -> list[tuple[int, int]]:
    """Queue the graph; the sizes of the images its SaveImage wrote."""
    queued = _post("/prompt", json.dumps({"prompt": graph}).encode(), "application/json")
    prompt_id = queued["prompt_id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        entry = _get(f"/history/{prompt_id}").get(prompt_id)
        if entry and entry["status"]["completed"]:
            break
        if entry and entry["status"]["status_str"] == "error":
            raise AssertionError(entry["status"]["messages"])
        time.sleep(0.5)  # polling ComfyUI's history with a deadline
    else:
        raise AssertionError(f"not done in {JOB_TIMEOUT_S} s")
    sizes = []
    for output in entry["outputs"].values():
        for image in output.get("images", []):
            query = (
                f"filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}"
            )
            with urllib.request.urlopen(f"{COMFY_URL}/view?{query}", timeout=30) as answer:  # noqa: S310
                sizes.append(Image.open(io.BytesIO(answer.read())).size)
    return sizes


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_shipped_workflow_runs_on_real_comfyui_as_the_double_predicts(
    name: str, comfy_inputs: dict[str, bytes]
) -> None:
    workflow = CATALOG.get(name)
    values = {
        k: v for k, v in {**SMALL, **CASES[name]}.items() if k in workflow.manifest.parameters
    }
    loras = [LoraChoice(LORA, 0.8, 0.8)] * 2 if workflow.manifest.loras else []
    bound = bind(workflow, values, preset="fast", loras=loras)
    graph = json.loads(bound.graph_json())
    uploaded: dict[str, bytes] = {}
    for source in bound.inputs:  # the worker puts each input under its bound name
        parameter = source.name.rsplit("-", 1)[0]
        uploaded[source.name] = comfy_inputs[str(values[parameter])]
        _upload(source.name, uploaded[source.name])
    width, height, count = plan(graph, uploaded.get)
    sizes = _run(graph)
    assert sizes == [(width, height)] * count, (name, sizes, (width, height, count))
