"""/serve: a prompt and options in, a queued job and its position out, within 3 s.

Beyond its fixed options, a workflow's own (steps, guidance, sampler ...) come by the
`options` text (`steps=30, guidance=6`, completed as typed) or by `more_options`, which
opens a form (bot.options) whose submission queues the request the same way. `enhance`
rewrites the prompt through prompt help first and shows both.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands

from bot.choices import workflow_choices
from bot.commands.models import lora_choices, lora_requests, model_choices
from bot.context import BotContext
from bot.options import (
    FORM_VISIBILITY,
    SERVE_FORM,
    SERVE_OWN,
    enhanced_note,
    form_id,
    option_choices,
    options_form,
    parse_options,
    serve_form_id,
    submitted,
)
from bot.queueing import attachment_of, queue_request
from bot.replies import (
    asker_of,
    claim_interaction,
    explain,
)
from stillhouse.intake import GenerationRequest, Refusal
from stillhouse.prompt_help import PromptHelper
from stillhouse.schemas.jobs import Visibility
from stillhouse.schemas.manifest import SEED_MAX, Family, ParamValue
from stillhouse.workflows.loader import Workflow

ASPECTS = [
    app_commands.Choice(name=n.capitalize(), value=n) for n in ("square", "portrait", "landscape")
]
MODES = [app_commands.Choice(name=n.capitalize(), value=n) for n in ("fast", "quality")]


def serve_command(ctx: BotContext) -> app_commands.Command[Any, ..., None]:
    """The /serve command bound to this process's services."""
    prompts = ctx.prompt_help

    @app_commands.command(name="serve", description="Make images from a prompt")
    @app_commands.describe(
        prompt="What to draw",
        negative_prompt="What to keep out of the image",
        workflow="Which workflow (see /workflows)",
        aspect="Shape of the image",
        count="How many images (1-4)",
        seed="Same seed and settings, same image",
        mode="Fast or quality",
        image="A picture to start from (image workflows)",
        spoiler="Show the images behind a spoiler",
        private="Only you see the request and its images (here, for 15 minutes; then /history)",
        options="The workflow's own options: steps=30, guidance=6 (suggested as you type)",
        more_options="Open a form with the prompt and the workflow's own options",
        enhance="Let prompt help rewrite the prompt first (both are shown)",
        model="Which checkpoint of the workflow's family (see /loras)",
        loras="Up to 4 LoRAs with weights: detail:0.8, pixel art (see /loras)",
    )
    @app_commands.choices(aspect=ASPECTS, mode=MODES)
    async def serve(
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        negative_prompt: app_commands.Range[str, 0, 6000] | None = None,
        workflow: str | None = None,
        aspect: app_commands.Choice[str] | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        mode: app_commands.Choice[str] | None = None,
        image: discord.Attachment | None = None,
        spoiler: bool = False,
        private: bool = False,
        options: app_commands.Range[str, 0, 1000] | None = None,
        more_options: bool = False,
        enhance: bool = False,
        model: str | None = None,
        loras: app_commands.Range[str, 0, 400] | None = None,
    ) -> None:
        services = ctx.services
        if not claim_interaction(services.locks, interaction):
            return  # a replica of this shard answers it
        visibility: Visibility = "private" if private else "spoiler" if spoiler else "public"
        given: dict[str, ParamValue | None] = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "count": count,
            "seed": seed,
        }
        try:
            values = {k: v for k, v in given.items() if v is not None}
            if options or more_options:  # the workflow's own options: which workflow?
                chosen = await asyncio.to_thread(_chosen, ctx, interaction, workflow)
            if options:
                values.update(parse_options(options, chosen))
            if more_options:
                form_id = serve_form_id(
                    chosen.name,
                    mode.value if mode else None,
                    aspect.value if aspect else None,
                    count,
                    seed,
                    visibility,
                )
                shown = {**chosen.manifest.presets.get(_mode(chosen, mode), {}), **values}
                await _open_form(interaction, form_id, chosen, shown, image is not None)
                return
            note = await _enhanced(prompts, interaction, values, private) if enhance else ""
            request = GenerationRequest(
                workflow=workflow or None,  # None: the server's default, else the operators'
                values=values,
                preset=mode.value if mode else None,
                aspect=aspect.value if aspect else None,
                image=attachment_of(image) if image else None,
                model=model or None,
                loras=lora_requests(loras),
            )
            await queue_request(ctx, interaction, request, visibility=visibility, note=note)
        except Exception as exc:  # every refusal and failure becomes a sentence
            await explain(interaction, exc)

    _complete(serve, ctx)
    return serve


