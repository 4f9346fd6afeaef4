"""Many OS processes claim from one queue: every job exactly once, none lost."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import Engine, func, select

from stillhouse.config import QueueSettings
from stillhouse.db.engine import make_engine
from stillhouse.db.models import Delivery
from stillhouse.queue import GenerationQueue
from stillhouse.schemas.states import DeliveryKind, JobStatus
from tests.conftest import empty_queues, settings_for
from tests.service.processes import finish, start_queue_process
from tests.support import new_job


def enqueue_many(engine: Engine, count: int) -> set[int]:
    queue = GenerationQueue(engine, QueueSettings())
    return {queue.enqueue(new_job(f"job {n}")).job.id for n in range(count)}


def assert_each_claimed_once_and_done(engine: Engine, queued: set[int], claimed: list[int]) -> None:
    repeats = {job_id: n for job_id, n in Counter(claimed).items() if n > 1}
    assert not repeats, f"jobs claimed more than once: {list(repeats.items())[:10]}"
    assert set(claimed) == queued, f"lost: {len(queued - set(claimed))} jobs"
    queue = GenerationQueue(engine, QueueSettings())
    assert queue.counts() == {JobStatus.SUCCEEDED: len(queued)}
    with engine.connect() as conn:
        per_job = conn.execute(
            select(Delivery.job_id, func.count())
            .where(Delivery.kind == DeliveryKind.RESULT)
            .group_by(Delivery.job_id)
        ).all()
    assert {job_id for job_id, _ in per_job} == queued
    assert all(n == 1 for _, n in per_job)


@pytest.mark.slow
def test_eight_processes_drain_5000_jobs_on_mariadb_each_exactly_once(
    mariadb_engine: Engine, mariadb_url: str
) -> None:
    queued = enqueue_many(mariadb_engine, 5000)
    claimers = [start_queue_process("drain", mariadb_url) for _ in range(8)]
    per_process = [finish(p) for p in claimers]
    claimed = [job_id for ids in per_process for job_id in ids]
    assert_each_claimed_once_and_done(mariadb_engine, queued, claimed)
    # Every process took part: the claims really raced.
    assert all(len(ids) > 0 for ids in per_process)


@pytest.mark.slow
def test_eight_processes_drain_a_sqlite_queue_each_exactly_once(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/queue.sqlite3"
    engine = make_engine(settings_for(url))
    from stillhouse.db.migrate import upgrade

    upgrade(engine)
    empty_queues(engine)
    queued = enqueue_many(engine, 1000)
    claimers = [start_queue_process("drain", url) for _ in range(8)]
    claimed = [job_id for p in claimers for job_id in finish(p)]
    assert_each_claimed_once_and_done(engine, queued, claimed)
    engine.dispose()
