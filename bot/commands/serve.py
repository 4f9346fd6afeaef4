"""/serve: a prompt and options in, a queued job and its position out, within 3 s."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot import messages
from bot.buttons import requester_of
from bot.choices import workflow_choices
from bot.context import BotContext
from bot.replies import (
    age_restricted,
    claim_interaction,
    explain,
    reply,
    tiers_by_role,
    within_ack_budget,
)
from bot.views import queued_view
from stillhouse.intake import Accepted, Attachment, GenerationRequest
from stillhouse.schemas.manifest import SEED_MAX, ParamValue

ASPECTS = [
    app_commands.Choice(name=n.capitalize(), value=n) for n in ("square", "portrait", "landscape")
]
MODES = [app_commands.Choice(name=n.capitalize(), value=n) for n in ("fast", "quality")]


def serve_command(ctx: BotContext) -> app_commands.Command[Any, ..., None]:
    """The /serve command bound to this process's services."""

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
    ) -> None:
        services = ctx.services
        if not claim_interaction(services.locks, interaction):
            return  # a replica of this shard answers it
        given: dict[str, ParamValue | None] = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "count": count,
            "seed": seed,
        }
        request = GenerationRequest(
            workflow=workflow or None,  # None: the server's default, else the operators'
            values={k: v for k, v in given.items() if v is not None},
            preset=mode.value if mode else None,
            aspect=aspect.value if aspect else None,
            image=_attachment(image) if image else None,
        )
        try:
            visibility = "private" if private else "spoiler" if spoiler else "public"
            requester = requester_of(interaction, services).model_copy(
                update={"visibility": visibility}
            )

            def admit() -> Accepted:  # in a thread: reads the server's settings first
                own, mine = ctx.intake.server_and_mine(
                    interaction.guild_id, interaction.channel_id, interaction.user.id
                )
                roles = tiers_by_role(own, interaction)
                bound = ctx.intake.prepare(
                    request,
                    interaction.guild_id,
                    own,
                    mine,
                    age_restricted=age_restricted(interaction),
                )
                return ctx.intake.submit(bound, requester.model_copy(update={"tier_roles": roles}))

            accepted = await within_ack_budget(interaction, admit)
        except Exception as exc:  # every refusal and failure becomes a sentence
            await explain(interaction, exc)
            return
        job = accepted.enqueued.job
        text = messages.queued(
            job.public_id,
            accepted.position,
            again=not accepted.enqueued.created,
            reused_from=job.reused_from,
        )
        shown = accepted.enqueued.job.routing.visibility == "private"
        await reply(interaction, text, ephemeral=shown, view=queued_view(job.public_id))
        if accepted.enqueued.created and job.reused_from is None:
            ctx.tracker.track(job.public_id, interaction, shown=text)

    @serve.autocomplete("workflow")
    async def _workflows(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return workflow_choices(ctx.services.catalog, current)

    return serve


def _attachment(image: discord.Attachment) -> Attachment:
    return Attachment(
        filename=image.filename,
        url=image.url,
        size=image.size,
        content_type=(image.content_type or "").split(";")[0].strip() or None,
        width=image.width,
        height=image.height,
    )
