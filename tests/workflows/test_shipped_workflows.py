"""Each shipped workflow: it checks clean, and binds the way its purpose needs."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from stillhouse.schemas.manifest import Purpose
from stillhouse.workflows.binder import BoundWorkflow, bind
from stillhouse.workflows.checks import check_workflow
from stillhouse.workflows.loader import WorkflowCatalog
from stillhouse.workflows.node_schemas import NodeSchemas
from stillhouse.workflows.validator import validate_graph

ROOT = Path(__file__).resolve().parents[2]
CATALOG = WorkflowCatalog.load()
SCHEMAS = NodeSchemas.load()


def render(name: str, **values: object) -> BoundWorkflow:
    workflow = CATALOG.get(name)
    preset = values.pop("preset", None)
    bound = bind(workflow, values, preset=preset, rng=random.Random(7))  # type: ignore[arg-type]
    assert check_workflow(workflow, SCHEMAS) == []
    assert validate_graph(bound.graph, SCHEMAS, model_files=workflow.manifest.model_files()) == []
    return bound


def inputs_of(bound: BoundWorkflow, node: str) -> dict[str, object]:
    return bound.graph.root[node].inputs


def test_the_check_command_passes_for_every_shipped_workflow() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stillhouse", "workflows", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("STILLHOUSE_")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert CATALOG.problems == []
    for name in CATALOG.names():
        assert f"ok      {name}" in result.stdout
    assert len(CATALOG.names()) >= 6


def test_sd15_txt2img() -> None:
    bound = render("sd15-txt2img", prompt="a red bicycle", count=3, preset="quality")
    assert inputs_of(bound, "6")["text"] == "a red bicycle"
    assert inputs_of(bound, "5") == {"width": 512, "height": 512, "batch_size": 3}
    assert (inputs_of(bound, "3")["steps"], inputs_of(bound, "3")["scheduler"]) == (30, "karras")
    assert bound.outputs == ["9"]


def test_sdxl_txt2img_is_sized_for_sdxl() -> None:
    workflow = CATALOG.get("sdxl-txt2img")
    bound = bind(workflow, {"prompt": "a harbour"}, aspect="portrait")
    assert inputs_of(bound, "5")["width"] == 832 and inputs_of(bound, "5")["height"] == 1216
    assert inputs_of(bound, "4")["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    render("sdxl-txt2img", prompt="a harbour", preset="fast")


def test_flux_schnell_runs_at_cfg_one_without_a_negative_prompt() -> None:
    bound = render("flux-schnell-txt2img", prompt="a sign that says OPEN", preset="fast")
    sampler = inputs_of(bound, "3")
    assert (sampler["cfg"], sampler["steps"], sampler["scheduler"]) == (1.0, 2, "simple")
    assert bound.graph.root["5"].class_type == "EmptySD3LatentImage"
    assert "negative_prompt" not in CATALOG.get("flux-schnell-txt2img").manifest.parameters


def test_img2img_takes_the_users_image_and_a_denoise() -> None:
    url = "https://cdn.discordapp.com/attachments/1/2/photo.png"
    bound = render("sd15-img2img", prompt="as a watercolour", image=url, denoise=0.45, count=2)
    assert inputs_of(bound, "10")["image"] == bound.inputs[0].name
    assert inputs_of(bound, "3")["denoise"] == 0.45
    assert inputs_of(bound, "13")["amount"] == 2


def test_upscale_doubles_an_earlier_result() -> None:
    [workflow] = CATALOG.for_purpose(Purpose.UPSCALE)
    fast = render(workflow.name, image="stillhouse/job1/a.png", preset="fast")
    quality = render(workflow.name, image="stillhouse/job1/a.png", preset="quality")
    assert inputs_of(fast, "2")["model_name"] == "RealESRGAN_x2.pth"
    assert inputs_of(fast, "4")["scale_by"] == 1.0
    assert inputs_of(quality, "2")["model_name"] == "RealESRGAN_x4.pth"
    assert inputs_of(quality, "4")["scale_by"] == 0.5  # 4x then half: 2x overall
    assert fast.inputs[0].storage_key == "stillhouse/job1/a.png"
    assert {m.folder for m in workflow.manifest.models} == {"upscale_models"}


def test_variations_make_four_new_takes_on_an_earlier_result() -> None:
    [workflow] = CATALOG.for_purpose(Purpose.VARIATIONS)
    first = bind(workflow, {"prompt": "a lighthouse", "image": "stillhouse/job1/a.png"})
    second = bind(workflow, {"prompt": "a lighthouse", "image": "stillhouse/job1/a.png"})
    assert inputs_of(first, "13")["amount"] == 4
    assert first.params.root["seed"] != second.params.root["seed"]
    render(workflow.name, prompt="a lighthouse", image="stillhouse/job1/a.png")


def test_every_model_a_workflow_loads_is_declared_with_a_download() -> None:
    for workflow in CATALOG.workflows.values():
        assert workflow.manifest.models, workflow.name
        assert all(m.url for m in workflow.manifest.models), workflow.name
