"""What /admin and /server share: who may act where, one audit line per action, and every
answer ephemeral, every failure a sentence.

A server's managers (Manage Server) act on their own server; acting on every server
belongs to the operators in STILLHOUSE_BOT__ADMIN_IDS, who may also act in any server."""

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
from stillhouse.moderation import EVERYWHERE

log = logging.getLogger(__name__)


class ManagedGroup(app_commands.Group):
    """A command group for managers and operators, bound to this process's services."""

    def __init__(self, ctx: BotContext, *, name: str, description: str) -> None:
        super().__init__(
            name=name,
            description=description,
            guild_only=True,
            default_permissions=discord.Permissions(manage_guild=True),
        )
        self._ctx = ctx
        self._services = ctx.services

    async def _run(
        self,
        interaction: discord.Interaction,
        action: str,
        work: Callable[[int], str],
        everywhere: bool = False,
    ) -> None:
        """`work(scope)` in a thread, its sentence as the ephemeral answer."""
        if not claim_interaction(self._services.locks, interaction):
            return
        try:
            scope = acting_scope(self._ctx, interaction, everywhere, self.name)
            text = await asyncio.to_thread(work, scope)
        except Exception as exc:  # a sentence, not a stack trace
            await explain(interaction, exc)
            return
        log.info(
            "%s %s",
            self.name,
            action,
            extra={
                "action": f"bot.{self.name}.{action}",
                "by": interaction.user.id,
                "guild": interaction.guild_id,
                "scope": scope,
            },
        )
        await reply(interaction, text)


def acting_scope(
    ctx: BotContext, interaction: discord.Interaction, everywhere: bool, command: str
) -> int:
    """Where this action may act: this guild for its managers, every guild (EVERYWHERE)
    for the configured operators only."""
    operator = interaction.user.id in ctx.services.settings.bot.admin_list()
    if everywhere:
        if not operator:
            raise Refusal(messages.OPERATORS_ONLY)
        return EVERYWHERE
    if interaction.guild_id is None:
        raise Refusal(f"Use /{command} in a server.")
    if operator or interaction.permissions.manage_guild:
        return interaction.guild_id
    raise Refusal(f"Only this server's managers can use /{command} here.")
