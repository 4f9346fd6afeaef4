"""Typed values -> a new graph. Values are placed into node inputs of a copy of the
template graph; nothing ever passes through string formatting of JSON.

Precedence: parameter defaults, then the preset, then the aspect (width/height), then
what the user set. A missing seed is drawn and recorded in the returned parameters, so
the same parameters render byte-identical graphs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from stillhouse.errors import InvalidKey, StillhouseError
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.jobs import InputSource, JobParams
from stillhouse.schemas.manifest import Parameter, ParamType, ParamValue
from stillhouse.storage.base import validate_key
from stillhouse.workflows.loader import Workflow
from stillhouse.workflows.loras import LORAS_PARAM, LoraChoice, chain, format_loras, requested

STRING_LIMIT = 2000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


class ParameterError(StillhouseError):
    """Values a workflow cannot take; one line per problem, naming the parameter."""

    def __init__(self, workflow: str, problems: list[str]) -> None:
        super().__init__(f"{workflow}: " + "; ".join(problems))
        self.workflow = workflow
        self.problems = problems


class BoundWorkflow(BaseModel):
    """A graph ready to queue, and the values that made it."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    version: str
    graph: ComfyGraph
    params: JobParams
    inputs: list[InputSource]
    outputs: list[str]

    def graph_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal inputs give equal bytes."""
        return json.dumps(self.graph.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def bind(
    workflow: Workflow,
    values: Mapping[str, object],
    *,
    preset: str | None = None,
    aspect: str | None = None,
    rng: random.Random | None = None,
    loras: Sequence[LoraChoice] = (),
) -> BoundWorkflow:
    """Check `values` against the manifest and build the graph; ParameterError if not.
    `loras` (else the ones `values["loras"]` recorded) chain after the manifest's LoRA
    socket (stillhouse.workflows.loras) and are recorded in the parameters."""
    manifest = workflow.manifest
    problems: list[str] = []
    values, chosen = requested(manifest, values, loras, problems)
    merged = _merge(workflow, values, preset, aspect, problems)
    resolved: dict[str, ParamValue] = {}
    for name, parameter in manifest.parameters.items():
        try:
            value = coerce(name, parameter, merged.get(name), rng or random.SystemRandom())
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if value is not None:
            resolved[name] = value
    if problems:
        raise ParameterError(workflow.name, problems)

    graph = copy.deepcopy(workflow.graph.root)
    inputs: list[InputSource] = []
    for name, value in resolved.items():
        parameter = manifest.parameters[name]
        placed: ParamValue = value
        if parameter.type is ParamType.IMAGE:
            source = _image_source(name, str(value))
            inputs.append(source)
            placed = source.name
        for binding in parameter.bind:
            if binding.node not in graph:
                raise StillhouseError(
                    f"{workflow.name}: parameter {name} binds to node {binding.node}, which the "
                    "graph lacks (run `stillhouse workflows check`)"
                )
            graph[binding.node].inputs[binding.input] = placed
    if chosen and manifest.loras is not None:
        chain(graph, manifest.loras, chosen)
        resolved[LORAS_PARAM] = format_loras(chosen)
    return BoundWorkflow(
        workflow=workflow.name,
        version=manifest.version,
        graph=ComfyGraph(graph),
        params=JobParams(dict(resolved)),
        inputs=inputs,
        outputs=list(manifest.outputs),
    )


def _merge(
    workflow: Workflow,
    values: Mapping[str, object],
    preset: str | None,
    aspect: str | None,
    problems: list[str],
) -> dict[str, object]:
    manifest = workflow.manifest
    merged: dict[str, object] = {n: p.default for n, p in manifest.parameters.items()}
    chosen = preset or manifest.default_preset
    if chosen is not None:
        if chosen not in manifest.presets:
            problems.append(f"mode “{chosen}” is not one of {_listing(manifest.presets)}")
        else:
            merged.update(manifest.presets[chosen])
    if aspect is not None:
        if aspect not in manifest.aspects:
            if manifest.aspects:
                problems.append(f"shape “{aspect}” is not one of {_listing(manifest.aspects)}")
            else:
                problems.append(
                    f"{manifest.title} keeps the shape of the picture it starts from, "
                    f"so it takes no shape “{aspect}”"
                )
        else:
            merged["width"], merged["height"] = manifest.aspects[aspect]
    unknown = sorted(set(values) - set(manifest.parameters))
    if unknown:
        # Named as users would write them; the options listed are the ones they may set.
        words = ", ".join(f"“{u.replace('_', ' ')}”" for u in unknown)
        offered = [p.label(n) for n, p in manifest.offered().items()]
        takes = f" (its options: {', '.join(offered)})" if offered else ""
        problems.append(f"{manifest.title} has no option {words}{takes}")
    merged.update({k: v for k, v in values.items() if k in manifest.parameters and v is not None})
    return merged


def coerce(name: str, parameter: Parameter, value: object, rng: random.Random) -> ParamValue | None:
    """The value as the parameter's type, inside its bounds; ValueError naming the
    parameter as users read it (its title), never by its internal name."""
    name = parameter.label(name)
    if value is None or (value == "" and parameter.type is not ParamType.STRING):
        if parameter.type is ParamType.SEED:
            return rng.randint(int(parameter.min or 0), int(parameter.max or 0))
        if parameter.required:
            raise ValueError(f"{name} is required")
        return None
    kind = parameter.type
    if kind is ParamType.STRING:
        return _string(name, parameter, value)
    if kind is ParamType.BOOL:
        return _bool(name, value)
    if kind is ParamType.CHOICE:
        return _choice(name, parameter, value)
    if kind is ParamType.IMAGE:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be an image URL or storage key")
        _image_source(name, value)
        return value
    return _number(name, parameter, value)


def _string(name: str, parameter: Parameter, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    if parameter.required and not value.strip():
        raise ValueError(f"{name} is required")
    limit = parameter.max_length or STRING_LIMIT
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters long; the limit is {limit}")
    return value


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError(f"{name} must be true or false")


def _choice(name: str, parameter: Parameter, value: object) -> str | int | float:
    choices = parameter.choices or []
    for choice in choices:
        if value == choice or (isinstance(value, str) and value == str(choice)):
            return choice
    raise ValueError(f"{name} must be one of {', '.join(map(str, choices))} (got {value!r})")


def _number(name: str, parameter: Parameter, value: object) -> int | float:
    integral = parameter.type in (ParamType.INT, ParamType.SEED)
    what = "a whole number" if integral else "a number"
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {what}")
    try:
        number: int | float = _parse_number(value, integral)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what} (got {value!r})") from None
    if parameter.min is not None and number < parameter.min:
        raise ValueError(f"{name} is {number}; the minimum is {_show(parameter.min)}")
    if parameter.max is not None and number > parameter.max:
        raise ValueError(f"{name} is {number}; the maximum is {_show(parameter.max)}")
    if parameter.step and integral:
        origin = int(parameter.min or 0)
        if (int(number) - origin) % parameter.step:
            step = parameter.step
            raise ValueError(
                f"{name} is {number}; it must be {_show(origin)} plus a multiple of {step}"
            )
    return number


def _parse_number(value: object, integral: bool) -> int | float:
    if integral:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            return int(value)
        return int(value) if isinstance(value, int | str) else int(str(value))
    number = float(value) if isinstance(value, int | float | str) else float(str(value))
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _image_source(name: str, value: str) -> InputSource:
    """Where the worker gets the image, and the file name the graph refers to."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    # `name` may be a title ("control image") when only checking: file names stay safe.
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in name)
    name_part = safe.strip("._-") or "image"
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"{name} must be an https:// URL")
        suffix = PurePosixPath(parts.path).suffix.lower()
        suffix = suffix if suffix in IMAGE_SUFFIXES else ".png"
        return InputSource(name=f"{name_part}-{digest}{suffix}", url=value)
    try:
        validate_key(value)
    except InvalidKey:
        raise ValueError(f"{name} must be an https:// URL or one of our image keys") from None
    suffix = PurePosixPath(value).suffix.lower()
    suffix = suffix if suffix in IMAGE_SUFFIXES else ".png"
    return InputSource(name=f"{name_part}-{digest}{suffix}", storage_key=value)


def _listing(names: Mapping[str, Any]) -> str:
    return ", ".join(sorted(names))


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)
