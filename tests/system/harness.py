"""The deployed system for system tests: runpod worker processes (our handler, each with
its ComfyUI double), masters and a bot process, against the Discord emulator and the
RunPod double, all on one database, memcached and S3."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from stillhouse.config import StorageSettings
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.schemas.states import DeliveryStatus, JobStatus
from stillhouse.storage.local import LocalStorage
from tests.bot.harness import CHANNEL, GUILD, OTHER_USER, USER, png, queued_id, wait_answer
from tests.doubles.discord import DiscordEmulator, Interaction
from tests.master.cluster import Cluster, base_env, storage_env
from tests.master.outcomes import assert_exactly_one_visible_outcome
from tests.support import wait_until

BOT = "bot"


def front_env(cluster: Cluster, name: str) -> dict[str, str]:
    """What the bot and the API processes share: the queue, memcached, storage, workflows."""
    return {
        **base_env(),
        **storage_env(cluster.storage),
        "STILLHOUSE_DATABASE__URL": cluster.database_url,
        "STILLHOUSE_MEMCACHED__SERVERS": cluster.memcached,
        "STILLHOUSE_DATA_DIR": str(cluster.tmp / name),
        "STILLHOUSE_LOG__FORMAT": "text",
        "STILLHOUSE_INTAKE__PER_MINUTE": "1000",
        "STILLHOUSE_INTAKE__MAX_ACTIVE_JOBS": "100",
    }


@dataclass
class System:
    """Processes started through `cluster`; the test drives them through `emu`."""

    cluster: Cluster
    emu: DiscordEmulator

    def front_env(self, name: str) -> dict[str, str]:
        """The shared front settings, with retries quick enough for an outage test."""
        return {
            **front_env(self.cluster, name),
            "STILLHOUSE_QUEUE__BACKOFF_BASE_S": "0.5",
            "STILLHOUSE_QUEUE__BACKOFF_MAX_S": "5",
            # Scaled like the defaults (6 tries from 5 s, doubling to 300 s: at least ~75 s
            # of outage survived): 10 tries from 0.5 s to 5 s outlast the tests' 10-15 s.
            "STILLHOUSE_QUEUE__DELIVERY_MAX_ATTEMPTS": "10",
        }

    def start(self, *, workers: int, masters: int, **bot_env: str) -> None:
        """Workers, masters and one bot process (all shards); returns once it is synced."""
        for n in range(workers):
            self.cluster.start_worker(f"w{n}")
        # The tries a send row gets are written with it, by the master that ends the job.
        self.cluster.master_env["STILLHOUSE_QUEUE__DELIVERY_MAX_ATTEMPTS"] = "10"
        for n in range(masters):
            self.cluster.start_master(f"m{n}")
        env = {
            **self.front_env(BOT),
            "STILLHOUSE_BOT__TOKEN": self.emu.token,
            "STILLHOUSE_BOT__DELIVERY_INTERVAL_S": "0.1",
            **bot_env,
        }
        bot = [sys.executable, "-m", "tests.bot.bot_process", self.emu.api_base]
        self.cluster.spawn(BOT, [*bot, self.emu.gateway_url], env)
        self.emu.wait_ready(sessions=1, timeout_s=60)
        wait_until(lambda: self.emu.commands.get(None), 60, what="the bot's commands synced")

    def serve(self, count: int, label: str = "lighthouse") -> tuple[list[Interaction], list[str]]:
        """`count` /serve requests (fast preset) and the job ids they were queued as."""
        served = [
            self.emu.slash_command(
                GUILD,
                CHANNEL,
                (USER, OTHER_USER)[n % 2],
                "serve",
                options={"prompt": f"{label} {n}", "mode": "fast"},
            )
            for n in range(count)
        ]
        return served, [queued_id(ix) for ix in served]

    def settle(
        self,
        served: list[Interaction],
        ids: list[str],
        queue: GenerationQueue,
        sends: SendQueue,
        engine: Engine,
        timeout_s: float = 240,
    ) -> dict[str, JobStatus]:
        """Wait until every request was answered; check each got exactly one visible
        outcome (a result or a failure message), delivered exactly once."""
        self.cluster.wait_for_outcomes(queue, engine, timeout_s=timeout_s)
        jobs = assert_exactly_one_visible_outcome(engine, ids)

        def delivered() -> bool:
            rows = [row for job in map(queue.get, ids) if job for row in sends.for_job(job.id)]
            return all(row.status in (DeliveryStatus.SENT, DeliveryStatus.FAILED) for row in rows)

        wait_until(delivered, timeout_s, 0.2, what="every outcome delivered")
        for ix, public_id in zip(served, ids, strict=True):
            message = wait_answer(self.emu, ix, public_id, 30)  # exactly one, never two
            job = queue.get(public_id)
            assert job is not None
            if jobs[public_id] is JobStatus.SUCCEEDED:
                assert message.attachments, f"{public_id}: a result without its image"
            [row] = sends.for_job(job.id)
            assert row.status is DeliveryStatus.SENT, (public_id, row.status, row.last_error)
        return jobs

    def alive(self) -> list[str]:
        """Processes still running (none of them restarted by the test)."""
        return [name for name, p in self.cluster.processes.items() if p.poll() is None]


def guild_on(shard: int, shards: int) -> int:
    """A guild id whose events go to `shard` of `shards`."""
    base = 1_500_000_000_000_000_000 >> 22
    return (base - base % shards + shard) << 22


SIMULATED_IMAGE_KEY = "stillhouse/simulated/result.png"


def simulated_output(images: Path) -> dict[str, object]:
    """What every simulated worker answers: one small image, stored once."""
    storage = LocalStorage(images, StorageSettings())
    stored = storage.put(SIMULATED_IMAGE_KEY, png(), "image/png")
    image = {**stored.model_dump(), "width": 64, "height": 48, "node_id": "9"}
    return {"images": [image], "comfy": {"prompt_id": "simulated", "version": "simulated"}}
