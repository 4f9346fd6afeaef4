"""The bot: a sharded discord.py client with the app commands, the persistent buttons,
and the two background loops (delivery, progress)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from aiohttp import web
from discord import app_commands

from bot.buttons import Buttons
from bot.commands import all_commands
from bot.commands.serve import serve_form_submitted
from bot.context import BotContext
from bot.delivery import DeliveryLoop
from bot.limiter import GlobalLimiter
from bot.metrics import BotMetrics, serve_metrics
from bot.options import form_id
from bot.progress import ProgressTracker
from bot.replies import explain
from bot.views import JobButton
from stillhouse.ids import new_owner
from stillhouse.lock_metrics import count_degraded_locks
from stillhouse.services import Services

log = logging.getLogger(__name__)


class StillhouseBot(discord.AutoShardedClient):
    """One bot process: some or all shards of the bot token."""

    def __init__(
        self,
        services: Services,
        *,
        shard_ids: list[int] | None = None,
        shard_count: int | None = None,
        sync_commands: bool = True,
        **options: Any,
    ) -> None:
        # Guild events only: the bot needs its guilds and channels, never message text.
        intents = discord.Intents.none()
        intents.guilds = True
        metrics = BotMetrics()
        super().__init__(
            intents=intents,
            shard_ids=shard_ids,  # type: ignore[arg-type]  # None: every shard
            shard_count=shard_count,
            http_trace=metrics.trace(),
            **options,
        )
        self.services = services
        self.owner = new_owner("bot")
        self.tree = app_commands.CommandTree(self)
        self.metrics = metrics
        count_degraded_locks(metrics.registry, services.locks)
        metrics.watch_gateway(lambda: self.latencies)
        self.tracker = ProgressTracker(services, self.metrics)
        self.intake = services.intake
        self.context = BotContext(services, self.intake, self.tracker)
        self.buttons = Buttons(self.context)
        limiter = GlobalLimiter(services.locks, services.settings.bot.global_rate_per_s)
        self.delivery = DeliveryLoop(self, services, limiter, self.owner, self.metrics)
        for command in all_commands(self.context):
            self.tree.add_command(command)
        self.tree.on_error = self._on_command_error  # type: ignore[method-assign]
        self._sync_commands = sync_commands
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._metrics_runner: web.AppRunner | None = None

    async def setup_hook(self) -> None:
        """Register the buttons, sync commands (shard 0's process), start the loops."""
        self.add_dynamic_items(JobButton)
        if self._sync_commands and (self.shard_ids is None or 0 in self.shard_ids):
            await self._sync()
        self._loops = [
            asyncio.create_task(self.delivery.run(self._stopping), name="delivery"),
            asyncio.create_task(self.tracker.run(self._stopping), name="progress"),
        ]
        settings = self.services.settings.bot
        if settings.metrics_port:
            self._metrics_runner = await serve_metrics(
                self.metrics, settings.metrics_host, settings.metrics_port
            )

    async def close(self) -> None:
        """Stop the loops (a send in progress finishes), then disconnect."""
        self._stopping.set()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        await super().close()

    async def on_ready(self) -> None:
        """Logged once per connection."""
        log.info(
            "bot connected",
            extra={"action": "bot.ready", "shards": self.shard_ids, "guilds": len(self.guilds)},
        )

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Forms (modals) sent back: /serve's More options and Remix. Their ids carry
        their state, so any process of the shard takes them (bot.options)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        custom_id = form_id(interaction)
        if custom_id.startswith("sh:M:"):
            await serve_form_submitted(self.context, interaction)
        elif custom_id.startswith("sh:R:"):
            await self.buttons.remix_submitted(interaction)

    async def _sync(self) -> None:
        guilds = self.services.settings.bot.guild_list()
        if not guilds:
            synced = await self.tree.sync()
            log.info("commands synced", extra={"action": "bot.sync", "commands": len(synced)})
            return
        for guild_id in guilds:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info(
                "commands synced",
                extra={"action": "bot.sync", "guild": guild_id, "commands": len(synced)},
            )

    async def _on_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await explain(interaction, error)