def _complete(serve: app_commands.Command[Any, ..., None], ctx: BotContext) -> None:
    """What /serve suggests as its options are typed."""

    @serve.autocomplete("workflow")
    async def _workflows(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return workflow_choices(ctx.services.catalog, current)

    @serve.autocomplete("options")
    async def _options(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        typed = getattr(interaction.namespace, "workflow", None)
        try:
            chosen = await asyncio.to_thread(_chosen, ctx, interaction, typed)
        except Refusal:
            return []
        return option_choices(chosen, current)

    @serve.autocomplete("model")
    async def _models(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        family = await _family_typed(ctx, interaction)
        return model_choices(ctx.services.models, asker_of(interaction), current, family=family)

    @serve.autocomplete("loras")
    async def _loras(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        family = await _family_typed(ctx, interaction)
        return lora_choices(ctx.services.models, asker_of(interaction), current, family=family)


async def _family_typed(ctx: BotContext, interaction: discord.Interaction) -> Family | None:
    """The family of the workflow the request will run, for its models' choices."""
    typed = getattr(interaction.namespace, "workflow", None)
    try:
        chosen = await asyncio.to_thread(_chosen, ctx, interaction, typed)
    except Refusal:
        return None
    return chosen.manifest.family


async def _open_form(
    interaction: discord.Interaction,
    form_id: str,
    chosen: Workflow,
    values: dict[str, ParamValue],
    with_image: bool,
) -> None:
    """/serve's More options: the prompt and the workflow's own options in a form (the
    negative prompt too when one was typed, since the form's id cannot carry it)."""
    if with_image:
        raise Refusal("More options cannot carry an attached image: use `options` instead.")
    skip = SERVE_OWN - {"negative_prompt"} if "negative_prompt" in values else SERVE_OWN
    title = f"{chosen.manifest.title}: more options"
    prompt = str(values.get("prompt", ""))
    await interaction.response.send_modal(
        options_form(form_id, title, chosen, prompt, values, skip)
    )


async def _enhanced(
    prompts: PromptHelper,
    interaction: discord.Interaction,
    values: dict[str, ParamValue],
    private: bool,
) -> str:
    """The prompt through prompt help (deferring first: it may take longer than Discord
    waits): `values` gets the prompt to use; returns the note that shows both."""
    await interaction.response.defer(thinking=True, ephemeral=private)
    enhancement = await prompts.enhance(str(values["prompt"]), interaction=interaction.id)
    values["prompt"] = enhancement.prompt
    return enhanced_note(enhancement)


async def serve_form_submitted(ctx: BotContext, interaction: discord.Interaction) -> None:
    """/serve's More options form, sent: queue what it says."""
    custom_id = form_id(interaction)
    match = SERVE_FORM.fullmatch(custom_id)
    if match is None or not claim_interaction(ctx.services.locks, interaction):
        return
    try:
        fields = submitted(interaction)
        values: dict[str, ParamValue] = {"prompt": fields.prompt, **fields.values}
        if match["count"]:
            values["count"] = int(match["count"])
        if match["seed"]:
            values["seed"] = int(match["seed"])
        request = GenerationRequest(
            workflow=match["workflow"],
            values=values,
            preset=match["mode"] or None,
            aspect=match["aspect"] or None,
        )
        visibility = FORM_VISIBILITY[match["visibility"]]
        await queue_request(ctx, interaction, request, visibility=visibility)
    except Exception as exc:  # every refusal and failure becomes a sentence
        await explain(interaction, exc)


def _chosen(ctx: BotContext, interaction: discord.Interaction, typed: str | None) -> Workflow:
    """The workflow a request will run, as the intake will choose it (for its options);
    blocking (it may read the server's and the user's defaults)."""
    own, mine = ctx.intake.server_and_mine(
        interaction.guild_id, interaction.channel_id, interaction.user.id
    )
    return ctx.intake.workflow_for(GenerationRequest(workflow=typed or None), own, mine)


def _mode(workflow: Workflow, mode: app_commands.Choice[str] | None) -> str:
    """The preset a request runs with, as far as the form needs it (for its values)."""
    return mode.value if mode else workflow.manifest.default_preset or ""
