"""Binding typed values into graphs: in-bounds values always validate, out-of-bounds ones
never reach a graph, and the same values always give the same bytes."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stillhouse.schemas.manifest import ParamType
from stillhouse.workflows.binder import ParameterError, bind
from stillhouse.workflows.loader import Workflow, WorkflowCatalog
from stillhouse.workflows.node_schemas import NodeSchemas
from stillhouse.workflows.validator import validate_graph
from tests.workflows.strategies import invalid_value, valid_value

CATALOG = WorkflowCatalog.load()
SCHEMAS = NodeSchemas.load()
SHIPPED = CATALOG.names()


def values_for(workflow: Workflow) -> st.SearchStrategy[dict[str, object]]:
    params = workflow.manifest.parameters
    required = {n: valid_value(p) for n, p in params.items() if p.required}
    optional = {n: valid_value(p) for n, p in params.items() if not p.required}
    checkpoint = workflow.manifest.checkpoint
    if checkpoint is not None:  # a file name: valid when it is a checkpoint the graph may load
        files = sorted(m.file for m in workflow.manifest.models if m.folder == "checkpoints")
        optional[checkpoint] = st.sampled_from(files)
    return st.fixed_dictionaries(required, optional=optional)


@pytest.mark.parametrize("name", SHIPPED)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_values_inside_the_bounds_bind_to_a_graph_that_validates(
    name: str, data: st.DataObject
) -> None:
    workflow = CATALOG.get(name)
    manifest = workflow.manifest
    values = data.draw(values_for(workflow))
    preset = data.draw(st.sampled_from([None, *manifest.presets]))
    bound = bind(workflow, values, preset=preset, rng=random.Random(1))
    errors = validate_graph(bound.graph, SCHEMAS, model_files=manifest.model_files())
    assert errors == [], [e.describe(name) for e in errors]
    sources = {source.name for source in bound.inputs}
    for key, value in values.items():
        parameter = manifest.parameters[key]
        for target in parameter.bind:
            placed = bound.graph.root[target.node].inputs[target.input]
            if parameter.type is ParamType.IMAGE:
                assert placed in sources
            else:
                assert placed == value


@pytest.mark.parametrize("name", SHIPPED)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_values_outside_the_bounds_are_refused_by_name(name: str, data: st.DataObject) -> None:
    workflow = CATALOG.get(name)
    params = workflow.manifest.parameters
    target = data.draw(st.sampled_from(sorted(params)))
    values = data.draw(values_for(workflow))
    values[target] = data.draw(invalid_value(params[target]))
    with pytest.raises(ParameterError) as refused:
        bind(workflow, values, rng=random.Random(1))
    label = params[target].label(target)  # problems name parameters as users read them
    assert any(problem.startswith(label) for problem in refused.value.problems), (
        refused.value.problems
    )


def test_the_same_values_and_seed_render_the_same_bytes() -> None:
    workflow = CATALOG.get("sd15-txt2img")
    values = {"prompt": "a lighthouse at dawn", "seed": 1234, "steps": 25, "cfg": 6.5}
    first = bind(workflow, values, preset="quality", aspect="portrait").graph_json()
    again = bind(
        workflow, dict(reversed(list(values.items()))), preset="quality", aspect="portrait"
    )
    assert again.graph_json() == first


def test_a_missing_seed_is_drawn_and_recorded_so_the_render_repeats() -> None:
    workflow = CATALOG.get("sdxl-txt2img")
    first = bind(workflow, {"prompt": "a fox"})
    seed = first.params.root["seed"]
    assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
    assert first.graph.root["3"].inputs["seed"] == seed
    replay = bind(workflow, first.params.root)
    assert replay.graph_json() == first.graph_json()
    drawn = {bind(workflow, {"prompt": "a fox"}).params.root["seed"] for _ in range(5)}
    assert len(drawn) > 1, "seeds are not drawn at random"


def test_prompt_text_never_becomes_graph_structure() -> None:
    workflow = CATALOG.get("sd15-txt2img")
    hostile = 'x", "class_type": "Evil"}, "99": {"class_type": "SaveImage", "inputs": {}} //'
    bound = bind(workflow, {"prompt": hostile, "seed": 1})
    assert bound.graph.root["6"].inputs["text"] == hostile
    assert set(bound.graph.root) == set(workflow.graph.root)
    assert json.loads(bound.graph_json())["6"]["inputs"]["text"] == hostile


def test_precedence_defaults_then_preset_then_aspect_then_user() -> None:
    workflow = CATALOG.get("sd15-txt2img")
    bound = bind(
        workflow,
        {"prompt": "p", "seed": 1, "steps": 40, "height": 640},
        preset="fast",
        aspect="landscape",
    )
    params = bound.params.root
    assert params["steps"] == 40  # user beats preset (12)
    assert params["sampler"] == "euler"  # from the preset
    assert (params["width"], params["height"]) == (768, 640)  # aspect, then the user's height
    assert params["cfg"] == 7.0  # the default


def test_unknown_names_presets_and_aspects_are_refused_clearly() -> None:
    workflow = CATALOG.get("flux-schnell-txt2img")
    with pytest.raises(ParameterError) as refused:
        bind(workflow, {"prompt": "p", "negative_prompt": "blurry"}, preset="ultra", aspect="wide")
    text = " | ".join(refused.value.problems)
    title = workflow.manifest.title
    assert f"{title} has no option “negative prompt” (its options: " in text
    assert "mode “ultra” is not one of fast, quality" in text
    assert "shape “wide” is not one of landscape, portrait, square" in text
    assert "negative_prompt" not in text


def test_a_users_image_becomes_an_input_for_the_worker() -> None:
    workflow = CATALOG.get("sd15-img2img")
    url = "https://cdn.discordapp.com/attachments/1/2/cat.JPG?ex=abc"
    bound = bind(workflow, {"prompt": "a cat as a lion", "image": url, "seed": 3})
    [source] = bound.inputs
    assert str(source.url) == url and source.storage_key is None
    assert source.name.startswith("image-") and source.name.endswith(".jpg")
    assert bound.graph.root["10"].inputs["image"] == source.name
    assert bound.params.root["image"] == url
    earlier = bind(CATALOG.get("upscale-2x"), {"image": "stillhouse/AbC123/x.png"})
    assert earlier.inputs[0].storage_key == "stillhouse/AbC123/x.png"
