"""Refusals speak the users' words: for every shipped workflow, every way a value can be
wrong (missing, wrong type, out of bounds, too long, not a choice), an unknown option, a
mode or shape that does not exist, is refused with a sentence that names the parameter
by its title (what /serve and its forms show), never by the manifest's internal name."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from stillhouse.intake import GenerationRequest, Refusal
from stillhouse.schemas.manifest import Parameter, ParamType, ParamValue, Purpose
from stillhouse.services import Services
from stillhouse.workflows.loader import Workflow, WorkflowCatalog

CATALOG = WorkflowCatalog.load()
IMAGE = "https://cdn.discordapp.com/attachments/1/2/cat.png"


def internal_names(workflow: Workflow) -> set[str]:
    """Parameter names users never see: those whose title differs from the name."""
    params = workflow.manifest.parameters
    return {n for n, p in params.items() if p.label(n) != n}


def labels(workflow: Workflow) -> set[str]:
    return {p.label(n) for n, p in workflow.manifest.parameters.items()}


def wrong_values(parameter: Parameter) -> Iterator[object]:
    """Values the parameter refuses."""
    kind = parameter.type
    if kind in (ParamType.INT, ParamType.SEED, ParamType.FLOAT):
        yield "many"
        if parameter.min is not None:
            yield parameter.min - 1000
        if parameter.max is not None:
            yield parameter.max + 1000
    elif kind is ParamType.CHOICE:
        yield "no-such-choice"
    elif kind is ParamType.STRING:
        yield "x" * 5000
        yield 12
    elif kind is ParamType.BOOL:
        yield "perhaps"
    elif kind is ParamType.IMAGE:
        yield "http://insecure.example/cat.png"


def refusals(services: Services, workflow: Workflow) -> Iterator[str]:
    manifest = workflow.manifest
    good: dict[str, ParamValue] = {}
    for name, parameter in manifest.parameters.items():
        if parameter.required:
            good[name] = IMAGE if parameter.type is ParamType.IMAGE else "a lighthouse"
    attempts: list[GenerationRequest] = []
    for name, parameter in manifest.parameters.items():
        for wrong in wrong_values(parameter):
            values = {**good, name: wrong}
            attempts.append(
                GenerationRequest(workflow=workflow.name, values=values, purpose=manifest.purpose)
            )
        if parameter.required:
            values = {k: v for k, v in good.items() if k != name}
            attempts.append(
                GenerationRequest(workflow=workflow.name, values=values, purpose=manifest.purpose)
            )
    attempts.append(
        GenerationRequest(
            workflow=workflow.name,
            values={**good, "sampler_name": "euler", "sharpness": 3},
            preset="ultra",
            aspect="wide",
            purpose=manifest.purpose,
        )
    )
    for attempt in attempts:
        with pytest.raises(Refusal) as refused:
            services.intake.prepare(attempt)
        yield str(refused.value)


@pytest.mark.parametrize("name", CATALOG.names())
def test_no_refusal_names_a_parameter_by_its_internal_name(
    maria_services: Services, name: str
) -> None:
    workflow = CATALOG.get(name)
    hidden = internal_names(workflow) | {"sampler_name", "cfg_scale", "ckpt_name"}
    texts = list(refusals(maria_services, workflow))
    assert texts
    for text in texts:
        # What is left once the names users read are taken out ("control image" holds
        # "image", a name users do read too) must not name a parameter.
        rest = text
        for label in sorted(labels(workflow), key=len, reverse=True):
            rest = rest.replace(label, "")
        for word in hidden:
            assert not re.search(rf"\b{re.escape(word)}\b", rest), (word, text)


def test_a_refusal_names_the_option_as_the_form_shows_it(maria_services: Services) -> None:
    request = GenerationRequest(
        workflow="sdxl-txt2img", values={"prompt": "p", "cfg": 99, "denoise": 0.5}
    )
    with pytest.raises(Refusal) as refused:
        maria_services.intake.prepare(request)
    text = str(refused.value)
    assert "guidance is 99" in text, text
    assert "has no option “denoise”" in text, text
    assert "cfg" not in text


def test_an_unknown_workflow_is_found_by_a_loose_name(maria_services: Services) -> None:
    for typed in ("sdxl", "SDXL", "Stable Diffusion XL", "sd 1.5", "sd15"):
        bound = maria_services.intake.prepare(
            GenerationRequest(workflow=typed, values={"prompt": "p"})
        )
        assert bound.workflow in ("sdxl-txt2img", "sd15-txt2img"), (typed, bound.workflow)
    image = maria_services.intake.catalog.find("sdxl", Purpose.IMG2IMG)
    assert image.name == "sdxl-img2img"
