"""Outages in the middle of a run: the database stopped for 15 s, memcached killed and
restarted, S3 answering 503 for 10 s, Discord answering bursts of 500 and 429, RunPod
losing jobs. Every process logs, backs off and carries on without a restart, and every
request ends in exactly one visible outcome, delivered once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine

from stillhouse.config import QueueSettings, StorageSettings
from stillhouse.db.engine import make_engine
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.schemas.states import JobStatus
from tests.bot.harness import CHANNEL, GUILD, USER
from tests.conftest import MemcachedServer, settings_for
from tests.doubles.discord import DiscordEmulator
from tests.doubles.runpod.state import Fate
from tests.doubles.s3_outage import S3Outage
from tests.master.cluster import Cluster
from tests.support import wait_until
from tests.system.harness import System
from tests.system.services import PrivateMariaDB

REQUESTS = 12
pytestmark = pytest.mark.slow


@pytest.fixture
def system(cluster: Cluster, emu: DiscordEmulator, memcached: MemcachedServer) -> System:
    cluster.memcached = memcached.address
    return System(cluster, emu)


def queues(engine: Engine) -> tuple[GenerationQueue, SendQueue]:
    settings = QueueSettings()
    return GenerationQueue(engine, settings), SendQueue(engine, settings)


def logged(system: System, action: str, names: tuple[str, ...]) -> list[str]:
    """The processes whose log has this action."""
    return [n for n in names if f"action={action}" in system.cluster.log(n)]


def test_the_database_stopped_for_15_seconds(
    system: System, private_mariadb: PrivateMariaDB, emu: DiscordEmulator
) -> None:
    system.cluster.database_url = private_mariadb.url
    system.start(workers=3, masters=2)
    engine = make_engine(settings_for(private_mariadb.url))
    queue, sends = queues(engine)
    served, ids = system.serve(REQUESTS)
    wait_until(lambda: queue.counts().get(JobStatus.SUCCEEDED, 0) >= 2, 60, what="a start")

    private_mariadb.stop()
    during = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "during"})
    answer = during.wait_response(timeout_s=10)["data"]
    assert answer["flags"] == 64 and "Something went wrong on our side" in answer["content"]
    time.sleep(15)  # the outage itself
    private_mariadb.start()

    jobs = system.settle(served, ids, queue, sends, engine)
    assert set(jobs.values()) == {JobStatus.SUCCEEDED}
    assert sorted(system.alive()) == sorted(system.cluster.processes), "something restarted"
    assert logged(system, "db.claim_retry", ("m0", "m1")), "masters did not back off"
    engine.dispose()


def test_memcached_killed_and_restarted(
    system: System, memcached: MemcachedServer, mariadb_engine: Engine
) -> None:
    system.start(workers=3, masters=2)
    queue, sends = queues(mariadb_engine)
    served, ids = system.serve(REQUESTS)
    wait_until(lambda: queue.counts().get(JobStatus.SUCCEEDED, 0) >= 2, 60, what="a start")
    memcached.stop()
    more, more_ids = system.serve(4, "without memcached")
    memcached.start()
    jobs = system.settle(served + more, ids + more_ids, queue, sends, mariadb_engine)
    assert set(jobs.values()) == {JobStatus.SUCCEEDED}
    assert sorted(system.alive()) == sorted(system.cluster.processes)


def test_s3_answering_503_for_10_seconds(
    system: System, s3_settings: StorageSettings, mariadb_engine: Engine
) -> None:
    assert s3_settings.s3_endpoint_url
    proxy = S3Outage(s3_settings.s3_endpoint_url).start()
    try:
        system.cluster.storage = s3_settings.model_copy(update={"s3_endpoint_url": proxy.url})
        system.start(workers=3, masters=2)
        queue, sends = queues(mariadb_engine)
        served, ids = system.serve(REQUESTS)
        wait_until(lambda: queue.counts().get(JobStatus.SUCCEEDED, 0) >= 2, 60, what="a start")
        proxy.down = True
        time.sleep(10)  # the outage itself
        proxy.down = False
        jobs = system.settle(served, ids, queue, sends, mariadb_engine)
        assert proxy.refused > 0, "the outage hit nothing"
        assert sorted(system.alive()) == sorted(system.cluster.processes)
        # Jobs whose every attempt met the outage end with a failure message, once.
        assert set(jobs.values()) <= {JobStatus.SUCCEEDED, JobStatus.FAILED}
        assert list(jobs.values()).count(JobStatus.SUCCEEDED) >= REQUESTS // 2
    finally:
        proxy.stop()


def test_discord_answering_bursts_of_500_and_429(
    system: System, emu: DiscordEmulator, mariadb_engine: Engine
) -> None:
    system.start(workers=3, masters=2)
    queue, sends = queues(mariadb_engine)
    served, ids = system.serve(REQUESTS)
    answer = r"/webhooks/\d+/.+/messages/@original"
    busy = emu.fail_next("PATCH", answer, 429, times=4, retry_after=0.3)
    broken = emu.fail_next("PATCH", answer, 500, times=3)
    jobs = system.settle(served, ids, queue, sends, mariadb_engine)
    assert set(jobs.values()) == {JobStatus.SUCCEEDED}
    assert busy.hits == 4 and broken.hits == 3
    assert sorted(system.alive()) == sorted(system.cluster.processes)


def test_runpod_losing_jobs(system: System, mariadb_engine: Engine) -> None:
    system.cluster.double.plan(Fate.LOSE, Fate.LOSE, Fate.LOSE)
    system.start(workers=3, masters=2)
    queue, sends = queues(mariadb_engine)
    served, ids = system.serve(REQUESTS)
    jobs = system.settle(served, ids, queue, sends, mariadb_engine)
    assert set(jobs.values()) == {JobStatus.SUCCEEDED}
    assert len(system.cluster.double.state.forgotten) == 3
    retried = [queue.get(i) for i in ids]
    assert sum(1 for job in retried if job and job.attempts > 1) == 3
