"""/admin: pause and resume intake, stats, bans and quotas. Server managers and the
configured admin ids only; every answer is ephemeral."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import discord
from discord import app_commands

from bot import messages
from bot.context import BotContext
from bot.replies import claim_interaction, explain, reply
from stillhouse.intake import Refusal
from stillhouse.moderation import INTAKE_PAUSED

log = logging.getLogger(__name__)


class AdminCommands(app_commands.Group):
    """The /admin group bound to this process's services."""

    def __init__(self, ctx: BotContext) -> None:
        super().__init__(
            name="admin",
            description="Operate the image bot",
            guild_only=True,
            default_permissions=discord.Permissions(manage_guild=True),
        )
        self._ctx = ctx
        self._services = ctx.services

    @app_commands.command(name="pause", description="Stop accepting new requests")
    @app_commands.describe(note="Shown to users who try (optional)")
    async def pause(self, interaction: discord.Interaction, note: str | None = None) -> None:
        def work() -> str:
            self._services.moderation.set_switch(INTAKE_PAUSED, True, note)
            return "Intake paused: /serve refuses new requests; queued ones still run."

        await self._run(interaction, "pause", work)

    @app_commands.command(name="resume", description="Accept new requests again")
    async def resume(self, interaction: discord.Interaction) -> None:
        def work() -> str:
            self._services.moderation.set_switch(INTAKE_PAUSED, False)
            return "Intake resumed."

        await self._run(interaction, "resume", work)

    @app_commands.command(name="stats", description="Queue depth, in flight, success rate, wait")
    async def stats(self, interaction: discord.Interaction) -> None:
        def work() -> str:
            paused = self._services.moderation.switch(INTAKE_PAUSED).enabled
            return messages.stats(self._services.insights.stats(), paused)

        await self._run(interaction, "stats", work)

    @app_commands.command(name="ban", description="Refuse a user's requests")
    async def ban(self, interaction: discord.Interaction, user: discord.User, reason: str) -> None:
        def work() -> str:
            self._services.moderation.ban(user.id, reason, interaction.user.id)
            return f"{user.mention} is banned: {reason}"

        await self._run(interaction, "ban", work)

    @app_commands.command(name="unban", description="Accept a user's requests again")
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        def work() -> str:
            if self._services.moderation.unban(user.id):
                return f"{user.mention} is no longer banned."
            return "That user was not banned."

        await self._run(interaction, "unban", work)

    @app_commands.command(name="quota", description="Set a user's requests per 24 hours")
    @app_commands.describe(daily_jobs="Requests per 24 hours; leave out to use the default")
    async def quota(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        daily_jobs: app_commands.Range[int, 0, 100_000] | None = None,
    ) -> None:
        def work() -> str:
            if daily_jobs is None:
                self._services.moderation.clear_quota(user.id)
                return f"{user.mention} is back on the default quota."
            self._services.moderation.set_quota(user.id, daily_jobs, interaction.user.id)
            return f"{user.mention} may make {daily_jobs} requests per 24 hours."

        await self._run(interaction, "quota", work)

    async def _run(
        self, interaction: discord.Interaction, action: str, work: Callable[[], str]
    ) -> None:
        if not claim_interaction(self._services.locks, interaction):
            return
        try:
            _only_admins(self._ctx, interaction)
            text = await asyncio.to_thread(work)
        except Exception as exc:  # a sentence, not a stack trace
            await explain(interaction, exc)
            return
        log.info(
            "admin %s", action, extra={"action": f"bot.admin.{action}", "by": interaction.user.id}
        )
        await reply(interaction, text)


def _only_admins(ctx: BotContext, interaction: discord.Interaction) -> None:
    if interaction.user.id in ctx.services.settings.bot.admin_list():
        return
    if interaction.permissions.manage_guild:
        return
    raise Refusal("Only server managers can use /admin.")
