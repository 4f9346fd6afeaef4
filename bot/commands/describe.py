"""/describe: prompt ideas for an attached image, from prompt help's vision model. The
answer is ephemeral: ideas for the person who asks, to use with /serve."""

from __future__ import annotations

import base64
from typing import Any

import discord
from discord import app_commands

from bot.context import BotContext
from bot.queueing import attachment_of
from bot.replies import claim_interaction, guarded, reply
from stillhouse.intake import Refusal
from stillhouse.prompt_help import Description

MESSAGE_LIMIT = 2000  # Discord's, for a message's content
HEADER = "Prompts for this image (use one with /serve):"


def describe_command(ctx: BotContext) -> app_commands.Command[Any, ..., None]:
    """/describe image:<attachment>."""

    @app_commands.command(name="describe", description="Prompt ideas for an image")
    @app_commands.describe(image="The image to find prompts for")
    async def describe(interaction: discord.Interaction, image: discord.Attachment) -> None:
        if not claim_interaction(ctx.services.locks, interaction):
            return
        helper = ctx.prompt_help
        # What needs no model is said at once, within the acknowledgement window.
        if not helper.sees_images:
            unseen = await helper.describe(image.url, interaction=interaction.id)  # logs why
            await reply(interaction, unseen.note or "")
            return
        try:  # what /serve would refuse of it, said the same way
            ctx.intake.checked_image(attachment_of(image))
        except Refusal as refused:
            await reply(interaction, str(refused))
            return

        async def work() -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            # The image goes inline: the model's server need not reach Discord's CDN.
            data = await image.read()
            kind = (image.content_type or "").split(";")[0].strip()
            url = f"data:{kind};base64,{base64.b64encode(data).decode()}"
            await reply(interaction, render(await helper.describe(url, interaction=interaction.id)))

        await guarded(interaction, work)

    return describe


def render(description: Description) -> str:
    """The prompts as a numbered list (each in code, to copy as it is), cut to fit one
    message; or the note saying why there are none."""
    if not description.prompts:
        return description.note or "Prompt help found nothing to suggest."
    room = (MESSAGE_LIMIT - len(HEADER)) // len(description.prompts) - len("\n1. ``")
    lines = [HEADER]
    for number, prompt in enumerate(description.prompts, start=1):
        shown = prompt.replace("`", "'")
        shown = shown if len(shown) <= room else shown[: room - 1] + "…"
        lines.append(f"{number}. `{shown}`")
    return "\n".join(lines)
