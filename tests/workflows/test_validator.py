"""Offline validation agrees with what the real ComfyUI said about the captured graphs."""

from __future__ import annotations

import copy

import pytest

from stillhouse.schemas.graph import ComfyGraph
from stillhouse.workflows.node_schemas import NodeSchemas
from stillhouse.workflows.validator import GraphError, validate_graph
from tests.workflows.captures import CAPTURED_MODELS, captured_graph, captured_rejection

SCHEMAS = NodeSchemas.load()


def errors_of(graph: ComfyGraph) -> list[GraphError]:
    return validate_graph(graph, SCHEMAS, model_files=CAPTURED_MODELS)


@pytest.mark.parametrize("name", ["bad_ckpt", "bad_link", "bad_width"])
def test_captured_bad_graphs_are_refused_naming_what_comfyui_named(name: str) -> None:
    answer = captured_rejection(f"resp_bad_{name.removeprefix('bad_')}.txt")
    [(node_id, node_error)] = answer["node_errors"].items()
    [theirs] = node_error["errors"]

    [ours] = errors_of(captured_graph(f"{name}.json"))

    assert ours.node_id == node_id
    assert ours.class_type == node_error["class_type"]
    assert ours.input == theirs["extra_info"]["input_name"]
    assert ours.type == theirs["type"]
    assert ours.message == theirs["message"]
    if name == "bad_ckpt":  # ComfyUI lists its installed files; we list the declared ones
        assert ours.details.startswith("ckpt_name: 'nope.safetensors' not in [")
    else:
        assert ours.details == theirs["details"]


@pytest.mark.parametrize(
    "name", ["txt2img_64_s1", "txt2img_256_s4", "txt2img_512_s1", "runtime_error", "save_ckpt"]
)
def test_graphs_comfyui_accepted_pass(name: str) -> None:
    assert errors_of(captured_graph(f"{name}.json")) == []


def base() -> dict[str, dict[str, object]]:
    return captured_graph("txt2img_64_s1.json").model_dump(by_alias=True)


def validate_edited(**edits: object) -> list[GraphError]:
    graph = copy.deepcopy(base())
    for path, value in edits.items():
        node, field = path.split("__")
        if value is None:
            graph[node]["inputs"].pop(field)  # type: ignore[attr-defined]
        else:
            graph[node]["inputs"][field] = value  # type: ignore[index]
    return errors_of(ComfyGraph.model_validate(graph))


def only(errors: list[GraphError]) -> GraphError:
    assert len(errors) == 1, [e.describe() for e in errors]
    return errors[0]


def test_unknown_node_type_is_named_as_comfyui_does() -> None:
    graph = base()
    graph["5"]["class_type"] = "EmptyLatentImageXL"
    error = only(errors_of(ComfyGraph.model_validate(graph)))
    assert error.type == "invalid_prompt"
    assert error.message == "Cannot execute because node EmptyLatentImageXL does not exist."
    assert error.details == "Node ID '#5'"


def test_missing_required_input() -> None:
    error = only(validate_edited(**{"3__steps": None}))
    assert (error.node_id, error.input, error.type) == ("3", "steps", "required_input_missing")
    assert error.message == "Required input is missing"


def test_link_to_a_missing_node_or_output() -> None:
    dangling = only(validate_edited(**{"8__samples": ["99", 0]}))
    assert (dangling.node_id, dangling.input, dangling.type) == ("8", "samples", "bad_linked_input")
    assert "'99'" in dangling.details
    slot = only(validate_edited(**{"8__vae": ["4", 7]}))
    assert slot.type == "bad_linked_input" and "no output 7" in slot.details


def test_a_value_where_only_a_link_can_go() -> None:
    error = only(validate_edited(**{"3__model": "rand-sd15.safetensors"}))
    assert (error.input, error.type) == ("model", "link_required")


def test_numbers_respect_min_max_and_integer_steps() -> None:
    low = only(validate_edited(**{"3__steps": 0}))
    assert (low.type, low.message) == ("value_smaller_than_min", "Value 0 smaller than min of 1")
    high = only(validate_edited(**{"3__cfg": 150.0}))
    assert (high.type, high.message) == (
        "value_bigger_than_max",
        "Value 150.0 bigger than max of 100.0",
    )
    off_step = only(validate_edited(**{"5__width": 100}))
    assert (off_step.input, off_step.type) == ("width", "value_not_on_step")
    assert validate_edited(**{"5__width": 72}) == []


def test_text_where_a_number_goes() -> None:
    error = only(validate_edited(**{"3__seed": "forty-two"}))
    assert error.type == "invalid_input_type"
    assert error.message == "Failed to convert an input value to a INT value"


def test_enums_and_model_files() -> None:
    sampler = only(validate_edited(**{"3__sampler_name": "euler_x"}))
    assert (sampler.type, sampler.message) == ("value_not_in_list", "Value not in list")
    model = only(validate_edited(**{"4__ckpt_name": "other.safetensors"}))
    assert model.input == "ckpt_name" and "other.safetensors" in model.details
    graph = ComfyGraph.model_validate(base())
    assert validate_graph(graph, SCHEMAS, model_files={"rand-sd15.safetensors"}) == []
    assert only(validate_graph(graph, SCHEMAS, model_files=set())).input == "ckpt_name"


def test_uploaded_image_names_must_be_plain_file_names() -> None:
    graph = base()
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": "../../etc/passwd"}}
    error = only(errors_of(ComfyGraph.model_validate(graph)))
    assert (error.node_id, error.input) == ("10", "image")
    graph["10"]["inputs"]["image"] = "in-0123.png"  # type: ignore[index]
    assert errors_of(ComfyGraph.model_validate(graph)) == []


def test_a_graph_without_an_output_node() -> None:
    graph = base()
    del graph["9"]
    error = only(errors_of(ComfyGraph.model_validate(graph)))
    assert (error.type, error.message) == ("prompt_no_outputs", "Prompt has no outputs")


def test_describe_names_node_class_and_input() -> None:
    error = only(validate_edited(**{"5__width": 100000}))
    assert error.describe("sd15") == (
        "sd15: node 5 (EmptyLatentImage) input width: Value 100000 bigger than max of 16384: width"
    )
