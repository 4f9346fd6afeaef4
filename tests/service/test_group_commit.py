"""Group commit: held-job writes of many jobs in one transaction (GenerationQueue.together
and the master's GroupCommit), on MariaDB and SQLite."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pymysql
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from master.writes import GroupCommit
from stillhouse.config import QueueSettings
from stillhouse.errors import LeaseLost
from stillhouse.queue import GenerationQueue
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.jobs import JobResult
from stillhouse.schemas.states import JobStatus
from tests.support import IMAGE, new_job

SETTINGS = QueueSettings(lease_s=30)


class CountingQueue(GenerationQueue):
    """Counts the transactions `together` opens and the writes in each."""

    groups: list[int]
    batches: list[int]  # jobs per begin_submits

    def together(self, operations: Sequence[Callable[[], Any]]) -> list[Any]:
        self.groups.append(len(operations))
        return super().together(operations)

    def begin_submits(self, jobs: Sequence[JobRecord]) -> list[LeaseLost | None]:
        self.batches.append(len(jobs))
        return super().begin_submits(jobs)


@pytest.fixture
def told() -> list[str]:
    return []


@pytest.fixture
def queue(engine: Engine, told: list[str]) -> CountingQueue:
    queue = CountingQueue(engine, SETTINGS, told=lambda: told.append("told"))
    queue.groups = []
    queue.batches = []
    return queue


def claimed(queue: GenerationQueue, count: int) -> list[JobRecord]:
    for _ in range(count):
        queue.enqueue(new_job())
    return queue.claim("m1", limit=count)


def status(queue: GenerationQueue, job: JobRecord) -> JobStatus:
    stored = queue.get(job.public_id)
    assert stored is not None
    return stored.status


def test_a_lost_lease_spoils_only_its_own_write_in_a_group(queue: CountingQueue) -> None:
    first, lost, third = claimed(queue, 3)
    stranger = lost.model_copy(update={"lease_owner": "m2"})  # no longer this claim's
    results = queue.together(
        [
            functools.partial(queue.mark_running, first, "rp-1"),
            functools.partial(queue.mark_running, stranger, "rp-2"),
            functools.partial(queue.mark_running, third, "rp-3"),
        ]
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], LeaseLost)
    assert [status(queue, job) for job in (first, lost, third)] == [
        JobStatus.RUNNING,
        JobStatus.DISPATCHED,
        JobStatus.RUNNING,
    ]


def test_an_error_rolls_the_whole_group_back(queue: CountingQueue) -> None:
    first, second = claimed(queue, 2)

    def broken() -> None:
        with queue._begin() as conn:  # the group's connection
            conn.exec_driver_sql("SELECT * FROM no_such_table")

    with pytest.raises(DBAPIError):
        queue.together([functools.partial(queue.mark_running, first, "rp-1"), broken])
    assert status(queue, first) is JobStatus.DISPATCHED
    assert status(queue, second) is JobStatus.DISPATCHED


def test_outcome_hints_run_once_the_group_has_committed(
    queue: CountingQueue, told: list[str]
) -> None:
    first, second = claimed(queue, 2)
    result = JobResult(images=[IMAGE])
    seen_inside: list[int] = []

    def look() -> None:
        seen_inside.append(len(told))

    queue.together(
        [
            functools.partial(queue.complete, first, result),
            look,  # after the first outcome row, before the commit
            functools.partial(queue.complete, second, result),
        ]
    )
    assert seen_inside == [0]
    assert told == ["told", "told"]


def test_concurrent_writes_share_transactions_and_each_caller_hears_its_own(
    queue: CountingQueue,
) -> None:
    jobs = claimed(queue, 12)
    stranger = jobs[5].model_copy(update={"lease_owner": "m2"})

    async def main() -> list[object]:
        group = GroupCommit(queue)
        writes = [
            group.write(queue.mark_running, stranger if n == 5 else job, f"rp-{n}")
            for n, job in enumerate(jobs)
        ]
        return await asyncio.gather(*writes, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[5], LeaseLost)
    assert all(r is None for n, r in enumerate(results) if n != 5)
    assert len(queue.groups) < 12  # the first alone, the rest together
    assert sum(queue.groups) < 12  # and their backend ids in one statement
    for n, job in enumerate(jobs):
        stored = queue.get(job.public_id)
        assert stored is not None
        expected = None if n == 5 else f"rp-{n}"
        assert stored.backend_job_id == expected


def test_submit_marks_of_a_group_share_one_statement_and_a_lost_lease_spoils_only_its_own(
    queue: CountingQueue,
) -> None:
    jobs = claimed(queue, 6)
    stranger = jobs[2].model_copy(update={"lease_owner": "m2"})

    async def main() -> list[object]:
        group = GroupCommit(queue)
        writes = [
            group.write(queue.begin_submit, stranger if n == 2 else j) for n, j in enumerate(jobs)
        ]
        return await asyncio.gather(*writes, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[2], LeaseLost)
    assert all(r is None for n, r in enumerate(results) if n != 2)
    assert queue.batches and sum(queue.batches) >= 4  # the first may go alone, the rest at once
    for n, job in enumerate(jobs):
        stored = queue.get(job.public_id)
        assert stored is not None
        assert (stored.submitting_since is None) == (n == 2)


def test_begin_submits_counts_an_earlier_unanswered_submit_as_begin_submit_does(
    queue: CountingQueue,
) -> None:
    first, second = claimed(queue, 2)
    queue.begin_submit(first)  # its answer never came: the mark stays
    assert queue.begin_submits([first, second]) == [None, None]
    stored = [queue.get(job.public_id) for job in (first, second)]
    assert [job.lost_submits for job in stored if job] == [1, 0]
    assert all(job is not None and job.submitting_since is not None for job in stored)


def test_a_lone_write_is_committed_without_waiting_for_company(queue: CountingQueue) -> None:
    [job] = claimed(queue, 1)

    async def main() -> None:
        await asyncio.wait_for(GroupCommit(queue).write(queue.begin_submit, job), 5)

    asyncio.run(main())
    assert queue.groups == [1]
    stored = queue.get(job.public_id)
    assert stored is not None and stored.submitting_since is not None


def test_a_slow_group_does_not_hold_up_the_next_jobs_writes(
    queue: CountingQueue, engine: Engine
) -> None:
    """Two groups commit at once: while one transaction waits on the database, another
    job's write is committed beside it (one writer made every write wait its turn).
    MariaDB only: SQLite lets one transaction write at a time whatever the writers."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises write transactions itself")
    first, second = claimed(queue, 2)
    release = threading.Event()

    def stalled(job: JobRecord, backend_job_id: str) -> None:
        queue.mark_running(job, backend_job_id)
        release.wait(10)  # a transaction still open, its commit far off

    async def main() -> None:
        group = GroupCommit(queue)
        slow = asyncio.ensure_future(group.write(stalled, first, "rp-slow"))
        await asyncio.sleep(0)  # the slow group is on its way
        await asyncio.wait_for(group.write(queue.mark_running, second, "rp-fast"), 5)
        assert not slow.done()
        release.set()
        await asyncio.wait_for(slow, 5)

    try:
        asyncio.run(main())
    finally:
        release.set()
    for job, backend_job_id in ((first, "rp-slow"), (second, "rp-fast")):
        stored = queue.get(job.public_id)
        assert stored is not None and stored.backend_job_id == backend_job_id


