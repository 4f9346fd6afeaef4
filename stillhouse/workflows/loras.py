"""LoRAs chained into a graph after its LoRA socket (a manifest's `loras`).

The first LoraLoader reads the socket's MODEL and CLIP outputs, each next one the
previous; every other input that read the socket then reads the last LoRA. A socket
without `clip` chains LoraLoaderModelOnly nodes. The choices are recorded in the job's
parameters as one canonical string, `file:0.8,other.safetensors:1` (`file:model:clip`
when the two strengths differ), so binding those parameters again renders the same graph.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple

from stillhouse.schemas.graph import ComfyNode
from stillhouse.schemas.manifest import LoraSocket, Manifest

LORAS_PARAM = "loras"  # the job parameter that records the chosen LoRAs
STRENGTH_MIN, STRENGTH_MAX = -2.0, 2.0
LORA_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")  # as ModelFile.file: no ':' or ','


class LoraChoice(NamedTuple):
    """One LoRA to chain: its file in ComfyUI's models/loras and its two strengths."""

    file: str
    strength_model: float = 1.0
    strength_clip: float = 1.0


def requested(
    manifest: Manifest,
    values: Mapping[str, object],
    loras: Sequence[LoraChoice],
    problems: list[str],
) -> tuple[dict[str, object], list[LoraChoice]]:
    """`values` without the recorded LoRAs, and the LoRAs to chain (given, else the ones
    `values` recorded), checked and made canonical; each problem is one user sentence."""
    rest = dict(values)
    if LORAS_PARAM in manifest.parameters:  # the workflow's own parameter of that name
        recorded: object = None
    else:
        recorded = rest.pop(LORAS_PARAM, None)
    chosen = list(loras)
    if recorded not in (None, ""):
        if chosen:
            problems.append("LoRAs are given twice (as `loras` and as a parameter)")
            return rest, []
        try:
            chosen = parse_loras(recorded)
        except ValueError as exc:
            problems.append(str(exc))
            return rest, []
    if not chosen:
        return rest, []
    socket = manifest.loras
    if socket is None:
        problems.append(f"{manifest.title} takes no LoRAs")
        return rest, []
    if len(chosen) > socket.max:
        problems.append(f"{manifest.title} takes at most {socket.max} LoRAs (got {len(chosen)})")
        return rest, []
    checked = []
    for number, choice in enumerate(chosen, start=1):
        try:
            checked.append(_canonical(choice, number, model_only=socket.clip is None))
        except ValueError as exc:
            problems.append(str(exc))
    return rest, checked


def _canonical(choice: LoraChoice, number: int, *, model_only: bool) -> LoraChoice:
    if not isinstance(choice.file, str) or not LORA_FILE.match(choice.file):
        raise ValueError(f"LoRA {number} is not a file name a LoRA can have")
    strengths = []
    for what, value in (
        ("strength", choice.strength_model),
        ("clip strength", choice.strength_clip),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"LoRA {number}'s {what} must be a number")
        if not STRENGTH_MIN <= value <= STRENGTH_MAX:  # NaN fails this too
            raise ValueError(
                f"LoRA {number}'s {what} is {value}; it must be between "
                f"{STRENGTH_MIN:g} and {STRENGTH_MAX:g}"
            )
        strengths.append(round(float(value), 2) + 0.0)  # 0.0: no "-0"
    model, clip = strengths
    return LoraChoice(choice.file, model, model if model_only else clip)


def format_loras(choices: Sequence[LoraChoice]) -> str:
    """The canonical record: `file:strength`, or `file:model:clip` when they differ."""
    parts = []
    for choice in choices:
        model, clip = choice.strength_model, choice.strength_clip
        weights = f"{model:g}" if model == clip else f"{model:g}:{clip:g}"
        parts.append(f"{choice.file}:{weights}")
    return ",".join(parts)


def parse_loras(text: object) -> list[LoraChoice]:
    """The LoRAs a record names; ValueError with a sentence if it is not one."""
    if not isinstance(text, str):
        raise ValueError("loras must be text like “file.safetensors:0.8,other.safetensors:1”")
    choices = []
    for item in text.split(","):
        file, *weights = item.strip().split(":")
        if not file or len(weights) > 2:
            raise ValueError("loras must be text like “file.safetensors:0.8,other.safetensors:1”")
        try:
            numbers = [float(w) for w in weights]
        except ValueError:
            raise ValueError("a LoRA's strength must be a number") from None
        model = numbers[0] if numbers else 1.0
        clip = numbers[1] if len(numbers) == 2 else model
        choices.append(LoraChoice(file, model, clip))
    return choices


def chain(
    graph: MutableMapping[str, ComfyNode], socket: LoraSocket, choices: Sequence[LoraChoice]
) -> None:
    """Insert the LoRA nodes after `socket` in `graph` (in place) and rewire every input
    that read the socket's outputs to the last LoRA's."""
    if not choices:
        return
    ids = _fresh_ids(graph, len(choices))
    last = ids[-1]
    for node in graph.values():
        for name, value in node.inputs.items():
            if _links_to(value, socket.model):
                node.inputs[name] = [last, 0]
            elif socket.clip is not None and _links_to(value, socket.clip):
                node.inputs[name] = [last, 1]
    model: list[Any] = list(socket.model)
    clip: list[Any] | None = list(socket.clip) if socket.clip is not None else None
    for number, (node_id, choice) in enumerate(zip(ids, choices, strict=True), start=1):
        inputs: dict[str, Any] = {"model": model, "lora_name": choice.file}
        inputs["strength_model"] = float(choice.strength_model)
        if clip is not None:
            inputs["clip"] = clip
            inputs["strength_clip"] = float(choice.strength_clip)
        kind = "LoraLoader" if clip is not None else "LoraLoaderModelOnly"
        graph[node_id] = ComfyNode.model_validate(
            {"class_type": kind, "inputs": inputs, "_meta": {"title": f"LoRA {number}"}}
        )
        model = [node_id, 0]
        clip = [node_id, 1] if clip is not None else None


def _links_to(value: object, output: tuple[str, int]) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and value[0] == output[0]
        and value[1] == output[1]
        and not isinstance(value[1], bool)
    )


def _fresh_ids(graph: Mapping[str, object], count: int) -> list[str]:
    """Numeric ids above every numeric id in the graph (ComfyUI's own convention)."""
    top = max((int(k) for k in graph if k.isdigit()), default=0)
    return [str(top + n) for n in range(1, count + 1)]
