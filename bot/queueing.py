"""One way a request becomes a job, for /serve, its form and every button that queues:
who asks, the admission in a thread within Discord's acknowledgement budget, the answer
with the prompt and the place in the queue, and the progress that follows."""

from __future__ import annotations

from datetime import timedelta

import discord
from pydantic import SecretStr

from bot import messages
from bot.context import BotContext
from bot.replies import (
    age_restricted,
    asker_of,
    reply,
    tiers_by_role,
    within_ack_budget,
)
from bot.views import queued_view
from stillhouse.intake import Accepted, Attachment, GenerationRequest, Requester
from stillhouse.schemas.jobs import Visibility
from stillhouse.schemas.users import UserConfig
from stillhouse.services import Services


async def queue_request(
    ctx: BotContext,
    interaction: discord.Interaction,
    request: GenerationRequest,
    *,
    visibility: Visibility = "public",
    note: str = "",
    user_defaults: bool = True,
) -> None:
    """Admit and queue `request` for the user of `interaction`; answer with its place
    (after `note`, if any) and follow its progress. Raises Refusal when not admitted.
    `user_defaults`: whether the user's own defaults (/settings) apply, as for /serve;
    the buttons carry their values from the result instead."""
    intake = ctx.intake
    requester = requester_of(interaction, ctx.services).model_copy(
        update={"visibility": visibility}
    )

    def admit() -> Accepted:  # in a thread: reads the server's settings first
        guild, channel, user = interaction.guild_id, interaction.channel_id, interaction.user.id
        if user_defaults:
            own, mine = intake.server_and_mine(guild, channel, user)
        else:
            own, mine = intake.server(guild, channel), UserConfig()
        roles = tiers_by_role(own, interaction)
        bound = intake.prepare(
            request,
            guild,
            own,
            mine,
            age_restricted=age_restricted(interaction),
            asker=asker_of(interaction),
        )
        return intake.submit(bound, requester.model_copy(update={"tier_roles": roles}))

    accepted = await within_ack_budget(interaction, admit)
    job = accepted.enqueued.job
    prompt = accepted.bound.params.root.get("prompt")
    shown_prompt = prompt if isinstance(prompt, str) else None
    text = messages.queued(
        job.public_id,
        accepted.position,
        again=not accepted.enqueued.created,
        reused_from=job.reused_from,
        prompt=shown_prompt,
    )
    text = f"{note}\n{text}" if note else text
    private = job.routing.visibility == "private"
    await reply(interaction, text, ephemeral=private, view=queued_view(job.public_id))
    if accepted.enqueued.created and job.reused_from is None:
        ctx.tracker.track(job.public_id, interaction, shown=text, prompt=shown_prompt)


def requester_of(interaction: discord.Interaction, services: Services) -> Requester:
    """Who is asking, and the interaction that will carry the answer."""
    guild = interaction.guild
    client = interaction.client
    shard = guild.shard_id if guild is not None else 0
    if guild is None and interaction.guild_id is not None and client.shard_count:
        shard = (interaction.guild_id >> 22) % client.shard_count
    lifetime = timedelta(seconds=services.settings.bot.token_lifetime_s)
    return Requester(
        source="discord",
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        shard_id=shard,
        request_id=interaction.id,
        reply_token=SecretStr(interaction.token),
        reply_token_expires_at=interaction.created_at + lifetime,
    )


def attachment_of(image: discord.Attachment) -> Attachment:
    """A Discord attachment as the intake checks it."""
    return Attachment(
        filename=image.filename,
        url=image.url,
        size=image.size,
        content_type=(image.content_type or "").split(";")[0].strip() or None,
        width=image.width,
        height=image.height,
    )
