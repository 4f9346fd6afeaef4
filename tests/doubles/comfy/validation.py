"""`POST /prompt`'s verdict as ComfyUI 0.3.64 reaches it (execution.py `validate_prompt`):
every output node is validated with what it depends on; the prompt is refused (400) only
when no output is valid, and otherwise queued with the valid outputs alone, the failed
ones' nodes reported in the 200's `node_errors`.

The errors themselves come from our validator (stillhouse.workflows.validator), which
speaks ComfyUI's error types and messages; what this module adds is ComfyUI's walk: which
nodes count (only those an output needs), which outputs survive, and the shape of
`node_errors` with its `dependent_outputs`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from stillhouse.schemas.graph import ComfyGraph
from stillhouse.workflows.node_schemas import NodeSchemas
from stillhouse.workflows.validator import GraphError, validate_graph


@dataclass
class Verdict:
    """The outputs to execute (none: refused), the error of a refusal, and node_errors."""

    outputs: list[str]
    error: dict[str, Any] | None = None
    node_errors: dict[str, Any] = field(default_factory=dict)


def _error(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _reason(error: GraphError) -> dict[str, Any]:
    return {
        "type": error.type,
        "message": error.message,
        "details": error.details,
        "extra_info": {"input_name": error.input},
    }


def check_prompt(graph: Any, schemas: NodeSchemas, models: Collection[str]) -> Verdict:
    """What ComfyUI answers to `graph`: see the module's docstring."""
    if not isinstance(graph, dict):
        return Verdict([], _error("invalid_prompt", "Cannot execute because the prompt is bad."))
    outputs: list[str] = []
    for node_id, node in graph.items():
        if not isinstance(node, dict) or "class_type" not in node:
            message = "Cannot execute because a node is missing the class_type property."
            return Verdict([], _error("invalid_prompt", message, f"Node ID '#{node_id}'"))
        spec = schemas.get(node["class_type"])
        if spec is None:
            message = f"Cannot execute because node {node['class_type']} does not exist."
            return Verdict([], _error("invalid_prompt", message, f"Node ID '#{node_id}'"))
        if spec.output_node:
            outputs.append(node_id)
    if not outputs:
        return Verdict([], _error("prompt_no_outputs", "Prompt has no outputs"))
    try:
        parsed = ComfyGraph.model_validate(graph)
    except ValidationError as exc:
        return Verdict(
            [], _error("invalid_prompt", "Cannot execute because the prompt is bad.", str(exc))
        )
    own: dict[str, list[GraphError]] = {}
    for error in validate_graph(parsed, schemas, model_files=models):
        own.setdefault(error.node_id, []).append(error)
    return _walk(graph, schemas, outputs, own)


class _Walk:
    """validate_inputs's walk from an output: a node is valid when it has no errors of its
    own and every node it links to (through a link that is itself fine) is valid."""

    def __init__(
        self, graph: dict[str, Any], schemas: NodeSchemas, own: dict[str, list[GraphError]]
    ) -> None:
        self.graph, self.schemas, self.own = graph, schemas, own
        # node id -> (valid, own reasons); a node goes in once done, upstream first, as
        # ComfyUI's `validated` fills
        self.validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}
        self.visiting: set[str] = set()

    def check(self, node_id: str) -> bool:
        if node_id in self.validated:
            return self.validated[node_id][0]
        if node_id in self.visiting:
            return True  # a cycle ends here rather than recursing forever
        self.visiting.add(node_id)
        errors = self.own.get(node_id, [])
        valid = not errors
        bad_inputs = {e.input for e in errors}
        spec = self.schemas.get(self.graph[node_id]["class_type"])
        inputs = self.graph[node_id].get("inputs", {})
        for name in spec.inputs if spec is not None else ():
            value = inputs.get(name)
            if isinstance(value, list) and name not in bad_inputs and str(value[0]) in self.graph:
                valid = self.check(str(value[0])) and valid
        self.validated[node_id] = (valid, [_reason(e) for e in errors])
        return valid


def _walk(
    graph: dict[str, Any],
    schemas: NodeSchemas,
    outputs: list[str],
    own: dict[str, list[GraphError]],
) -> Verdict:
    walk = _Walk(graph, schemas, own)
    good: list[str] = []
    failed: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    for output in outputs:
        if walk.check(output):
            good.append(output)
            continue
        failed.append((output, walk.validated[output][1]))
        # As ComfyUI does: each failed output is added to the dependent_outputs of every
        # node with errors validated so far (so, with several failed outputs, a node can
        # list an output that does not need it; ComfyUI's order of outputs is a set's).
        for node_id, (valid, reasons) in walk.validated.items():
            if not valid and reasons:
                entry = node_errors.setdefault(
                    node_id,
                    {
                        "errors": reasons,
                        "dependent_outputs": [],
                        "class_type": graph[node_id]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(output)
    if good:
        return Verdict(good, None, node_errors)
    details = "\n".join(f"{r['message']}: {r['details']}" for _, rs in failed for r in rs)
    error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
    return Verdict([], error, node_errors)
