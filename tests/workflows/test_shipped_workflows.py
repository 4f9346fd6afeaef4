"""Each shipped workflow: it checks clean, and binds the way its purpose needs."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from stillhouse.schemas.manifest import Family, ParamType, Purpose
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
    workflow = CATALOG.get("upscale-2x")
    assert workflow.manifest.purpose is Purpose.UPSCALE
    fast = render(workflow.name, image="stillhouse/job1/a.png", preset="fast")
    quality = render(workflow.name, image="stillhouse/job1/a.png", preset="quality")
    assert inputs_of(fast, "2")["model_name"] == "RealESRGAN_x2.pth"
    assert inputs_of(fast, "4")["scale_by"] == 1.0
    assert inputs_of(quality, "2")["model_name"] == "RealESRGAN_x4.pth"
    assert inputs_of(quality, "4")["scale_by"] == 0.5  # 4x then half: 2x overall
    assert fast.inputs[0].storage_key == "stillhouse/job1/a.png"
    assert {m.folder for m in workflow.manifest.models} == {"upscale_models"}


@pytest.mark.parametrize("name", ["sd15-variations", "sdxl-variations"])
def test_variations_make_four_new_takes_on_an_earlier_result(name: str) -> None:
    workflow = CATALOG.get(name)
    assert workflow.manifest.purpose is Purpose.VARIATIONS
    first = bind(workflow, {"prompt": "a lighthouse", "image": "stillhouse/job1/a.png"})
    second = bind(workflow, {"prompt": "a lighthouse", "image": "stillhouse/job1/a.png"})
    assert inputs_of(first, "13")["amount"] == 4
    assert first.params.root["seed"] != second.params.root["seed"]
    render(workflow.name, prompt="a lighthouse", image="stillhouse/job1/a.png")


def test_every_model_a_workflow_loads_is_declared_with_a_download() -> None:
    for workflow in CATALOG.workflows.values():
        assert workflow.manifest.models, workflow.name
        assert all(m.url for m in workflow.manifest.models), workflow.name


# What the buttons under a result need in each diffusion family (FLUX: generate and img2img).
FAMILY_PURPOSES = {
    Family.SD15: set(Purpose) - {Purpose.UPSCALE},
    Family.SDXL: set(Purpose) - {Purpose.UPSCALE},
    Family.FLUX: {Purpose.GENERATE, Purpose.IMG2IMG},
}


@pytest.mark.parametrize("family", list(Family))
def test_each_family_has_a_workflow_for_every_button(family: Family) -> None:
    served = {w.manifest.purpose for w in CATALOG.workflows.values() if w.manifest.family is family}
    assert FAMILY_PURPOSES[family] <= served, sorted(FAMILY_PURPOSES[family] - served)
    assert {w.name for w in CATALOG.for_purpose(Purpose.UPSCALE) if w.manifest.family is None}


def test_family_workflows_name_their_checkpoint_and_lora_socket() -> None:
    for workflow in CATALOG.workflows.values():
        manifest = workflow.manifest
        if manifest.family is None:
            assert manifest.checkpoint is None and manifest.loras is None, workflow.name
            continue
        assert manifest.checkpoint is not None and manifest.loras is not None, workflow.name
        checkpoint = manifest.parameters[manifest.checkpoint]
        assert checkpoint.type is ParamType.STRING and not checkpoint.offer, workflow.name
        checkpoints = {m.file for m in manifest.models if m.folder == "checkpoints"}
        assert checkpoint.default in checkpoints, workflow.name
        loader = workflow.graph.root[checkpoint.bind[0].node]
        assert checkpoint.bind[0].input == "ckpt_name", workflow.name
        socket = manifest.loras
        assert socket.model[0] in workflow.graph.root and socket.clip is not None, workflow.name
        model_out = SCHEMAS.get(workflow.graph.root[socket.model[0]].class_type)
        clip_out = SCHEMAS.get(workflow.graph.root[socket.clip[0]].class_type)
        assert model_out is not None and model_out.outputs[socket.model[1]] == "MODEL"
        assert clip_out is not None and clip_out.outputs[socket.clip[1]] == "CLIP"
        assert loader.class_type == "CheckpointLoaderSimple", workflow.name


def test_every_parameter_has_a_title_and_images_are_not_typed() -> None:
    for workflow in CATALOG.workflows.values():
        manifest = workflow.manifest
        for name, parameter in manifest.parameters.items():
            assert parameter.title, f"{workflow.name}: {name}"
            if parameter.type is ParamType.IMAGE or name in ("width", "height", "model"):
                assert not parameter.offer, f"{workflow.name}: {name}"


def test_img2img_keeps_a_denoise_titled_strength() -> None:
    for workflow in CATALOG.for_purpose(Purpose.IMG2IMG):
        denoise = workflow.manifest.parameters["denoise"]
        assert denoise.label("denoise") == "strength", workflow.name
    sdxl = CATALOG.get("sdxl-img2img").manifest.parameters["denoise"]
    assert (sdxl.default, sdxl.min, sdxl.max) == (0.55, 0.05, 1.0)


@pytest.mark.parametrize("name", ["sd15-inpaint", "sdxl-inpaint"])
def test_inpaint_repaints_where_a_mask_is_white(name: str) -> None:
    bound = render(
        name,
        prompt="a red door",
        image="stillhouse/job1/a.png",
        mask="stillhouse/job1/mask.png",
        count=2,
    )
    image, mask = bound.inputs
    graph = bound.graph.root
    assert inputs_of(bound, "10")["image"] == image.name
    assert graph["14"].class_type == "LoadImageMask" and inputs_of(bound, "14") == {
        "image": mask.name,
        "channel": "red",  # white (1.0) repaints, black (0.0) keeps
    }
    assert graph["15"].class_type == "SetLatentNoiseMask"
    assert inputs_of(bound, "3")["denoise"] == 0.9 and inputs_of(bound, "13")["amount"] == 2


@pytest.mark.parametrize("name", ["sd15-outpaint", "sdxl-outpaint"])
def test_outpaint_pads_the_sides_it_is_given(name: str) -> None:
    sides = {"left": 256, "top": 256, "right": 256, "bottom": 256}
    bound = render(name, prompt="a wide beach", image="stillhouse/job1/a.png", **sides)
    pad = inputs_of(bound, "16")
    assert {side: pad[side] for side in sides} == sides
    assert bound.graph.root["17"].class_type == "VAEEncodeForInpaint"
    assert inputs_of(bound, "3")["denoise"] == 1.0
    for side in sides:
        parameter = CATALOG.get(name).manifest.parameters[side]
        assert (parameter.default, parameter.step, parameter.offer) == (0, 8, False)


@pytest.mark.parametrize("name", ["sd15-upscale-creative", "sdxl-upscale-creative"])
def test_creative_upscale_enlarges_then_redraws_lightly(name: str) -> None:
    bound = render(name, prompt="a harbour", image="stillhouse/job1/a.png", preset="quality")
    assert inputs_of(bound, "18")["model_name"] == "RealESRGAN_x2.pth"
    assert inputs_of(bound, "11")["pixels"] == ["19", 0]
    assert inputs_of(bound, "3")["denoise"] == 0.3


def test_canny_follows_the_edges_of_a_control_image() -> None:
    bound = render(
        "sd15-canny",
        prompt="a castle",
        image="stillhouse/job1/a.png",
        control_strength=0.7,
        count=2,
    )
    manifest = CATALOG.get("sd15-canny").manifest
    assert manifest.purpose is Purpose.GENERATE
    assert manifest.parameters["image"].required
    assert manifest.parameters["image"].label("image") == "control image"
    assert inputs_of(bound, "22")["strength"] == 0.7
    assert inputs_of(bound, "3")["positive"] == ["22", 0]
    assert inputs_of(bound, "5")["batch_size"] == 2


def test_upscale_4x_uses_the_4x_model() -> None:
    bound = render("upscale-4x", image="stillhouse/job1/a.png", preset="fast")
    assert inputs_of(bound, "2")["model_name"] == "RealESRGAN_x4.pth"
    assert inputs_of(bound, "4")["scale_by"] == 1.0
