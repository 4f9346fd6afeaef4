"""LoRAs chained into graphs: each LoRA reads the one before, everything that read the
checkpoint reads the last LoRA, the result validates against ComfyUI's node schemas, the
choice is recorded so the same parameters render the same bytes, and what a workflow
cannot take is refused in a sentence."""

from __future__ import annotations

import random
from typing import Any

import pytest

from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.manifest import LoraSocket
from stillhouse.workflows.binder import ParameterError, bind
from stillhouse.workflows.checks import check_workflow
from stillhouse.workflows.loader import Workflow, WorkflowCatalog
from stillhouse.workflows.loras import LoraChoice
from stillhouse.workflows.node_schemas import NodeSchemas
from stillhouse.workflows.validator import validate_graph

CATALOG = WorkflowCatalog.load()
SCHEMAS = NodeSchemas.load()
SD15 = CATALOG.get("sd15-txt2img")
CHECKPOINT = "4"  # the sd15 graph's CheckpointLoaderSimple
SAMPLER, POSITIVE, NEGATIVE = "3", "6", "7"
VALUES = {"prompt": "a lighthouse at dawn", "seed": 7}


def loras(count: int) -> list[LoraChoice]:
    return [LoraChoice(f"style-{n}.safetensors", 0.5 + n / 10, 0.25) for n in range(count)]


def upstream(graph: ComfyGraph, node_id: str, input_name: str) -> list[str]:
    """The LoRA nodes an input reads through, nearest first, then the node it ends at."""
    nodes = graph.root
    link: Any = nodes[node_id].inputs[input_name]
    path = [link[0]]
    while nodes[path[-1]].class_type in ("LoraLoader", "LoraLoaderModelOnly"):
        node = nodes[path[-1]]
        link = node.inputs["model" if input_name == "model" else "clip"]
        path.append(link[0])
    return path


def files_along(graph: ComfyGraph, path: list[str]) -> list[str]:
    """The LoRA files of a path, from the checkpoint outwards."""
    return [graph.root[n].inputs["lora_name"] for n in reversed(path[:-1])]


def valid(workflow: Workflow, graph: ComfyGraph, chosen: list[LoraChoice]) -> list[str]:
    files = workflow.manifest.model_files() | {c.file for c in chosen}
    return [e.describe() for e in validate_graph(graph, SCHEMAS, model_files=files)]


def test_no_loras_leave_the_graph_and_the_parameters_as_they_were() -> None:
    plain = bind(SD15, VALUES)
    none = bind(SD15, VALUES, loras=[])
    assert none.graph_json() == plain.graph_json()
    assert "loras" not in none.params.root
    assert none.graph.root[SAMPLER].inputs["model"] == [CHECKPOINT, 0]


@pytest.mark.parametrize("count", [1, 2, 4])
def test_loras_chain_in_order_between_the_checkpoint_and_everything_that_read_it(
    count: int,
) -> None:
    chosen = loras(count)
    bound = bind(SD15, VALUES, loras=chosen)
    graph = bound.graph
    files = [c.file for c in chosen]

    # The sampler's model and both prompts' clip reach the checkpoint only through every
    # LoRA, in the order given.
    model_path = upstream(graph, SAMPLER, "model")
    assert model_path[-1] == CHECKPOINT and len(model_path) == count + 1
    assert files_along(graph, model_path) == files
    for encoder in (POSITIVE, NEGATIVE):
        clip_path = upstream(graph, encoder, "clip")
        assert clip_path == model_path
    first = graph.root[model_path[-2]]
    assert first.inputs["model"] == [CHECKPOINT, 0] and first.inputs["clip"] == [CHECKPOINT, 1]
    # Nothing but the first LoRA reads the checkpoint's model or clip any more.
    readers = [
        node_id
        for node_id, node in graph.root.items()
        for value in node.inputs.values()
        if value in ([CHECKPOINT, 0], [CHECKPOINT, 1])
    ]
    assert set(readers) == {model_path[-2]}
    # New ids collide with none of the template's.
    assert set(SD15.graph.root) < set(graph.root)
    assert len(graph.root) == len(SD15.graph.root) + count

    strengths = [
        (graph.root[n].inputs["strength_model"], graph.root[n].inputs["strength_clip"])
        for n in reversed(model_path[:-1])
    ]
    assert strengths == [(c.strength_model, c.strength_clip) for c in chosen]
    assert valid(SD15, graph, chosen) == []


