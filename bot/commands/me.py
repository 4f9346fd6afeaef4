"""/info, /history and /settings: where a user stands, what they made, and their own
defaults for /serve. Every answer is ephemeral: it is about the person who asks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import discord
from discord import app_commands

from bot.choices import default_workflow, workflow_choices
from bot.commands.jobs import listing
from bot.commands.serve import ASPECTS, MODES
from bot.context import BotContext
from bot.replies import claim_interaction, explain, reply, tiers_by_role
from bot.views import MAX_HISTORY_BUTTONS, history_view
from stillhouse.queue.admission import WINDOWS
from stillhouse.schemas.users import UserConfig
from stillhouse.tiers import SPANS


def my_commands(ctx: BotContext) -> list[app_commands.Command[Any, ..., None]]:
    """/info, /history, /settings."""

    @app_commands.command(name="info", description="Your tier, limits, GPU time and requests")
    async def info(interaction: discord.Interaction) -> None:
        def work() -> str:
            own = ctx.services.guilds.get(interaction.guild_id)
            return _info(ctx, interaction.user.id, tiers_by_role(own, interaction))

        await _answer(interaction, ctx, work)

    @app_commands.command(name="history", description="Your recent images")
    async def history(interaction: discord.Interaction) -> None:
        if not claim_interaction(ctx.services.locks, interaction):
            return
        try:
            text, jobs = await asyncio.to_thread(_history, ctx, interaction.user.id)
        except Exception as exc:  # a sentence, not a stack trace
            await explain(interaction, exc)
            return
        await reply(interaction, text, view=history_view(jobs) if jobs else None)

    @app_commands.command(name="settings", description="Your defaults for /serve")
    @app_commands.describe(
        workflow="Your default workflow",
        mode="Your default mode",
        aspect="Your default shape",
        reset="Back to the server's and the bot's defaults",
    )
    @app_commands.choices(mode=MODES, aspect=ASPECTS)
    async def settings(
        interaction: discord.Interaction,
        workflow: str | None = None,
        mode: app_commands.Choice[str] | None = None,
        aspect: app_commands.Choice[str] | None = None,
        reset: bool = False,
    ) -> None:
        changes = {
            "workflow": workflow,
            "mode": mode.value if mode else None,
            "aspect": aspect.value if aspect else None,
        }

        def work() -> str:
            users, user = ctx.services.users, interaction.user.id
            if not reset and all(v is None for v in changes.values()):
                return describe(users.get(user))
            return describe(users.change(user, user, lambda c: _edited(ctx, c, changes, reset)))

        await _answer(interaction, ctx, work)

    @settings.autocomplete("workflow")
    async def _workflows(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return workflow_choices(ctx.services.catalog, current)

    return [info, history, settings]


async def _answer(
    interaction: discord.Interaction, ctx: BotContext, work: Callable[[], str]
) -> None:
    if not claim_interaction(ctx.services.locks, interaction):
        return
    try:
        text = await asyncio.to_thread(work)
    except Exception as exc:  # a sentence, not a stack trace
        await explain(interaction, exc)
        return
    await reply(interaction, text)


def _edited(
    ctx: BotContext, config: UserConfig, changes: dict[str, str | None], reset: bool
) -> UserConfig:
    if reset:
        return UserConfig()
    given = {k: v for k, v in changes.items() if v is not None}
    if "workflow" in given:
        given["workflow"] = default_workflow(ctx.services.catalog, given["workflow"])
    return config.model_copy(update=given)


def describe(config: UserConfig) -> str:
    """A user's defaults as they read them."""
    chosen = [
        f"workflow {config.workflow}" if config.workflow else None,
        f"mode {config.mode}" if config.mode else None,
        f"aspect {config.aspect}" if config.aspect else None,
    ]
    shown = [c for c in chosen if c]
    if not shown:
        return "You use this server's and the bot's defaults."
    return "Your defaults for /serve: " + ", ".join(shown) + " (what you name in /serve wins)."


def _info(ctx: BotContext, user_id: int, role_tiers: list[str]) -> str:
    services = ctx.services
    insights = services.insights
    now = services.clock()
    standing = services.moderation.standing(user_id, None)
    tier, limits = services.intake.limits_for(standing, role_tiers)
    lines = [f"**Your tier: {tier.title or limits.tier}**"]
    for window, span in SPANS.items():
        used = insights.created_since(user_id, now - WINDOWS[window])
        lines.append(f"- {span}: {_left(used, limits.quotas.get(window))}")
    at_once = limits.max_active
    lines += [
        f"- waiting or running at once: {_left(insights.unfinished_count(user_id), at_once)}",
        "**GPU time** (images made)",
    ]
    for label, since in (("today", _day_start(now)), ("this month", _month_start(now))):
        count, seconds = insights.gpu_seconds(user_id, since)
        lines.append(f"- {label}: {seconds:.1f} s for {count} request{'s' if count != 1 else ''}")
    lines.append("**Your requests**")
    lines.append(listing(ctx, user_id))
    return "\n".join(lines)


def _left(used: int, limit: int | None) -> str:
    if not limit:
        return f"{used} used, no limit"
    return f"{used} of {limit} used, {max(0, limit - used)} left"


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(now: datetime) -> datetime:
    return _day_start(now).replace(day=1)


def _history(ctx: BotContext, user_id: int) -> tuple[str, list[str]]:
    jobs = ctx.services.insights.recent_results(user_id, MAX_HISTORY_BUTTONS)
    if not jobs:
        return "You have no images yet. Make some with /serve.", []
    lines = ["Your latest images (UTC); Open shows one again, to you only:"]
    for number, job in enumerate(jobs, start=1):
        prompt = str(job.params.root.get("prompt") or "").strip()
        shown = prompt if len(prompt) <= 60 else prompt[:59] + "…"
        when = job.finished_at.strftime("%d %b %H:%M") if job.finished_at else "?"
        lines.append(f"{number}. {when} - {job.workflow_name} - “{shown}” - `{job.public_id}`")
    return "\n".join(lines), [job.public_id for job in jobs]
