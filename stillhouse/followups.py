"""What a button under a result asks for: a new request made from an earlier job that
keeps the earlier job's model family, checkpoint and LoRAs.

Variations, Vary (Subtle / Strong), Upscale (Creative), Zoom Out and Vary Region pick the
workflow for their purpose in the source's family (an SDXL result stays SDXL); Upscale 2x
uses the operators' upscale workflow, which works on any image. A result made by a
workflow of no family (an upscale) takes the family of the result it was made from.
Shared by the fronts: the bot's buttons and the web editor (Vary Region).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum

from stillhouse.errors import StillhouseError
from stillhouse.inputs import ResultOf, key_origin
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.jobs import JobParams
from stillhouse.schemas.manifest import Family, ParamValue, Purpose
from stillhouse.workflows.loader import Workflow, WorkflowCatalog
from stillhouse.workflows.loras import LORAS_PARAM

CARRIED_TEXT = ("prompt", "negative_prompt")
SOURCE_DEPTH = 4  # an upscale of an upscale of ...: how far back to look for a family
ZOOM_ALIGN = 8  # ComfyUI pads in multiples of 8 pixels


class FollowUp(StrEnum):
    """What is asked of an earlier result."""

    VARIATIONS = "variations"
    VARY_SUBTLE = "vary_subtle"
    VARY_STRONG = "vary_strong"
    UPSCALE = "upscale"
    CREATIVE_UPSCALE = "creative_upscale"
    ZOOM_OUT_15 = "zoom_out_1.5"
    ZOOM_OUT_2 = "zoom_out_2"
    PAN_LEFT = "pan_left"
    PAN_RIGHT = "pan_right"
    PAN_UP = "pan_up"
    PAN_DOWN = "pan_down"
    VARY_REGION = "vary_region"


PURPOSE = {
    FollowUp.VARIATIONS: Purpose.VARIATIONS,
    FollowUp.VARY_SUBTLE: Purpose.IMG2IMG,
    FollowUp.VARY_STRONG: Purpose.IMG2IMG,
    FollowUp.UPSCALE: Purpose.UPSCALE,
    FollowUp.CREATIVE_UPSCALE: Purpose.CREATIVE_UPSCALE,
    FollowUp.ZOOM_OUT_15: Purpose.OUTPAINT,
    FollowUp.ZOOM_OUT_2: Purpose.OUTPAINT,
    FollowUp.PAN_LEFT: Purpose.OUTPAINT,
    FollowUp.PAN_RIGHT: Purpose.OUTPAINT,
    FollowUp.PAN_UP: Purpose.OUTPAINT,
    FollowUp.PAN_DOWN: Purpose.OUTPAINT,
    FollowUp.VARY_REGION: Purpose.INPAINT,
}
# How much of the image img2img may change: Midjourney's Subtle and Strong.
DENOISE = {FollowUp.VARY_SUBTLE: 0.35, FollowUp.VARY_STRONG: 0.7}
ZOOM = {FollowUp.ZOOM_OUT_15: 1.5, FollowUp.ZOOM_OUT_2: 2.0}
# Pan: the canvas grows by half its size on one side.
PAN = {
    FollowUp.PAN_LEFT: "left",
    FollowUp.PAN_RIGHT: "right",
    FollowUp.PAN_UP: "top",
    FollowUp.PAN_DOWN: "bottom",
}
PAN_SHARE = 0.5
WORDS = {
    Purpose.VARIATIONS: "variations",
    Purpose.IMG2IMG: "vary",
    Purpose.CREATIVE_UPSCALE: "creative upscale",
    Purpose.OUTPAINT: "zoom out",
    Purpose.INPAINT: "vary region",
    Purpose.UPSCALE: "upscale",
}


class NotOffered(StillhouseError):
    """No workflow here does that for this result (the message is for the user)."""


class Planned:
    """A follow-up's workflow and values (the image and, for Vary Region, the mask are
    added by the caller where they come from elsewhere)."""

    def __init__(self, workflow: Workflow, values: dict[str, ParamValue]) -> None:
        self.workflow = workflow
        self.values = values


JobLookup = Callable[[str], JobRecord | None]


def lineage(job: JobRecord, lookup: JobLookup, prefix: str) -> list[JobRecord]:
    """`job`, then the job whose result it started from, and so on (a few steps)."""
    chain = [job]
    while len(chain) < SOURCE_DEPTH:
        image = chain[-1].params.root.get("image")
        origin = key_origin(image, prefix) if isinstance(image, str) else None
        earlier = lookup(origin.job_id) if isinstance(origin, ResultOf) else None
        if earlier is None:
            break
        chain.append(earlier)
    return chain


def family_of(
    job: JobRecord, catalog: WorkflowCatalog, lookup: JobLookup, prefix: str
) -> Family | None:
    """The model family that made `job`'s images: its workflow's, else (an upscale) that
    of the result it started from."""
    for made in lineage(job, lookup, prefix):
        workflow = catalog.workflows.get(made.workflow_name)
        if workflow is not None and workflow.manifest.family is not None:
            return workflow.manifest.family
    return None


def workflow_for(
    catalog: WorkflowCatalog,
    purpose: Purpose,
    family: Family | None,
    preferred: Mapping[Purpose, str] | None = None,
) -> Workflow:
    """The workflow that does `purpose` for images of `family`: the operators' choice
    for it (`preferred`: the Upscale and Variations buttons' settings) when that fits
    the family, else one of the family's own, else one of no family; NotOffered if none."""
    chosen = catalog.workflows.get((preferred or {}).get(purpose, ""))
    if chosen is not None and chosen.manifest.family in (family, None):
        return chosen
    fitting = [w for w in catalog.for_purpose(purpose) if w.manifest.family in (family, None)]
    # The family's own before a workflow of no family; then by name, for stability.
    fitting.sort(key=lambda w: (w.manifest.family is None, w.name))
    if not fitting:
        shown = family.upper() if family else "this"
        raise NotOffered(f"There is no {WORDS[purpose]} for {shown} images here.")
    return fitting[0]


def plan(
    follow_up: FollowUp,
    job: JobRecord,
    image_key: str,
    size: tuple[int, int],
    catalog: WorkflowCatalog,
    lookup: JobLookup,
    *,
    prefix: str,
    preferred: Mapping[Purpose, str] | None = None,
) -> Planned:
    """The request `follow_up` makes of image `image_key` (`size`: its width and height)
    of `job`: the workflow of its purpose in the job's family, the source's prompt,
    checkpoint and LoRAs where that workflow takes them, and the follow-up's own values."""
    family = family_of(job, catalog, lookup, prefix)
    workflow = workflow_for(catalog, PURPOSE[follow_up], family, preferred)
    # An upscale has no prompt of its own: the values come from the job it enlarged.
    chain = lineage(job, lookup, prefix)
    prompted = next((j for j in chain if "prompt" in j.params.root), job)
    values = carried(prompted.params, workflow, catalog.workflows.get(prompted.workflow_name))
    for name in workflow.manifest.image_parameters()[:1]:
        values[name] = image_key
    offered = workflow.manifest.parameters
    if follow_up in DENOISE and "denoise" in offered:
        values["denoise"] = DENOISE[follow_up]
    if follow_up in ZOOM:
        values.update(zoom_padding(size, ZOOM[follow_up], offered))
    if follow_up in PAN and PAN[follow_up] in offered:
        side = PAN[follow_up]
        length = size[0] if side in ("left", "right") else size[1]
        values[side] = _aligned(length * PAN_SHARE)
    return Planned(workflow, values)


def carried(params: JobParams, target: Workflow, source: Workflow | None) -> dict[str, ParamValue]:
    """The source's prompt, negative prompt, checkpoint and LoRAs that `target` takes
    (the checkpoint and LoRAs only within one family: they fit no other)."""
    offered = target.manifest.parameters
    values: dict[str, ParamValue] = {}
    for name in CARRIED_TEXT:
        value = params.root.get(name)
        if value is not None and name in offered:
            values[name] = value
    same_family = source is not None and source.manifest.family is target.manifest.family
    if not same_family or source is None:
        return values
    wanted, had = target.manifest.checkpoint, source.manifest.checkpoint
    checkpoint = params.root.get(had) if had else None
    if wanted and checkpoint is not None:
        values[wanted] = checkpoint
    loras = params.root.get(LORAS_PARAM)
    if loras and target.manifest.loras is not None:  # the intake resolves them again
        values[LORAS_PARAM] = loras
    return values


def zoom_padding(
    size: tuple[int, int], factor: float, offered: Mapping[str, object]
) -> dict[str, ParamValue]:
    """Padding on each side that makes a `size` image `factor` times as wide and high."""
    width, height = size
    across = _aligned(width * (factor - 1) / 2)
    down = _aligned(height * (factor - 1) / 2)
    padding: dict[str, ParamValue] = {
        "left": across,
        "right": across,
        "top": down,
        "bottom": down,
    }
    return {k: v for k, v in padding.items() if k in offered}


def _aligned(pixels: float) -> int:
    return max(ZOOM_ALIGN, round(pixels / ZOOM_ALIGN) * ZOOM_ALIGN)