def test_the_recorded_loras_render_the_same_graph_again() -> None:
    chosen = [LoraChoice("detail.safetensors", 0.8, 0.8), LoraChoice("ink.safetensors", 1, 0.5)]
    first = bind(SD15, VALUES, loras=chosen)
    assert first.params.root["loras"] == "detail.safetensors:0.8,ink.safetensors:1:0.5"
    again = bind(SD15, first.params.root)  # what Reroll sends: the job's parameters
    assert again.graph_json() == first.graph_json()
    assert again.params == first.params


def test_more_loras_than_the_socket_takes_are_refused_in_a_sentence() -> None:
    with pytest.raises(ParameterError) as refused:
        bind(SD15, VALUES, loras=loras(5))
    assert refused.value.problems == ["Stable Diffusion 1.5 takes at most 4 LoRAs (got 5)"]


def test_loras_on_a_workflow_without_a_socket_are_refused() -> None:
    upscale = CATALOG.get("upscale-2x")
    assert upscale.manifest.loras is None
    with pytest.raises(ParameterError) as refused:
        bind(upscale, {"image": "https://cdn.example/a.png"}, loras=loras(1))
    assert refused.value.problems == [f"{upscale.manifest.title} takes no LoRAs"]


@pytest.mark.parametrize(
    ("choice", "problem"),
    [
        (LoraChoice("a.safetensors", 2.5), "LoRA 1's strength is 2.5; it must be between -2 and 2"),
        (
            LoraChoice("a.safetensors", 1, float("nan")),
            "LoRA 1's clip strength is nan; it must be between -2 and 2",
        ),
        (LoraChoice("../a.safetensors:1"), "LoRA 1 is not a file name a LoRA can have"),
    ],
)
def test_strengths_outside_minus_two_to_two_and_odd_names_are_refused(
    choice: LoraChoice, problem: str
) -> None:
    with pytest.raises(ParameterError) as refused:
        bind(SD15, VALUES, loras=[choice])
    assert refused.value.problems == [problem]


def test_a_model_only_socket_chains_model_only_loaders_and_leaves_the_clip_alone() -> None:
    manifest = SD15.manifest.model_copy(
        update={"loras": LoraSocket(model=(CHECKPOINT, 0), clip=None, max=2)}
    )
    workflow = SD15.model_copy(update={"manifest": manifest})
    chosen = [LoraChoice("a.safetensors", 0.7, 0.1), LoraChoice("b.safetensors", 1.2)]
    bound = bind(workflow, VALUES, loras=chosen)
    graph = bound.graph
    path = upstream(graph, SAMPLER, "model")
    assert [graph.root[n].class_type for n in path] == [
        "LoraLoaderModelOnly",
        "LoraLoaderModelOnly",
        "CheckpointLoaderSimple",
    ]
    assert files_along(graph, path) == ["a.safetensors", "b.safetensors"]
    assert "strength_clip" not in graph.root[path[0]].inputs
    for encoder in (POSITIVE, NEGATIVE):
        assert graph.root[encoder].inputs["clip"] == [CHECKPOINT, 1]
    # Only the model strength counts, so only it is recorded.
    assert bound.params.root["loras"] == "a.safetensors:0.7,b.safetensors:1.2"
    assert bind(workflow, bound.params.root).graph_json() == bound.graph_json()
    assert valid(workflow, graph, chosen) == []


def test_new_node_ids_stay_clear_of_any_the_template_uses() -> None:
    taken = {**SD15.graph.root, "lora1": SD15.graph.root["5"], "10": SD15.graph.root["5"]}
    workflow = SD15.model_copy(update={"graph": ComfyGraph(taken)})
    bound = bind(workflow, VALUES, loras=loras(2), rng=random.Random(0))
    added = set(bound.graph.root) - set(taken)
    assert added == {"11", "12"}


def test_workflows_check_renders_with_loras_and_finds_a_socket_that_is_not_a_model() -> None:
    assert check_workflow(SD15, SCHEMAS) == []
    # The socket pointing at the latent instead of the checkpoint's MODEL output.
    manifest = SD15.manifest.model_copy(
        update={"loras": LoraSocket(model=("5", 0), clip=(CHECKPOINT, 1))}
    )
    broken = SD15.model_copy(update={"manifest": manifest})
    problems = check_workflow(broken, SCHEMAS)
    assert problems, "a LoRA socket on a LATENT output must fail the check"
    assert all(p.startswith("sd15-txt2img: 1 LoRA") or "4 LoRAs" in p for p in problems)
    assert any("received_type(LATENT) mismatch input_type(MODEL)" in p for p in problems)
