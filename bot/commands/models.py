"""/loras: the checkpoints and LoRAs a user may use where they ask; and the autocomplete
bodies of /serve's `model` and `loras` options (a comma-separated list, `name[:weight]`).

What a user is shown never includes a model they may not use here (stillhouse.models_catalog
decides: public ones, and private ones their id, their server or one of their roles opens).
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands

from bot.context import BotContext
from bot.replies import asker_of, claim_interaction, explain, reply
from stillhouse.intake import Refusal
from stillhouse.models_catalog import (
    FAMILY_SAID,
    Asker,
    CatalogModel,
    Lora,
    LoraRequest,
    ModelCatalog,
)
from stillhouse.schemas.manifest import Family
from stillhouse.workflows.loader import loose

MAX_CHOICES = 25  # Discord's limit for autocomplete results
CHOICE_MAX = 100  # characters of a choice's name and of its value
MESSAGE_MAX = 2000
FAMILIES = [app_commands.Choice(name=FAMILY_SAID[f], value=f.value) for f in Family]


def models_commands(ctx: BotContext) -> list[app_commands.Command[Any, ..., None]]:
    """/loras."""

    @app_commands.command(name="loras", description="The models and LoRAs you can use here")
    @app_commands.describe(family="Only those of one model family")
    @app_commands.choices(family=FAMILIES)
    async def loras(
        interaction: discord.Interaction, family: app_commands.Choice[str] | None = None
    ) -> None:
        if not claim_interaction(ctx.services.locks, interaction):
            return
        chosen = Family(family.value) if family is not None else None
        try:
            text = await asyncio.to_thread(
                listing, ctx.services.models, asker_of(interaction), chosen
            )
        except Exception as exc:  # a sentence, not a stack trace
            await explain(interaction, exc)
            return
        await reply(interaction, text)

    return [loras]


def listing(catalog: ModelCatalog, asker: Asker, family: Family | None = None) -> str:
    """What /loras says: the models, then the LoRAs, `asker` may use (of `family`)."""
    of = f" ({FAMILY_SAID[family]})" if family is not None else ""
    lines = [f"**Models you can use here{of}**"]
    checkpoints = catalog.usable_checkpoints(asker, family)
    lines += [_line(m) for m in checkpoints] or ["- none"]
    lines.append(f"**LoRAs you can use here{of}**")
    loras = catalog.usable_loras(asker, family)
    lines += [_line(m) for m in loras] or ["- none"]
    lines.append(
        "Name them in /serve's `model` and `loras` options (`name:weight`, comma-separated)."
    )
    text = "\n".join(lines)
    if len(text) <= MESSAGE_MAX:
        return text
    # Too many to show whole: as many lines as fit, then how many more there are.
    shown: list[str] = []
    for number, line in enumerate(lines):
        more = f"… and {len(lines) - number - 1} more; choose a family to see fewer."
        if len("\n".join([*shown, line, more])) > MESSAGE_MAX:
            return "\n".join([*shown, more])
        shown.append(line)
    return "\n".join(shown)


def _line(model: CatalogModel) -> str:
    facts = [f"- **{model.label()}** (`{model.name}`)", FAMILY_SAID[model.family]]
    if isinstance(model, Lora):
        if model.trigger_words:
            facts.append("trigger words: " + ", ".join(model.trigger_words))
        facts.append(f"weight {model.default_weight:g}")
    if model.preview:
        facts.append(f"[preview](<{model.preview}>)")
    return " - ".join(facts)


def lora_choices(
    catalog: ModelCatalog,
    asker: Asker,
    current: str,
    *,
    family: Family | None = None,
) -> list[app_commands.Choice[str]]:
    """Autocomplete for a comma-separated `loras` option: what is typed before the last
    comma stays; the last item (`name` or `name:weight`) is completed among the LoRAs
    the user may use here (of `family`, when given), leaving out those already named."""
    *before, last = current.split(",")
    kept = [item.strip() for item in before if item.strip()]
    typed, weight = _split_weight(last.strip())
    named = {loose(_split_weight(item)[0]) for item in kept}
    offered = []
    for lora in catalog.usable_loras(asker, family):
        if named & lora.spellings() or not _matches(lora, typed):
            continue
        item = lora.name if weight is None else f"{lora.name}:{weight:g}"
        value = ", ".join([*kept, item])
        if len(value) > CHOICE_MAX:
            continue
        shown = ", ".join([*kept, f"{lora.label()} ({FAMILY_SAID[lora.family]})"])
        offered.append(app_commands.Choice(name=_fit(shown), value=value))
    return offered[:MAX_CHOICES]


def model_choices(
    catalog: ModelCatalog,
    asker: Asker,
    current: str,
    *,
    family: Family | None = None,
) -> list[app_commands.Choice[str]]:
    """Autocomplete for a `model` option: the checkpoints the user may use here (of
    `family`, when given) whose name or title contains what is typed."""
    typed = current.strip()
    return [
        app_commands.Choice(
            name=_fit(f"{m.label()} ({FAMILY_SAID[m.family]})"), value=m.name[:CHOICE_MAX]
        )
        for m in catalog.usable_checkpoints(asker, family)
        if _matches(m, typed)
    ][:MAX_CHOICES]


def lora_requests(text: str | None) -> list[LoraRequest]:
    """A `loras` option (`name[:weight], …`) as the intake takes it; Refusal naming the
    item that is not `name` or `name:weight` with a weight from -2 to 2."""
    requests = []
    for item in (text or "").split(","):
        name, weight = _split_weight(item.strip())
        if not name:
            continue
        if weight is not None and not -2 <= weight <= 2:
            raise Refusal(f"The weight of “{name[:40]}” must be between -2 and 2.")
        requests.append(LoraRequest(name=name[:100], weight=weight))
    return requests


def _split_weight(item: str) -> tuple[str, float | None]:
    """`name:0.8` -> ("name", 0.8); a name without a numeric suffix keeps its colons."""
    name, sep, tail = item.rpartition(":")
    if sep:
        try:
            weight = float(tail)
        except ValueError:
            return item, None
        if weight == weight:  # not NaN
            return name.strip(), weight
    return item, None


def _matches(model: CatalogModel, typed: str) -> bool:
    wanted = loose(typed)
    return not wanted or any(wanted in said for said in (loose(model.name), loose(model.label())))


def _fit(text: str) -> str:
    """At most CHOICE_MAX characters, keeping the end (the item being completed)."""
    return text if len(text) <= CHOICE_MAX else "…" + text[-(CHOICE_MAX - 1) :]
