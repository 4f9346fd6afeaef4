"""The chaos run's cast and its director: masters, bot shard processes, the RunPod
endpoint, memcached and MariaDB, each killed with SIGKILL at planned random moments and
started again; plus the two kills aimed at a seam (a master inside its submit window, a
bot after Discord took its answer)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue, SendQueue
from tests.conftest import MemcachedServer
from tests.doubles.discord import DiscordEmulator, WriteEvent
from tests.doubles.runpod.process import RunPodDoubleProcess
from tests.master.cluster import Cluster
from tests.system.services import PrivateMariaDB

RESTART_AFTER_S = 0.5
DOWN_FOR_S = {"endpoint": 2.0, "memcached": 2.0, "mariadb": 0.0}


@dataclass(order=True)
class Event:
    """One planned blow."""

    at: float
    what: str = field(compare=False)  # master, bot, endpoint, memcached, mariadb,
    # submit-window (a master killed by the endpoint right after its /run was taken),
    # after-accept (a bot killed by the emulator right after its answer was taken)


def plan(rng: random.Random, window: tuple[float, float], counts: dict[str, int]) -> list[Event]:
    """`counts[what]` events at random moments of `window` (seconds into the run)."""
    start, end = window
    return sorted(
        Event(rng.uniform(start, end), what) for what, n in counts.items() for _ in range(n)
    )


@dataclass
class Director:
    """Carries out the plan as the run goes; restarts whatever died."""

    cluster: Cluster
    emu: DiscordEmulator
    endpoint: RunPodDoubleProcess
    memcached: MemcachedServer
    mariadb: PrivateMariaDB
    engine: Engine
    starters: dict[str, Callable[[], None]]  # process name -> start it (again)
    rng: random.Random
    events: list[Event]
    kills: Counter[str] = field(default_factory=Counter)
    down_until: dict[str, float] = field(default_factory=dict)
    armed_accept: bool = False
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.emu.after_write(self._after_accept)

    def tick(self, elapsed: float) -> None:
        """Do what is due at `elapsed` seconds into the run, then restart the dead."""
        while self.events and self.events[0].at <= elapsed:
            self._blow(self.events.pop(0).what, elapsed)
        now = time.monotonic()
        for name, process in list(self.cluster.processes.items()):
            if process.poll() is None:
                continue
            due = self.down_until.setdefault(name, now + RESTART_AFTER_S)  # killed by a hook
            if now >= due:
                del self.down_until[name]
                self.starters[name]()
        for service in ("endpoint", "memcached", "mariadb"):
            if service in self.down_until and now >= self.down_until[service]:
                del self.down_until[service]
                {"endpoint": self.endpoint.start, "memcached": self.memcached.start}.get(
                    service, self.mariadb.start
                )()
                self.log.append(f"{elapsed:6.1f}s {service} back")

    def finish(self) -> None:
        """Everything that is down comes back (the run's end)."""
        while self.down_until:
            self.tick(float("inf"))

    def _blow(self, what: str, elapsed: float) -> None:
        self.log.append(f"{elapsed:6.1f}s {what}")
        if what in ("master", "bot"):
            prefix = "m" if what == "master" else "b"
            live = [
                n
                for n, p in self.cluster.processes.items()
                if n.startswith(prefix) and p.poll() is None
            ]
            if not live:  # all of them down at this moment: strike a little later
                self.events.append(Event(elapsed + 1.0, what))
                self.events.sort()
                return
            self._kill(self.rng.choice(sorted(live)), what)
        elif what == "submit-window":
            self.endpoint.arm_kill_next_submitter()
        elif what == "after-accept":
            self.armed_accept = True
        elif what == "endpoint":
            self.endpoint.kill()
        elif what == "memcached":
            self.memcached.stop()
        elif what == "mariadb":
            self.mariadb.kill()
        if what in DOWN_FOR_S:
            self.kills[what] += 1
            self.down_until[what] = time.monotonic() + DOWN_FOR_S[what]

    def _kill(self, name: str, what: str) -> None:
        process = self.cluster.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.kills[what] += 1
        self.down_until[name] = time.monotonic() + RESTART_AFTER_S

    def _after_accept(self, event: WriteEvent) -> None:
        """On the emulator thread, after Discord took an answer with images and before it
        answers: kill the bot that sent it (found by the lease on its send row)."""
        if not self.armed_accept or not event.message.attachments or event.interaction is None:
            return
        if event.kind not in ("webhook_edit", "channel_post"):
            return
        job = GenerationQueue(self.engine, QueueSettings()).get_by_interaction(event.interaction.id)
        rows = SendQueue(self.engine, QueueSettings()).for_job(job.id) if job else []
        owner = rows[0].lease_owner if rows else None
        if owner is None:
            return
        pid = int(owner.rsplit("-", 2)[1])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.armed_accept = False
        self.kills["bot-after-accept"] += 1
        self.log.append(f"bot {pid} killed after Discord took {job.public_id if job else '?'}")


def bot_command(emu: DiscordEmulator, shard: int, shards: int) -> list[str]:
    """A bot process for one shard, against the emulator."""
    return [
        sys.executable,
        "-m",
        "tests.bot.bot_process",
        emu.api_base,
        emu.gateway_url,
        "--shard-ids",
        str(shard),
        "--shard-count",
        str(shards),
    ]
