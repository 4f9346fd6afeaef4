"""A master holds a job only while it follows it, and following always ends: a renewal
racing a claim drops nothing, and a backend that never answers, or never says the job
ended, costs an attempt at the job's deadline instead of holding the job for ever."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine

from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.queue.records import JobRecord, LeaseStatus
from stillhouse.schemas.jobs import FailurePayload
from stillhouse.schemas.states import JobStatus
from tests.master.cluster import enqueue
from tests.master.scripted import (
    Script,
    ScriptedBackend,
    make_dispatcher,
    metric,
    run_until_idle,
    scripted_settings,
)

STALL_S = 0.3


class SlowRenewals(GenerationQueue):
    """A renewal that is still on its way back when the next claim lands, as on a crowded
    host where the database threads and the event loop fall behind each other. With
    `stall`, the loop is busy while both answers arrive: the renewal's then comes before
    the new job's task has taken its first step."""

    def __init__(self, engine: Engine, settings: QueueSettings, *, stall: bool) -> None:
        super().__init__(engine, settings)
        self.stall = stall
        self.loop: asyncio.AbstractEventLoop | None = None
        self.renewing = threading.Event()
        self.claimed_meanwhile = threading.Event()

    def renew(self, owner: str, job_ids: Iterable[int]) -> LeaseStatus:
        status = super().renew(owner, job_ids)
        self.renewing.set()
        if self.claimed_meanwhile.wait(10):
            time.sleep(0.02)  # answer just after the claim (during the stall, if any)
        return status

    def claim(
        self,
        owner: str,
        limit: int = 1,
        partitions: Sequence[int] | None = None,
        *,
        backend_cap: int = 0,
    ) -> list[JobRecord]:
        jobs = super().claim(owner, limit, partitions, backend_cap=backend_cap)
        if jobs and self.renewing.is_set() and not self.claimed_meanwhile.is_set():
            if self.stall and self.loop is not None:
                self.loop.call_soon_threadsafe(time.sleep, STALL_S)
            self.claimed_meanwhile.set()
        return jobs


@pytest.mark.parametrize("stall", [False, True], ids=["task_started", "task_not_started"])
def test_a_job_claimed_during_a_renewal_is_followed_to_its_outcome(
    tmp_path: Path, mariadb_url: str, mariadb_engine: Engine, stall: bool
) -> None:
    settings = scripted_settings(tmp_path, mariadb_url)
    queue = SlowRenewals(mariadb_engine, settings.queue, stall=stall)
    backend = ScriptedBackend()
    dispatcher = make_dispatcher(settings, queue, backend)
    [first] = enqueue(queue, 1)
    backend.held.add(first)  # keeps a lease to renew

    async def second_job_during_a_renewal() -> None:
        queue.loop = asyncio.get_running_loop()
        await asyncio.to_thread(queue.renewing.wait, 10)
        enqueue(queue, 1)
        await asyncio.to_thread(queue.claimed_meanwhile.wait, 10)
        backend.held.clear()

    asyncio.run(run_until_idle(dispatcher, 20, second_job_during_a_renewal))
    assert queue.counts() == {JobStatus.SUCCEEDED: 2}
    assert metric(dispatcher, "stillhouse_leases_lost_total") == 0


@pytest.mark.parametrize("script", [Script.NEVER_FINAL, Script.HANG_SUBMIT, Script.HANG_POLL])
def test_a_job_the_backend_never_ends_fails_at_its_deadline_with_a_row(
    tmp_path: Path, mariadb_url: str, mariadb_engine: Engine, script: Script
) -> None:
    settings = scripted_settings(
        tmp_path,
        mariadb_url,
        job_timeout_s=0.4,
        backend_queue_s=0.4,
        backend_call_timeout_s=0.2,
    )
    queue = GenerationQueue(mariadb_engine, settings.queue)
    backend = ScriptedBackend(script)
    dispatcher = make_dispatcher(settings, queue, backend)
    [public_id] = enqueue(queue, 1, max_attempts=2)
    began = time.monotonic()
    asyncio.run(run_until_idle(dispatcher, 20))
    # Two attempts, each ended by its deadline (0.8 s), plus a short backoff between.
    assert time.monotonic() - began < 8
    job = queue.get(public_id)
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == 2
    [row] = SendQueue(mariadb_engine, settings.queue).for_job(job.id)
    assert isinstance(row.payload, FailurePayload) and row.payload.error.type == "timeout"
    assert metric(dispatcher, "stillhouse_jobs_overdue_total") == 2
    assert backend.cancelled == backend.submitted  # every GPU job it gave up on, stopped
    if script is Script.HANG_SUBMIT:
        assert backend.submit_calls > 2, "a submit that never answers is not retried"
    if script is Script.HANG_POLL:
        assert backend.poll_calls > 2, "a status call that never answers is not retried"
