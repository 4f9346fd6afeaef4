"""memcached dies in the middle of a run: claiming goes on, nothing is claimed twice."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import Engine

from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue
from stillhouse.schemas.states import JobStatus
from tests.conftest import MemcachedServer
from tests.service.processes import finish, start_queue_process
from tests.service.test_concurrent_claims import assert_each_claimed_once_and_done, enqueue_many
from tests.support import wait_until

JOBS = 4000


def memcached_stats(server: MemcachedServer) -> dict[str, int]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += sock.recv(65536)
    stats = {}
    for line in data.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            stats[parts[1]] = int(parts[2])
    return stats


@pytest.mark.slow
def test_claiming_goes_on_through_a_memcached_restart_without_duplicates(
    mariadb_engine: Engine, mariadb_url: str, memcached: MemcachedServer
) -> None:
    queued = enqueue_many(mariadb_engine, JOBS)
    queue = GenerationQueue(mariadb_engine, QueueSettings())

    def succeeded() -> int:
        return queue.counts().get(JobStatus.SUCCEEDED, 0)

    claimers = [
        start_queue_process(
            "drain", mariadb_url, "--memcached", memcached.address, "--max-batch", "4"
        )
        for _ in range(4)
    ]
    wait_until(lambda: succeeded() >= 300, what="claims with memcached up")
    assert memcached_stats(memcached)["cmd_set"] > 0, "claimers never used memcached"

    memcached.stop()
    stopped_at = succeeded()
    wait_until(lambda: succeeded() >= stopped_at + 500, what="claims while memcached is down")
    memcached.start()
    restarted_at = succeeded()
    assert restarted_at < JOBS, "the run ended before memcached came back; raise JOBS"

    claimed = [job_id for p in claimers for job_id in finish(p)]
    assert_each_claimed_once_and_done(mariadb_engine, queued, claimed)
    stats = memcached_stats(memcached)
    assert stats["incr_hits"] + stats["incr_misses"] > 0, "claimers did not reconnect"
