"""`stillhouse shards`: Discord's recommended shard count (GET /gateway/bot, through the
real discord.py HTTP client against the emulator) and how to run that many."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from bot.shards import ask_discord
from stillhouse.cli import cli
from tests.doubles.discord import DiscordEmulator


def test_discord_recommends_one_shard_per_thousand_guilds_at_least_one(
    emu: DiscordEmulator,
) -> None:
    advice = asyncio.run(ask_discord(emu.token))
    assert advice.shards == 1  # the emulator's few guilds
    assert advice.starts_left <= advice.starts_total and advice.max_concurrency >= 1


def test_the_command_prints_discords_count_and_how_to_run_it(
    emu: DiscordEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.state.recommended_shards = 3
    monkeypatch.setenv("STILLHOUSE_BOT__TOKEN", emu.token)
    done = CliRunner().invoke(cli, ["shards"])
    assert done.exit_code == 0, done.output
    assert "Discord recommends 3 shards for this bot." in done.output
    assert 'SHARD_COUNT: "3"' in done.output
    assert "kubectl -n stillhouse scale statefulset stillhouse-bot --replicas=3" in done.output


def test_a_refused_token_is_said_plainly(
    emu: DiscordEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STILLHOUSE_BOT__TOKEN", "not-the-token")
    done = CliRunner().invoke(cli, ["shards"])
    assert done.exit_code == 1
    assert "Discord refused the bot token" in done.output