def test_one_writes_own_error_does_not_fail_the_others_in_its_group(
    queue: CountingQueue,
) -> None:
    jobs = claimed(queue, 4)

    def broken(job: JobRecord, backend_job_id: str) -> None:
        raise ValueError("a bug in one write")

    async def main() -> list[object]:
        group = GroupCommit(queue)
        first = group.write(queue.mark_running, jobs[0], "rp-0")  # alone: the writer was idle
        rest = [
            group.write(broken if n == 2 else queue.mark_running, job, f"rp-{n}")
            for n, job in enumerate(jobs[1:], start=1)
        ]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[2], ValueError)
    assert [results[n] for n in (0, 1, 3)] == [None, None, None]
    assert [status(queue, job) for job in jobs] == [
        JobStatus.RUNNING,
        JobStatus.RUNNING,
        JobStatus.DISPATCHED,
        JobStatus.RUNNING,
    ]
    assert sum(queue.groups) > len(jobs)  # the failed group was tried again one by one


class DeadlockOnce(CountingQueue):
    """The first group is chosen as a deadlock's victim, as InnoDB does when a bot's
    multi-row fence update and a master's group lock the same rows in another order."""

    def together(self, operations: Sequence[Callable[[], Any]]) -> list[Any]:
        if not self.groups:
            self.groups.append(len(operations))
            victim = pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
            raise OperationalError("UPDATE generation_queue …", {}, victim)
        return super().together(operations)


def test_a_deadlock_victim_is_written_again_and_no_job_is_dropped(engine: Engine) -> None:
    from master.calls import Calls, Paused
    from master.metrics import MasterMetrics
    from stillhouse.config import make_settings

    queue = DeadlockOnce(engine, SETTINGS)
    queue.groups = []
    jobs = claimed(queue, 3)
    settings = make_settings()
    metrics = MasterMetrics()
    calls = Calls(settings, None, metrics, Paused(metrics), GroupCommit(queue))  # type: ignore[arg-type]

    async def main() -> list[object]:
        writes = [calls.write(queue.mark_running, job, f"rp-{n}") for n, job in enumerate(jobs)]
        return await asyncio.gather(*writes, return_exceptions=True)

    assert asyncio.run(main()) == [None, None, None]
    assert [status(queue, job) for job in jobs] == [JobStatus.RUNNING] * 3
    assert queue.groups[0] >= 1 and len(queue.groups) > 1
