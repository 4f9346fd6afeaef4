"""`stillhouse bot` in its own process, pointed at the Discord emulator:

    python -m tests.bot.bot_process API_BASE GATEWAY_URL [stillhouse bot options...]

Patches what a test may patch (discord.py's REST base and gateway URL; no 5 s pause
between shards) and hands over to the real command line."""

from __future__ import annotations

import sys

import discord.gateway
import discord.http
import yarl

from bot.client import StillhouseBot


async def _no_pause(self: StillhouseBot, shard_id: int | None, *, initial: bool = False) -> None:
    return None


def main() -> None:
    api_base, gateway, *args = sys.argv[1:]
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    StillhouseBot.before_identify_hook = _no_pause  # type: ignore[method-assign]
    sys.argv = ["stillhouse", "bot", *args]
    from stillhouse.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
