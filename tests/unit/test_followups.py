"""The buttons' follow-ups keep a result's family, checkpoint and LoRAs
(stillhouse.followups), on the shipped workflows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stillhouse.followups import (
    DENOISE,
    PURPOSE,
    FollowUp,
    NotOffered,
    family_of,
    plan,
    workflow_for,
    zoom_padding,
)
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.jobs import JobParams, Routing
from stillhouse.schemas.manifest import Family, Purpose
from stillhouse.schemas.states import JobStatus
from stillhouse.workflows.loader import WorkflowCatalog

CATALOG = WorkflowCatalog.load()
PREFIX = "stillhouse/"
NOW = datetime(2026, 11, 30, tzinfo=UTC)
PREFERRED = {Purpose.UPSCALE: "upscale-2x", Purpose.VARIATIONS: "sd15-variations"}


def job(public_id: str, workflow: str, **params: object) -> JobRecord:
    return JobRecord.model_validate(
        {
            "id": 1,
            "public_id": public_id,
            "partition_id": 0,
            "status": JobStatus.SUCCEEDED,
            "priority": 0,
            "routing": Routing(),
            "interaction_id": None,
            "workflow_name": workflow,
            "workflow_version": "1",
            "params": JobParams(params),
            "graph": ComfyGraph({}),
            "inputs": [],
            "attempts": 1,
            "max_attempts": 3,
            "claims": 1,
            "run_after": NOW,
            "lease_owner": None,
            "lease_expires_at": None,
            "cancel_requested": False,
            "backend_job_id": None,
            "submitting_since": None,
            "lost_submits": 0,
            "progress": None,
            "progress_note": None,
            "result": None,
            "error": None,
            "created_at": NOW,
            "updated_at": NOW,
            "dispatched_at": NOW,
            "started_at": NOW,
            "finished_at": NOW,
        }
    )


SDXL = job("sdxlsourcejob001", "sdxl-txt2img", prompt="a fox", negative_prompt="blur",
           model="juggernaut_xl.safetensors", loras="pixel_xl.safetensors:0.8", seed=3)  # fmt: skip
UPSCALED = job("upscaledjob00001", "upscale-2x", image=f"{PREFIX}sdxlsourcejob001/abcdefgh.png")
JOBS = {j.public_id: j for j in (SDXL, UPSCALED)}


@pytest.mark.parametrize("follow_up", [f for f in FollowUp if PURPOSE[f] is not Purpose.UPSCALE])
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_every_follow_up_has_a_workflow_of_the_results_family(
    follow_up: FollowUp, family: str
) -> None:
    chosen = workflow_for(CATALOG, PURPOSE[follow_up], Family(family), PREFERRED)
    assert chosen.manifest.family is Family(family)
    assert chosen.manifest.purpose is PURPOSE[follow_up]


def test_the_operators_choice_is_used_only_for_its_own_family() -> None:
    sd15 = workflow_for(CATALOG, Purpose.VARIATIONS, Family.SD15, PREFERRED)
    sdxl = workflow_for(CATALOG, Purpose.VARIATIONS, Family.SDXL, PREFERRED)
    assert (sd15.name, sdxl.name) == ("sd15-variations", "sdxl-variations")
    # An upscaler knows no family: the operators' serves every one.
    assert workflow_for(CATALOG, Purpose.UPSCALE, Family.FLUX, PREFERRED).name == "upscale-2x"


def test_a_family_without_such_a_workflow_is_told_so() -> None:
    with pytest.raises(NotOffered, match=r"There is no zoom out for FLUX images here\."):
        workflow_for(CATALOG, Purpose.OUTPAINT, Family.FLUX, PREFERRED)


def test_vary_keeps_the_prompt_checkpoint_and_loras_and_sets_its_strength() -> None:
    for follow_up in (FollowUp.VARY_SUBTLE, FollowUp.VARY_STRONG):
        made = plan(follow_up, SDXL, "k.png", (1024, 1024), CATALOG, JOBS.get, prefix=PREFIX)
        assert made.workflow.name == "sdxl-img2img"
        assert made.values == {
            "prompt": "a fox",
            "negative_prompt": "blur",
            "model": "juggernaut_xl.safetensors",
            "loras": "pixel_xl.safetensors:0.8",
            "image": "k.png",
            "denoise": DENOISE[follow_up],
        }


def test_an_upscaled_result_varies_in_the_family_and_with_the_prompt_it_came_from() -> None:
    assert family_of(UPSCALED, CATALOG, JOBS.get, PREFIX) is Family.SDXL
    made = plan(FollowUp.VARIATIONS, UPSCALED, "u.png", (2048, 2048), CATALOG, JOBS.get,
                prefix=PREFIX, preferred=PREFERRED)  # fmt: skip
    assert made.workflow.name == "sdxl-variations"
    assert made.values["prompt"] == "a fox" and made.values["image"] == "u.png"
    assert made.values["model"] == "juggernaut_xl.safetensors"


def test_the_checkpoint_and_loras_stay_behind_when_the_family_changes() -> None:
    # The operators' upscaler has no family: it takes neither.
    made = plan(FollowUp.UPSCALE, SDXL, "k.png", (64, 64), CATALOG, JOBS.get, prefix=PREFIX,
                preferred=PREFERRED)  # fmt: skip
    assert made.workflow.name == "upscale-2x"
    assert made.values == {"image": "k.png"}


def test_zoom_out_and_pan_pad_in_multiples_of_8() -> None:
    sides = {"left", "right", "top", "bottom"}
    assert zoom_padding((1024, 768), 2.0, dict.fromkeys(sides)) == {
        "left": 512, "right": 512, "top": 384, "bottom": 384,
    }  # fmt: skip
    assert zoom_padding((1000, 600), 1.5, dict.fromkeys(sides)) == {
        "left": 248, "right": 248, "top": 152, "bottom": 152,
    }  # fmt: skip
    made = plan(FollowUp.PAN_LEFT, SDXL, "k.png", (1024, 768), CATALOG, JOBS.get, prefix=PREFIX)
    assert made.workflow.name == "sdxl-outpaint"
    assert made.values["left"] == 512 and "right" not in made.values
