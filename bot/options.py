"""A workflow's own options in Discord, beyond /serve's fixed ones: the "More options"
and Remix forms (modals), the `options` text and its autocomplete, and the sentences
that show an enhanced prompt.

A form holds at most five fields (Discord's limit): the prompt and the first four options
the workflow offers (its manifest's `offer`, named by their titles) that /serve has no
option of its own for. A form's custom id carries what the form cannot show (`sh:M:…` for
/serve: workflow, mode, shape, count, seed, visibility; `sh:R:<job>` for Remix), so any
process of the shard can take its submission: nothing is kept in memory between the two.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands

from bot import messages
from stillhouse.intake import Refusal
from stillhouse.prompt_help import Enhancement
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.jobs import Visibility
from stillhouse.schemas.manifest import Parameter, ParamType, ParamValue
from stillhouse.workflows.loader import Workflow, loose

MAX_FIELDS = 5  # a modal's limit
FORM_KEPT_S = 900.0
LABEL_MAX = 45
PLACEHOLDER_MAX = 100
FORM_TITLE_MAX = 45
PROMPT_FIELD = "prompt"
# /serve has options of its own for these; the form leaves them out.
SERVE_OWN = {"prompt", "negative_prompt", "count", "seed", "width", "height"}
MAX_CHOICES = 25
SERVE_FORM = re.compile(
    r"sh:M:(?P<workflow>[a-z0-9_.-]{1,64}):(?P<mode>[a-z]*):(?P<aspect>[a-z]*)"
    r":(?P<count>[0-9]?):(?P<seed>[0-9]*):(?P<visibility>[psx])"
)
REMIX_FORM = re.compile(r"sh:R:(?P<job>[A-Za-z0-9_-]{1,32})")
VISIBILITY: dict[Visibility, str] = {"public": "p", "spoiler": "s", "private": "x"}
FORM_VISIBILITY = {letter: seen for seen, letter in VISIBILITY.items()}
_PAIR = re.compile(r"\s*([^=,]+?)\s*=\s*([^,]*?)\s*(?:,|$)")


def form_options(workflow: Workflow, skip: Iterable[str] = ()) -> dict[str, Parameter]:
    """The options a form shows for `workflow`: offered, typed in, not in `skip`."""
    left_out = set(skip) | {PROMPT_FIELD}
    shown = {
        name: p
        for name, p in workflow.manifest.offered().items()
        if name not in left_out and p.type is not ParamType.IMAGE
    }
    return dict(list(shown.items())[: MAX_FIELDS - 1])


def options_form(
    custom_id: str,
    title: str,
    workflow: Workflow,
    prompt: str,
    values: dict[str, ParamValue],
    skip: Iterable[str] = (),
) -> discord.ui.Modal:
    """A form with the prompt and `workflow`'s options, filled in with `values`."""
    # Submissions are read from the interaction (bot.client), not by this object: the
    # timeout only bounds how long discord.py keeps it.
    form = discord.ui.Modal(title=title[:FORM_TITLE_MAX], custom_id=custom_id, timeout=FORM_KEPT_S)
    form.add_item(
        discord.ui.TextInput(
            label="Prompt",
            custom_id=PROMPT_FIELD,
            style=discord.TextStyle.paragraph,
            default=prompt[:4000],
            max_length=4000,
        )
    )
    for name, parameter in form_options(workflow, skip).items():
        current = values.get(name, parameter.default)
        form.add_item(
            discord.ui.TextInput(
                label=_capitalized(parameter.label(name))[:LABEL_MAX],
                custom_id=name,
                default=None if current is None else str(current),
                placeholder=hint(parameter)[:PLACEHOLDER_MAX] or None,
                required=False,
                max_length=200,
            )
        )
    return form


def serve_form_id(
    workflow: str,
    mode: str | None,
    aspect: str | None,
    count: int | None,
    seed: int | None,
    visibility: Visibility,
) -> str:
    """The custom id of /serve's More options form: what it cannot show."""
    return (
        f"sh:M:{workflow}:{mode or ''}:{aspect or ''}:{count or ''}:"
        f"{'' if seed is None else seed}:{VISIBILITY[visibility]}"
    )


def remix_modal(job: JobRecord, workflow: Workflow) -> discord.ui.Modal:
    """Remix: the job's prompt and options to edit; what is sent runs as a new request."""
    prompt = job.params.root.get("prompt")
    return options_form(
        f"sh:R:{job.public_id}",
        f"Remix {workflow.manifest.title}",
        workflow,
        prompt if isinstance(prompt, str) else "",
        {k: v for k, v in job.params.root.items() if v is not None},
        skip=("seed",),
    )


