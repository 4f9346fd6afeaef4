"""`stillhouse bot`: run some or all shards until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from bot.client import StillhouseBot
from stillhouse.config import Settings, env_name
from stillhouse.errors import SettingsError
from stillhouse.safety import describe as describe_safety
from stillhouse.services import Services

log = logging.getLogger(__name__)


async def serve(bot: StillhouseBot, token: str) -> None:
    """Log in, connect the shards, and run until closed (SIGTERM/SIGINT close it)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: asyncio.ensure_future(bot.close()))
    async with bot:
        await bot.start(token)


def main(settings: Settings, shard_ids: list[int] | None, shard_count: int | None) -> int:
    """Entry point for `stillhouse bot`."""
    token = settings.bot.token
    if token is None:
        raise SettingsError([f"{env_name('bot', 'token')}: required to run the bot"])
    if shard_ids is not None and shard_count is None:
        raise SettingsError(["--shard-ids needs --shard-count (the bot's total shard count)"])
    if shard_ids is not None and shard_count is not None and max(shard_ids) >= shard_count:
        raise SettingsError([f"--shard-ids {shard_ids} must all be below --shard-count"])
    services = Services.build(settings)
    log.info(describe_safety(settings.safety), extra={"action": "bot.safety"})
    for problem in services.catalog.problems:
        log.warning("workflow skipped: %s", problem, extra={"action": "bot.workflows"})
    bot = StillhouseBot(services, shard_ids=shard_ids, shard_count=shard_count)
    try:
        asyncio.run(serve(bot, token.get_secret_value()))
    finally:
        services.close()
    return 0
