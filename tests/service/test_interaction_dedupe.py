"""Two replicas of one shard receive the same interactions: one job each, same answer."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Engine

from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue
from tests.service.processes import output_lines, start_queue_process

INTERACTIONS = 1000


def test_two_replicas_racing_on_the_same_interactions_make_one_job_each(
    mariadb_engine: Engine, mariadb_url: str
) -> None:
    # Opposite orders: the replicas meet in the middle, so both create jobs and both
    # hit interactions the other one is inserting at that very moment.
    replicas = [
        start_queue_process("replica", mariadb_url, "--interactions", str(INTERACTIONS), *flag)
        for flag in ([], ["--reverse"])
    ]
    for replica in replicas:
        assert replica.stdout is not None and replica.stdout.readline().strip() == "ready"
    for replica in replicas:
        assert replica.stdin is not None
        replica.stdin.write("go\n")
        replica.stdin.flush()
    seen: dict[int, set[str]] = defaultdict(set)
    created_by = []
    for replica in replicas:
        created = 0
        for line in output_lines(replica):
            interaction, public_id, was_created = line.split()
            seen[int(interaction)].add(public_id)
            created += int(was_created)
        created_by.append(created)
    assert len(seen) == INTERACTIONS
    assert all(len(ids) == 1 for ids in seen.values()), "replicas got different jobs"
    assert sum(created_by) == INTERACTIONS, "an interaction was created twice or never"
    assert all(0 < n < INTERACTIONS for n in created_by), f"no race happened: {created_by}"
    counts = GenerationQueue(mariadb_engine, QueueSettings()).counts()
    assert sum(counts.values()) == INTERACTIONS