@dataclass
class Submitted:
    """What a form's fields said: the prompt and the options (by parameter name)."""

    prompt: str
    values: dict[str, ParamValue]


def form_id(interaction: discord.Interaction) -> str:
    """The custom id of a submitted form (or of the component pressed)."""
    data: Any = interaction.data or {}
    return str(data.get("custom_id", ""))


def submitted(interaction: discord.Interaction) -> Submitted:
    """The fields of a submitted form; empty fields are left out (the default holds)."""
    data: Any = interaction.data or {}
    fields: dict[str, str] = {}
    for row in data.get("components", []):
        inner = row.get("components", []) if row.get("type") == 1 else [row.get("component", {})]
        for item in inner:
            if isinstance(item, dict) and "custom_id" in item:
                fields[str(item["custom_id"])] = str(item.get("value") or "")
    prompt = fields.pop(PROMPT_FIELD, "").strip()
    if not prompt:
        raise Refusal("The prompt is empty.")
    return Submitted(prompt, {k: v.strip() for k, v in fields.items() if v.strip()})


def parse_options(text: str, workflow: Workflow) -> dict[str, ParamValue]:
    """`steps=30, guidance=6` as values by parameter name; Refusal naming what is not an
    option of this workflow (by the names users read)."""
    known = {loose(p.label(n)): n for n, p in workflow.manifest.offered().items()}
    known |= {loose(n): n for n in workflow.manifest.offered()}
    values: dict[str, ParamValue] = {}
    rest = text.strip()
    if not rest:
        return values
    pairs = _PAIR.findall(rest)
    if not pairs or "".join(f"{k}={v}" for k, v in pairs) != re.sub(r"[\s,]", "", rest):
        raise Refusal("Write options as name=value, separated by commas: steps=30, guidance=6.")
    for key, value in pairs:
        name = known.get(loose(key))
        if name is None:
            offered = ", ".join(p.label(n) for n, p in workflow.manifest.offered().items())
            raise Refusal(
                f"{workflow.manifest.title} has no option “{key}” (its options: {offered})."
            )
        values[name] = value
    return values


def option_choices(workflow: Workflow | None, current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete for `options`: the options not yet given (name=), or the values of
    the one being typed (its choices, or its bounds and default as a hint)."""
    if workflow is None:
        return []
    done, _, typing = current.rpartition(",")
    head = f"{done}, " if done else ""
    given = {loose(k) for k, _ in _PAIR.findall(done)}
    offered = {
        n: p
        for n, p in workflow.manifest.offered().items()
        if n not in SERVE_OWN and p.type is not ParamType.IMAGE
    }
    key, equals, partial = typing.partition("=")
    choices: list[tuple[str, str]] = []
    if equals:
        name = next((n for n, p in offered.items() if loose(p.label(n)) == loose(key)), None)
        if name is not None:
            parameter, label = offered[name], offered[name].label(name)
            if parameter.choices:
                for choice in parameter.choices:
                    if str(choice).startswith(partial.strip()):
                        choices.append((f"{label}={choice}", f"{head}{label}={choice}"))
            else:
                value = partial.strip() or _show(parameter.default)
                choices.append((f"{label}={value}  ({hint(parameter)})", f"{head}{label}={value}"))
    else:
        for name, parameter in offered.items():
            label = parameter.label(name)
            if loose(label) in given or not loose(label).startswith(loose(typing)):
                continue
            value = _show(parameter.default)
            choices.append((f"{label}={value}  ({hint(parameter)})", f"{head}{label}={value}"))
    return [
        app_commands.Choice(name=shown[:100], value=value[:100])
        for shown, value in choices[:MAX_CHOICES]
    ]


def hint(parameter: Parameter) -> str:
    """A parameter's help with its bounds or choices, for a placeholder or a choice."""
    parts = [parameter.help] if parameter.help else []
    if parameter.choices:
        parts.append(" / ".join(map(str, parameter.choices)))
    elif parameter.min is not None and parameter.max is not None:
        parts.append(f"{_show(parameter.min)} to {_show(parameter.max)}")
    return "; ".join(parts)


def enhanced_note(enhancement: Enhancement) -> str:
    """The two prompts when prompt help rewrote it; why not when it kept the original."""
    if enhancement.enhanced:
        return (
            f"✨ Enhanced {messages.quoted(enhancement.original, 200)} → "
            f"{messages.quoted(enhancement.prompt, 600)}"
        )
    return f"✨ {enhancement.note}" if enhancement.note else ""


def _capitalized(label: str) -> str:
    return label[:1].upper() + label[1:]


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)
