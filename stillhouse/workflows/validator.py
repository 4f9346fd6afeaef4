"""Offline validation of a ComfyUI graph against node schemas.

It checks what ComfyUI's own `validate_prompt` checks, in ComfyUI's words (error `type`,
`message` and `details` match its `node_errors` where the two overlap), and somewhat more:
every node rather than only those feeding an output, step sizes of integer inputs,
dangling links, literals where only a link can go, and model files the manifest declares.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from stillhouse.schemas.graph import ComfyGraph, ComfyNode
from stillhouse.workflows.node_schemas import LINK_TYPES_ANY, InputSpec, NodeSchemas

SAFE_UPLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class GraphError(BaseModel):
    """One problem, located: node id, class type, input; ComfyUI's type/message/details."""

    model_config = ConfigDict(frozen=True)

    node_id: str
    class_type: str | None = None
    input: str | None = None
    type: str
    message: str
    details: str = ""

    def describe(self, workflow: str | None = None) -> str:
        """One line for humans: `<workflow>: node 5 (EmptyLatentImage) input width: ...`."""
        where = f"node {self.node_id}" + (f" ({self.class_type})" if self.class_type else "")
        if self.input:
            where += f" input {self.input}"
        prefix = f"{workflow}: " if workflow else ""
        details = f": {self.details}" if self.details else ""
        return f"{prefix}{where}: {self.message}{details}"


def validate_graph(
    graph: ComfyGraph, schemas: NodeSchemas, *, model_files: Collection[str] = ()
) -> list[GraphError]:
    """Every problem in the graph; empty when ComfyUI would accept it."""
    errors: list[GraphError] = []
    has_output = False
    for node_id, node in graph.root.items():
        spec = schemas.get(node.class_type)
        if spec is None:
            errors.append(
                GraphError(
                    node_id=node_id,
                    class_type=node.class_type,
                    type="invalid_prompt",
                    message=f"Cannot execute because node {node.class_type} does not exist.",
                    details=f"Node ID '#{node_id}'",
                )
            )
            continue
        has_output = has_output or spec.output_node
        for name, input_spec in spec.inputs.items():
            errors.extend(
                _check_input(graph, schemas, node_id, node, name, input_spec, model_files)
            )
    if not has_output and not errors:
        errors.append(
            GraphError(node_id="", type="prompt_no_outputs", message="Prompt has no outputs")
        )
    return errors


def _check_input(
    graph: ComfyGraph,
    schemas: NodeSchemas,
    node_id: str,
    node: ComfyNode,
    name: str,
    spec: InputSpec,
    model_files: Collection[str],
) -> Iterator[GraphError]:
    def error(kind: str, message: str, details: str) -> GraphError:
        return GraphError(
            node_id=node_id,
            class_type=node.class_type,
            input=name,
            type=kind,
            message=message,
            details=details,
        )

    if name not in node.inputs:
        if spec.required:
            yield error("required_input_missing", "Required input is missing", name)
        return
    value = node.inputs[name]
    if isinstance(value, list):
        yield from (error(*e) for e in _check_link(graph, schemas, name, value, spec))
    elif spec.is_link_type:
        yield error("link_required", f"Input takes a {spec.type} link, not a value", name)
    else:
        yield from (error(*e) for e in _check_literal(name, value, spec, model_files))


def _check_link(
    graph: ComfyGraph, schemas: NodeSchemas, name: str, value: list[Any], spec: InputSpec
) -> Iterator[tuple[str, str, str]]:
    if len(value) != 2 or not isinstance(value[0], str) or not isinstance(value[1], int):
        yield (
            "bad_linked_input",
            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            name,
        )
        return
    source_id, slot = value
    source = graph.root.get(source_id)
    if source is None:
        yield ("bad_linked_input", "Linked node does not exist", f"{name}: node '{source_id}'")
        return
    source_spec = schemas.get(source.class_type)
    if source_spec is None:
        return  # reported on the source node itself
    if not 0 <= slot < len(source_spec.outputs):
        yield (
            "bad_linked_input",
            "Linked output does not exist",
            f"{name}: node '{source_id}' ({source.class_type}) has no output {slot}",
        )
        return
    received = source_spec.outputs[slot]
    if not _types_match(received, spec.type):
        yield (
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            f"{name}, received_type({received}) mismatch input_type({spec.type})",
        )


def _types_match(received: str, expected: str) -> bool:
    if received == expected or LINK_TYPES_ANY in (received, expected):
        return True
    ours = {t.strip() for t in received.split(",")}
    theirs = {t.strip() for t in expected.split(",")}
    return bool(ours & theirs)


def _check_literal(
    name: str, value: Any, spec: InputSpec, model_files: Collection[str]
) -> Iterator[tuple[str, str, str]]:
    if spec.type in {"INT", "FLOAT"}:
        try:
            number: float = int(value) if spec.type == "INT" else float(value)
        except (TypeError, ValueError) as exc:
            yield (
                "invalid_input_type",
                f"Failed to convert an input value to a {spec.type} value",
                f"{name}, {value}, {exc}",
            )
            return
        yield from _check_number(name, number, spec)
    elif spec.type == "COMBO":
        yield from _check_combo(name, value, spec, model_files)


def _check_number(name: str, number: float, spec: InputSpec) -> Iterator[tuple[str, str, str]]:
    if math.isnan(number) or math.isinf(number):
        yield (
            "invalid_input_type",
            f"Failed to convert an input value to a {spec.type} value",
            f"{name}, {number}, not a finite number",
        )
    elif spec.min is not None and number < spec.min:
        yield ("value_smaller_than_min", f"Value {number} smaller than min of {spec.min}", name)
    elif spec.max is not None and number > spec.max:
        yield ("value_bigger_than_max", f"Value {number} bigger than max of {spec.max}", name)
    elif spec.type == "INT" and spec.step and spec.step > 1 and not _on_step(int(number), spec):
        yield ("value_not_on_step", f"Value {number} is not a multiple of step {spec.step}", name)


def _on_step(value: int, spec: InputSpec) -> bool:
    step = int(spec.step or 1)
    origin = int(spec.min or 0)
    return value % step == 0 or (value - origin) % step == 0


def _check_combo(
    name: str, value: Any, spec: InputSpec, model_files: Collection[str]
) -> Iterator[tuple[str, str, str]]:
    if spec.upload:
        if not isinstance(value, str) or not SAFE_UPLOAD_NAME.match(value):
            yield (
                "value_not_in_list",
                "Value not in list",
                f"{name}: '{value}' is not a safe file name",
            )
        return
    allowed = list(spec.options or [])
    if spec.files:
        allowed = sorted(model_files) + allowed
    if value not in allowed:
        shown = f"(list of length {len(allowed)})" if len(allowed) > 20 else str(allowed)
        yield ("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {shown}")
