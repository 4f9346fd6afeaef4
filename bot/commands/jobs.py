"""/cancel, /queue and /workflows: a user's own requests, and what can be asked for."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands

from bot import messages
from bot.context import BotContext
from bot.replies import claim_interaction, explain, reply
from stillhouse.intake import Refusal
from stillhouse.queue.records import CancelOutcome

_CANCELLED = {
    CancelOutcome.CANCELLED: "Cancelled `{job}`.",
    CancelOutcome.REQUESTED: "Cancelling `{job}`: the GPU job is being stopped.",
    CancelOutcome.ALREADY_FINISHED: "`{job}` has already finished.",
    CancelOutcome.NOT_FOUND: "There is no request `{job}`.",
}


def job_commands(ctx: BotContext) -> list[app_commands.Command[Any, ..., None]]:
    """/cancel, /queue, /workflows."""

    @app_commands.command(name="cancel", description="Cancel one of your requests")
    @app_commands.describe(job="The request's id (default: your latest)")
    async def cancel(interaction: discord.Interaction, job: str | None = None) -> None:
        if not claim_interaction(ctx.services.locks, interaction):
            return
        try:
            text = await asyncio.to_thread(_cancel, ctx, interaction.user.id, job)
        except Exception as exc:  # a sentence, not a stack trace
            await explain(interaction, exc)
            return
        await reply(interaction, text)

    @app_commands.command(name="queue", description="Your requests that are waiting or running")
    async def queue(interaction: discord.Interaction) -> None:
        if not claim_interaction(ctx.services.locks, interaction):
            return
        try:
            text = await asyncio.to_thread(listing, ctx, interaction.user.id)
        except Exception as exc:  # a sentence, not a stack trace
            await explain(interaction, exc)
            return
        await reply(interaction, text)

    @app_commands.command(name="workflows", description="What /serve can make")
    async def workflows(interaction: discord.Interaction) -> None:
        if not claim_interaction(ctx.services.locks, interaction):
            return
        catalog = ctx.services.catalog
        lines = [
            f"**{w.manifest.title}** (`{w.name}`): {w.manifest.description}"
            for w in catalog.served()
        ]
        await reply(interaction, "\n".join(lines) or "No workflows are installed.")

    return [cancel, queue, workflows]


def _cancel(ctx: BotContext, user_id: int, public_id: str | None) -> str:
    services = ctx.services
    if public_id is None:
        mine = services.insights.unfinished_jobs(user_id, limit=50)
        if not mine:
            return "You have no requests waiting or running."
        public_id = mine[-1].public_id
    job = services.queue.get(public_id.strip())
    if job is None:
        return _CANCELLED[CancelOutcome.NOT_FOUND].format(job=public_id)
    if job.routing.user_id != user_id and user_id not in services.settings.bot.admin_list():
        raise Refusal("Only the person who asked can cancel that request.")
    return _CANCELLED[services.queue.cancel(job.public_id)].format(job=job.public_id)


def listing(ctx: BotContext, user_id: int) -> str:
    """A user's unfinished requests, each with its place or progress (/queue, /info)."""
    services = ctx.services
    jobs = services.insights.unfinished_jobs(user_id)
    if not jobs:
        return "You have no requests waiting or running."
    lines = []
    for job in jobs:
        where = services.queue.position(job.public_id)
        if where.ahead is None:
            state = messages.progress(job.public_id, job.status, job.progress, job.progress_note)
        else:
            state = messages.queued(job.public_id, where).split(". ")[0] + "."
        lines.append(f"- {job.workflow_name}: {state}")
    return "\n".join(lines)
