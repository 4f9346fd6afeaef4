"""Answering interactions: one way to reply whether or not we already acknowledged, the
replica handshake, and every error turned into a friendly sentence in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import discord
from discord import app_commands
from sqlalchemy.exc import DBAPIError

from stillhouse.errors import StillhouseError
from stillhouse.intake import Refusal
from stillhouse.locks import LockService
from stillhouse.models_catalog import Asker
from stillhouse.schemas.guilds import GuildConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

ALREADY_ACKNOWLEDGED = 40060
UNKNOWN_INTERACTION = 10062
ACK_BUDGET_S = 2.0  # of Discord's 3 s from the interaction; past it we defer, then finish
CLAIM_TTL_S = 15 * 60.0
OUR_FAULT = "Something went wrong on our side. Please try again in a moment."


def claim_interaction(locks: LockService, interaction: discord.Interaction) -> bool:
    """True for the one process that should answer this interaction. Redundant replicas
    of a shard all receive it; memcached picks one. Without memcached every replica
    answers and Discord refuses all but the first (see `reply`)."""
    if locks.acquire(f"interaction:{interaction.id}", CLAIM_TTL_S) is not None:
        return True
    log.info(
        "interaction taken by another replica",
        extra={"action": "bot.replica.skip", "interaction": interaction.id},
    )
    return False


# Answers echo what users typed (a prompt may hold "@everyone"): they never ping.
NO_MENTIONS = discord.AllowedMentions.none()


async def reply(
    interaction: discord.Interaction,
    content: str,
    *,
    ephemeral: bool = True,
    view: discord.ui.View | None = None,
) -> None:
    """Answer, or follow up if the interaction is already acknowledged (deferred)."""
    shown = discord.utils.MISSING if view is None else view
    try:
        if interaction.response.is_done():
            await interaction.followup.send(
                content, ephemeral=ephemeral, view=shown, allowed_mentions=NO_MENTIONS
            )
        else:
            await interaction.response.send_message(
                content, ephemeral=ephemeral, view=shown, allowed_mentions=NO_MENTIONS
            )
    except discord.HTTPException as exc:
        if exc.code in (ALREADY_ACKNOWLEDGED, UNKNOWN_INTERACTION):
            # Another replica answered first, or we were too late: nothing to add.
            log.info("interaction answered elsewhere", extra={"action": "bot.reply.skip"})
            return
        raise


def ack_budget_left(interaction: discord.Interaction) -> float:
    """Seconds left of the budget, counted from the interaction's making (its snowflake),
    not from when we got to it: a lagging gateway or a busy process has spent some.
    A clock behind Discord's gives the whole budget, never more."""
    age = (discord.utils.utcnow() - interaction.created_at).total_seconds()
    return min(ACK_BUDGET_S, max(0.0, ACK_BUDGET_S - age))


def tiers_by_role(own: GuildConfig, interaction: discord.Interaction) -> list[str]:
    """The tiers the user's roles give in this server (its managers' /server tier-role)."""
    roles = getattr(interaction.user, "roles", [])
    return [own.role_tiers[str(r.id)] for r in roles if str(r.id) in own.role_tiers]


def asker_of(interaction: discord.Interaction) -> Asker:
    """Who asks, where, and with which roles there (for the catalog's private models)."""
    roles = getattr(interaction.user, "roles", [])
    return Asker(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        role_ids=frozenset(role.id for role in roles),
    )


def age_restricted(interaction: discord.Interaction) -> bool:
    """Whether the interaction's channel is age-restricted (Discord's NSFW flag); a DM or
    an unknown channel is not."""
    is_nsfw = getattr(interaction.channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


async def within_ack_budget(
    interaction: discord.Interaction, work: Callable[[], T], *, ephemeral: bool = False
) -> T:
    """Run blocking `work` (database, memcached) in a thread; if it outlasts what is
    left of the acknowledgement budget, defer first so the interaction does not expire."""
    task: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(work))
    done, _ = await asyncio.wait({task}, timeout=ack_budget_left(interaction))
    if not done and not interaction.response.is_done():
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)
    return await task


async def guarded(interaction: discord.Interaction, handler: Callable[[], Awaitable[None]]) -> None:
    """Run a component handler; any failure becomes a reply instead of a stack trace."""
    try:
        await handler()
    except Exception as exc:  # every failure must reach the user as a sentence
        await explain(interaction, exc)


async def explain(interaction: discord.Interaction, error: BaseException) -> None:
    """The friendly reply for an error from a command or a button."""
    original = getattr(error, "original", None) or error
    if isinstance(original, Refusal):
        text = str(original)
    elif isinstance(original, app_commands.TransformerError | app_commands.CheckFailure):
        text = _describe_bad_option(original)
    elif isinstance(original, DBAPIError | StillhouseError | discord.HTTPException):
        log.warning("request failed: %r", original, extra={"action": "bot.error"})
        text = OUR_FAULT
    else:
        log.error("unexpected error", exc_info=original, extra={"action": "bot.error"})
        text = OUR_FAULT
    try:
        await reply(interaction, text, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not explain an error: %r", exc, extra={"action": "bot.error"})


def _describe_bad_option(error: app_commands.AppCommandError) -> str:
    if isinstance(error, app_commands.TransformerError):
        value = str(error.value)
        shown = value if len(value) <= 40 else value[:39] + "..."
        return f"That value is not allowed here: {shown!r}. Check the option's limits."
    return str(error) or "You cannot use this here."
