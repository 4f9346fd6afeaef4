"""Servers' settings across shard processes: two `stillhouse bot` processes (shards 0 and
1 of 2, one server each) on one database. A change made through one process, or written
by any other, is in force in the other at its next request, without a restart; a
server's own change stays in that server; the operators' pause reaches both."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from stillhouse.preferences import GuildSettings
from tests.bot.conftest import REPO, empty_moderation
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    MANAGER,
    OPERATOR,
    OTHER_CHANNEL,
    OTHER_GUILD,
    SECOND_CHANNEL,
    USER,
    guilds,
)
from tests.conftest import MemcachedServer
from tests.doubles.discord import DiscordEmulator
from tests.master.cluster import base_env
from tests.support import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def two_shards(
    mariadb_url: str, mariadb_engine: Engine, memcached: MemcachedServer, tmp_path: Path
) -> Iterator[DiscordEmulator]:
    """The emulator with both guilds, and one bot process for each of the two shards."""
    empty_moderation(mariadb_engine)
    processes: list[subprocess.Popen[bytes]] = []
    with DiscordEmulator(guilds=guilds()) as emu:
        try:
            for shard in (0, 1):
                env = {
                    **base_env(),
                    "STILLHOUSE_DATABASE__URL": mariadb_url,
                    "STILLHOUSE_MEMCACHED__SERVERS": memcached.address,
                    "STILLHOUSE_BOT__TOKEN": emu.token,
                    "STILLHOUSE_BOT__ADMIN_IDS": str(OPERATOR),
                    "STILLHOUSE_DATA_DIR": str(tmp_path / f"bot{shard}"),
                    "STILLHOUSE_STORAGE__BACKEND": "local",
                    "STILLHOUSE_STORAGE__LOCAL_DIR": str(tmp_path / "images"),
                    "STILLHOUSE_LOG__FORMAT": "text",
                    "STILLHOUSE_INTAKE__PER_MINUTE": "1000",
                    "STILLHOUSE_INTAKE__MAX_ACTIVE_JOBS": "100",
                }
                command = [sys.executable, "-m", "tests.bot.bot_process", emu.api_base]
                shards = ["--shard-ids", str(shard), "--shard-count", "2"]
                with (tmp_path / f"bot{shard}.log").open("ab") as log:
                    processes.append(
                        subprocess.Popen(
                            [*command, emu.gateway_url, *shards],
                            cwd=REPO,
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            emu.wait_ready(sessions=2, timeout_s=60)
            wait_until(lambda: emu.commands.get(None), 60, what="commands synced by shard 0")
            yield emu
        finally:
            for process in processes:
                process.kill()
                process.wait(timeout=30)


def serve(emu: DiscordEmulator, guild: int, channel: int, prompt: str = "a lighthouse") -> str:
    ix = emu.slash_command(guild, channel, USER, "serve", options={"prompt": prompt})
    return str(ix.wait_response(timeout_s=20)["data"]["content"])


def command(emu: DiscordEmulator, caller: int, name: str, sub: str, **options: object) -> str:
    ix = emu.slash_command(GUILD, CHANNEL, caller, name, subcommand=sub, options=options)
    return str(ix.wait_response(timeout_s=20)["data"]["content"])


def test_settings_changed_anywhere_apply_at_once_in_every_shard_process(
    two_shards: DiscordEmulator, mariadb_engine: Engine
) -> None:
    emu = two_shards
    assert serve(emu, GUILD, CHANNEL).startswith("Queued")
    assert serve(emu, OTHER_GUILD, OTHER_CHANNEL).startswith("Queued")

    # Through shard 0's process: its server's channels; shard 1's server is untouched.
    command(emu, MANAGER, "server", "channel", channel=SECOND_CHANNEL, allowed=True)
    assert serve(emu, GUILD, CHANNEL).startswith("Requests are not taken in this channel")
    assert serve(emu, GUILD, SECOND_CHANNEL).startswith("Queued")
    assert serve(emu, OTHER_GUILD, OTHER_CHANNEL).startswith("Queued")

    # Written by another process (a replica of the shard, a script): shard 1's process
    # refuses the new word at its next request, with no restart and no cache to expire.
    GuildSettings(mariadb_engine).change(
        OTHER_GUILD, None, lambda c: c.model_copy(update={"filter_words": ["castle"]})
    )
    assert "“castle”" in serve(emu, OTHER_GUILD, OTHER_CHANNEL, "a castle")
    assert serve(emu, GUILD, SECOND_CHANNEL, "a castle").startswith("Queued")

    # The operators' pause, given in shard 0's server, holds in shard 1's at once.
    command(emu, OPERATOR, "admin", "pause", everywhere=True, note="maintenance")
    for guild, channel in ((GUILD, SECOND_CHANNEL), (OTHER_GUILD, OTHER_CHANNEL)):
        assert "paused for now (maintenance)" in serve(emu, guild, channel)
    command(emu, OPERATOR, "admin", "resume", everywhere=True)
    assert serve(emu, GUILD, SECOND_CHANNEL).startswith("Queued")
