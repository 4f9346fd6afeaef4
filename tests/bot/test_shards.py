"""Bot processes as deployed: each runs `stillhouse bot --shard-ids … --shard-count …`
against the emulator, MariaDB and memcached. Each shard gets only its guilds'
interactions; redundant replicas of one shard make one job and send one answer."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stillhouse.services import Services
from tests.bot.conftest import REPO
from tests.bot.harness import CHANNEL, GUILD, OTHER_CHANNEL, OTHER_GUILD, USER, queued_id
from tests.conftest import MemcachedServer
from tests.doubles.discord import DiscordEmulator, Interaction
from tests.support import wait_until


class BotProcesses:
    """Starts bot processes and reads their logs."""

    def __init__(self, emu: DiscordEmulator, database_url: str, memcached: str, tmp: Path):
        self._emu, self._url, self._memcached, self._tmp = emu, database_url, memcached, tmp
        self._running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STILLHOUSE_")}
        env.update(
            STILLHOUSE_DATABASE__URL=self._url,
            STILLHOUSE_MEMCACHED__SERVERS=self._memcached,
            STILLHOUSE_BOT__TOKEN=self._emu.token,
            STILLHOUSE_DATA_DIR=str(self._tmp / name),
            STILLHOUSE_LOG__FORMAT="text",
        )
        with (self._tmp / f"{name}.log").open("wb") as log:
            self._running[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.bot.bot_process",
                    self._emu.api_base,
                    self._emu.gateway_url,
                    *args,
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self, name: str) -> str:
        return (self._tmp / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self._running.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for name, process in self._running.items():
            try:
                code = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise AssertionError(f"{name} did not stop on SIGTERM:\n{self.log(name)}") from None
            assert code == 0, f"{name} exited {code}:\n{self.log(name)[-3000:]}"


@pytest.fixture
def bots(
    emu: DiscordEmulator,
    mariadb_url: str,
    memcached: MemcachedServer,
    tmp_path: Path,
    maria_services: Services,
) -> Iterator[BotProcesses]:
    processes = BotProcesses(emu, mariadb_url, memcached.address, tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


def callbacks(emu: DiscordEmulator, ix: Interaction) -> int:
    return sum(
        1
        for r in emu.requests
        if r.method == "POST" and f"/interactions/{ix.id}/" in r.path and r.status < 300
    )


def test_each_shard_process_gets_only_its_guilds_interactions(
    emu: DiscordEmulator, bots: BotProcesses, maria_services: Services
) -> None:
    bots.start("shard0", "--shard-ids", "0", "--shard-count", "2")
    bots.start("shard1", "--shard-ids", "1", "--shard-count", "2")
    emu.wait_ready(sessions=2, timeout_s=30)
    wait_until(lambda: emu.commands.get(None), 30, what="commands synced by shard 0")

    on_zero = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "zero"})
    on_one = emu.slash_command(OTHER_GUILD, OTHER_CHANNEL, USER, "serve", options={"prompt": "one"})
    assert on_zero.delivered_to == [(0, 2)] and on_one.delivered_to == [(1, 2)]
    zero, one = (maria_services.queue.get(queued_id(ix)) for ix in (on_zero, on_one))
    assert zero is not None and zero.routing.shard_id == 0
    assert one is not None and one.routing.shard_id == 1


def test_two_replicas_of_a_shard_make_one_job_and_send_one_answer(
    emu: DiscordEmulator, bots: BotProcesses, maria_services: Services
) -> None:
    bots.start("replica-a", "--shard-ids", "0", "--shard-count", "1")
    bots.start("replica-b", "--shard-ids", "0", "--shard-count", "1")
    emu.wait_ready(sessions=2, timeout_s=30)
    wait_until(lambda: emu.commands.get(None), 30, what="commands synced")

    ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "once"})
    assert ix.delivered_to == [(0, 1), (0, 1)]
    public_id = queued_id(ix)

    def both_decided() -> bool:
        logs = [bots.log(name) for name in ("replica-a", "replica-b")]
        queued = [f"interaction={ix.id}" in log and "request queued" in log for log in logs]
        skipped = [f"interaction={ix.id}" in log and "another replica" in log for log in logs]
        return sorted(queued) == [False, True] and sorted(skipped) == [False, True]

    wait_until(both_decided, 15, what="one replica queued it and the other stood aside")
    assert callbacks(emu, ix) == 1
    jobs = maria_services.queue.counts()
    assert sum(jobs.values()) == 1
    job = maria_services.queue.get(public_id)
    assert job is not None and job.interaction_id == ix.id
