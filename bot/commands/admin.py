"""/admin: pause and resume intake, stats, bans, quotas and the GPU workers' scale; every
answer is ephemeral.

A server's managers act on their own server only: pause it, ban in it, see its stats.
What reaches every server (`everywhere`, per-user quotas, which count a user's requests in
every server, and the RunPod endpoint's worker counts) belongs to the operators in
STILLHOUSE_BOT__ADMIN_IDS."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands

from bot import messages
from bot.commands.managed import ManagedGroup
from bot.context import BotContext
from master.scaling import ScalingRefused, set_worker_counts
from stillhouse.errors import SettingsError
from stillhouse.intake import Refusal
from stillhouse.moderation import EVERYWHERE, INTAKE_PAUSED

log = logging.getLogger(__name__)


EVERYWHERE_HELP = "Every server (the bot's operators only)"


class AdminCommands(ManagedGroup):
    """The /admin group bound to this process's services."""

    def __init__(self, ctx: BotContext) -> None:
        super().__init__(ctx, name="admin", description="Operate the image bot in this server")

    @app_commands.command(name="pause", description="Stop accepting new requests")
    @app_commands.describe(note="Shown to users who try (optional)", everywhere=EVERYWHERE_HELP)
    async def pause(
        self, interaction: discord.Interaction, note: str | None = None, everywhere: bool = False
    ) -> None:
        def work(scope: int) -> str:
            self._services.moderation.set_switch(INTAKE_PAUSED, True, note, guild_id=scope)
            return messages.paused(scope == EVERYWHERE)

        await self._run(interaction, "pause", work, everywhere)

    @app_commands.command(name="resume", description="Accept new requests again")
    @app_commands.describe(everywhere=EVERYWHERE_HELP)
    async def resume(self, interaction: discord.Interaction, everywhere: bool = False) -> None:
        def work(scope: int) -> str:
            moderation = self._services.moderation
            moderation.set_switch(INTAKE_PAUSED, False, guild_id=scope)
            if scope != EVERYWHERE and moderation.switch_for(INTAKE_PAUSED, scope).enabled:
                return messages.STILL_PAUSED_EVERYWHERE
            return messages.resumed(scope == EVERYWHERE)

        await self._run(interaction, "resume", work, everywhere)

    @app_commands.command(name="stats", description="Queue depth, in flight, success rate, wait")
    @app_commands.describe(everywhere=EVERYWHERE_HELP)
    async def stats(self, interaction: discord.Interaction, everywhere: bool = False) -> None:
        def work(scope: int) -> str:
            guild = None if scope == EVERYWHERE else scope
            paused = self._services.moderation.switch_for(INTAKE_PAUSED, guild)
            figures = self._services.insights.stats(guild_id=guild)
            return messages.stats(figures, paused.enabled, everywhere=guild is None)

        await self._run(interaction, "stats", work, everywhere)

    @app_commands.command(name="usage", description="GPU time today and this month, and by whom")
    @app_commands.describe(everywhere=EVERYWHERE_HELP)
    async def usage(self, interaction: discord.Interaction, everywhere: bool = False) -> None:
        def work(scope: int) -> str:
            guild = None if scope == EVERYWHERE else scope
            now = self._services.clock()
            today = now.replace(hour=0, minute=0, second=0, microsecond=0)
            insights = self._services.insights
            return messages.usage(
                insights.usage(today, guild_id=guild),
                insights.usage(today.replace(day=1), guild_id=guild),
                everywhere=guild is None,
            )

        await self._run(interaction, "usage", work, everywhere)

    @app_commands.command(name="ban", description="Refuse a user's requests in this server")
    @app_commands.describe(everywhere=EVERYWHERE_HELP)
    async def ban(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        reason: str,
        everywhere: bool = False,
    ) -> None:
        def work(scope: int) -> str:
            moderation = self._services.moderation
            moderation.ban(user.id, reason, interaction.user.id, guild_id=scope)
            where = "everywhere" if scope == EVERYWHERE else "in this server"
            return f"{user.mention} is banned {where}: {reason}"

        await self._run(interaction, "ban", work, everywhere)

    @app_commands.command(name="unban", description="Accept a user's requests again")
    @app_commands.describe(everywhere=EVERYWHERE_HELP)
    async def unban(
        self, interaction: discord.Interaction, user: discord.User, everywhere: bool = False
    ) -> None:
        def work(scope: int) -> str:
            if self._services.moderation.unban(user.id, guild_id=scope):
                where = "anywhere" if scope == EVERYWHERE else "in this server"
                return f"{user.mention} is no longer banned {where}."
            return "That user was not banned here." if scope else "That user was not banned."

        await self._run(interaction, "unban", work, everywhere)

    @app_commands.command(name="quota", description="Set a user's requests per 24 hours")
    @app_commands.describe(daily_jobs="Requests per 24 hours; leave out to use the default")
    async def quota(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        daily_jobs: app_commands.Range[int, 0, 100_000] | None = None,
    ) -> None:
        # A user's quota counts their requests in every server: an operator's decision.
        def work(_scope: int) -> str:
            if daily_jobs is None:
                self._services.moderation.clear_quota(user.id)
                return f"{user.mention} is back on the default quota."
            self._services.moderation.set_quota(user.id, daily_jobs, interaction.user.id)
            return f"{user.mention} may make {daily_jobs} requests per 24 hours."

        await self._run(interaction, "quota", work, everywhere=True)

    @app_commands.command(name="tier", description="Give a user a tier (quotas and lane)")
    @app_commands.describe(tier="One of the operators' tiers; leave out for the default")
    async def tier(
        self, interaction: discord.Interaction, user: discord.User, tier: str | None = None
    ) -> None:
        # Tiers reach every server: an operator's decision.
        def work(_scope: int) -> str:
            tiers = self._services.intake.current_tiers()
            if tier is None:
                self._services.moderation.clear_tier(user.id)
                return f"{user.mention} is back on the {tiers.default} tier."
            if tier not in tiers.tiers:
                raise Refusal(f"There is no tier “{tier}” (there are: {', '.join(tiers.tiers)}).")
            self._services.moderation.set_tier(user.id, tier, interaction.user.id)
            return f"{user.mention} has the {tier} tier."

        await self._run(interaction, "tier", work, everywhere=True)

    @app_commands.command(name="scale", description="Set how many GPU workers RunPod keeps")
    @app_commands.describe(minimum="Workers kept running even when idle", maximum="Workers at most")
    async def scale(
        self,
        interaction: discord.Interaction,
        minimum: app_commands.Range[int, 0, 1000],
        maximum: app_commands.Range[int, 0, 1000],
    ) -> None:
        # GPUs serve every server: an operator's decision.
        def work(_scope: int) -> str:
            try:
                counts = asyncio.run(
                    set_worker_counts(self._services.settings.runpod, minimum, maximum)
                )
            except SettingsError:
                raise Refusal("This bot has no RunPod endpoint and key configured.") from None
            except ScalingRefused as exc:
                raise Refusal(f"RunPod did not change the endpoint: {exc}.") from None
            return (
                f"RunPod now keeps {counts.minimum} to {counts.maximum} GPU workers "
                f"(endpoint {counts.endpoint_id})."
            )

        await self._run(interaction, "scale", work, everywhere=True)
