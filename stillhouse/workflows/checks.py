"""`stillhouse workflows check`: is a workflow usable as shipped?

Beyond validating the template graph, every parameter must bind to a real input of a
compatible type whose bounds contain the parameter's, the output nodes must produce
images, and the defaults, every preset and every aspect must render a valid graph.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from stillhouse.schemas.manifest import Parameter, ParamType
from stillhouse.workflows.binder import ParameterError, bind
from stillhouse.workflows.loader import Workflow
from stillhouse.workflows.loras import LORAS_PARAM, LoraChoice
from stillhouse.workflows.node_schemas import InputSpec, NodeSchemas
from stillhouse.workflows.validator import validate_graph

SAMPLE_TEXT = "a lighthouse at dawn"
SAMPLE_IMAGE = "stillhouse/check/sample.png"
SAMPLE_LORA = "stillhouse-check-lora"  # + "-<n>.safetensors"
_TARGET_TYPES = {
    ParamType.STRING: {"STRING"},
    ParamType.INT: {"INT", "FLOAT"},
    ParamType.SEED: {"INT"},
    ParamType.FLOAT: {"FLOAT"},
    ParamType.BOOL: {"BOOLEAN"},
}


def check_workflow(workflow: Workflow, schemas: NodeSchemas) -> list[str]:
    """Every problem with the workflow, one line each; empty when it is ready."""
    manifest = workflow.manifest
    models = manifest.model_files()
    problems = [
        error.describe(workflow.name)
        for error in validate_graph(workflow.graph, schemas, model_files=models)
    ]
    problems += [f"{workflow.name}: {p}" for p in _outputs(workflow, schemas)]
    problems += [f"{workflow.name}: {p}" for p in _bindings(workflow, schemas)]
    if problems:
        return problems  # renders would repeat the same errors
    return [f"{workflow.name}: {p}" for p in _renders(workflow, schemas)]


def _outputs(workflow: Workflow, schemas: NodeSchemas) -> Iterator[str]:
    for node_id in workflow.manifest.outputs:
        node = workflow.graph.root.get(node_id)
        if node is None:
            yield f"output node {node_id} is not in the graph"
            continue
        spec = schemas.get(node.class_type)
        if spec is None:
            continue  # already reported by the graph validation
        takes_images = any(i.type == "IMAGE" for i in spec.inputs.values())
        if not spec.output_node or not takes_images:
            yield f"output node {node_id} ({node.class_type}) does not output images"


def _bindings(workflow: Workflow, schemas: NodeSchemas) -> Iterator[str]:
    for name, parameter in workflow.manifest.parameters.items():
        for binding in parameter.bind:
            node = workflow.graph.root.get(binding.node)
            if node is None:
                yield f"parameter {name} binds to node {binding.node}, which is not in the graph"
                continue
            spec = schemas.get(node.class_type)
            target = spec.inputs.get(binding.input) if spec else None
            if spec is None:
                continue
            if target is None:
                yield (
                    f"parameter {name} binds to {binding}, but {node.class_type} has no input "
                    f"{binding.input!r} (it has {', '.join(spec.inputs)})"
                )
                continue
            for problem in _fits(parameter, target, workflow.manifest.model_files()):
                yield f"parameter {name} -> {binding} ({node.class_type}): {problem}"


def _fits(parameter: Parameter, target: InputSpec, models: set[str]) -> Iterator[str]:
    kind = parameter.type
    if kind is ParamType.IMAGE:
        if not target.upload:
            yield "an image parameter must bind to an image upload input (LoadImage.image)"
        return
    if kind is ParamType.CHOICE:
        if target.type == "COMBO":
            allowed = set(target.options or []) | (models if target.files else set())
            extra = [c for c in parameter.choices or [] if c not in allowed]
            if extra:
                yield f"choices {extra} are not among the input's options"
        return
    if not _accepts(kind, target):
        yield f"a {kind} parameter cannot feed a {target.type} input"
        return
    if kind in (ParamType.INT, ParamType.FLOAT, ParamType.SEED):
        if target.min is not None and (parameter.min is None or parameter.min < target.min):
            yield f"min must be at least the input's min {target.min}"
        if target.max is not None and (parameter.max is None or parameter.max > target.max):
            yield f"max must be at most the input's max {target.max}"


def _accepts(kind: ParamType, target: InputSpec) -> bool:
    # A string may also name a model file (a manifest's `checkpoint`): renders check it.
    is_file_name = kind is ParamType.STRING and target.type == "COMBO" and target.files
    return target.type in _TARGET_TYPES[kind] or is_file_name


def _renders(workflow: Workflow, schemas: NodeSchemas) -> Iterator[str]:
    manifest = workflow.manifest
    samples: dict[str, object] = {}
    for name, parameter in manifest.parameters.items():
        if parameter.type is ParamType.IMAGE:
            samples[name] = SAMPLE_IMAGE
        elif parameter.required and parameter.type is ParamType.STRING:
            samples[name] = SAMPLE_TEXT
    trials: list[tuple[str, str | None, str | None]] = [("defaults", None, None)]
    trials += [(f"preset {p}", p, None) for p in manifest.presets]
    trials += [(f"aspect {a}", None, a) for a in manifest.aspects]
    for label, preset, aspect in trials:
        try:
            bound = bind(workflow, samples, preset=preset, aspect=aspect, rng=random.Random(0))
        except ParameterError as exc:
            yield f"{label}: {'; '.join(exc.problems)}"
            continue
        for error in validate_graph(bound.graph, schemas, model_files=manifest.model_files()):
            yield f"{label}: {error.describe()}"
    yield from _lora_renders(workflow, schemas, samples)


def _lora_renders(
    workflow: Workflow, schemas: NodeSchemas, samples: dict[str, object]
) -> Iterator[str]:
    """With a LoRA socket: the defaults with one sample LoRA and with the most it takes."""
    manifest = workflow.manifest
    socket = manifest.loras
    if socket is None:
        return
    if LORAS_PARAM in manifest.parameters:
        yield f"parameter {LORAS_PARAM!r} is taken by the LoRAs' record; rename it"
        return
    for count in sorted({1, socket.max}):
        loras = [LoraChoice(f"{SAMPLE_LORA}-{n}.safetensors", 0.8, 0.6) for n in range(count)]
        label = f"{count} LoRA{'s' if count > 1 else ''}"
        try:
            bound = bind(workflow, samples, rng=random.Random(0), loras=loras)
        except ParameterError as exc:
            yield f"{label}: {'; '.join(exc.problems)}"
            continue
        files = manifest.model_files() | {lora.file for lora in loras}
        for error in validate_graph(bound.graph, schemas, model_files=files):
            yield f"{label}: {error.describe()}"
