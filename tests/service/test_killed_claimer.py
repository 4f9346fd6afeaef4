"""A claimer SIGKILLed mid-job: its lease expires, the job comes back and ends once."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.schemas.jobs import FailurePayload
from stillhouse.schemas.states import DeliveryKind, JobStatus
from tests.service.processes import finish, read_claimed_id, start_queue_process
from tests.support import new_job, wait_until

LEASE_S = 1.0


@pytest.fixture
def queue(engine: Engine) -> GenerationQueue:
    settings = QueueSettings(lease_s=LEASE_S, backoff_base_s=0, backoff_max_s=0, max_claims=2)
    return GenerationQueue(engine, settings)


def kill_while_holding(database_url: str, expected_job_id: int) -> None:
    holder = start_queue_process("hold", database_url, "--lease-s", str(LEASE_S))
    try:
        assert read_claimed_id(holder) == expected_job_id
    finally:
        holder.kill()  # SIGKILL: no cleanup, no goodbye
        holder.communicate(timeout=10)  # reap it and close its pipes


def test_job_of_a_killed_claimer_is_reclaimed_after_its_lease_and_completes_once(
    engine: Engine, database_url: str, queue: GenerationQueue
) -> None:
    job = queue.enqueue(new_job(max_attempts=3)).job
    kill_while_holding(database_url, job.id)
    held = queue.get(job.public_id)
    assert held is not None and held.status is JobStatus.DISPATCHED
    assert queue.reap_expired().total == 0, "reaped before the lease ran out"

    wait_until(lambda: queue.reap_expired().requeued == 1, timeout_s=15, what="lease expiry")
    assert finish(start_queue_process("drain", database_url)) == [job.id]

    done = queue.get(job.public_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert done.claims == 2 and done.attempts == 0, "a dead claimer costs no GPU attempt"
    rows = SendQueue(engine, QueueSettings()).for_job(job.id)
    assert [r.kind for r in rows] == [DeliveryKind.RESULT]


def test_a_job_whose_claimers_keep_dying_before_submitting_fails_after_max_claims(
    engine: Engine, database_url: str, queue: GenerationQueue
) -> None:
    job = queue.enqueue(new_job(max_attempts=3)).job
    kill_while_holding(database_url, job.id)
    wait_until(lambda: queue.reap_expired().requeued == 1, timeout_s=15, what="first expiry")
    kill_while_holding(database_url, job.id)
    wait_until(lambda: queue.reap_expired().failed == 1, timeout_s=15, what="second expiry")

    failed = queue.get(job.public_id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.claims == 2 and failed.attempts == 0
    [row] = SendQueue(engine, QueueSettings()).for_job(job.id)
    assert row.kind is DeliveryKind.FAILURE and row.status.value == "pending"
    assert isinstance(row.payload, FailurePayload)
    assert row.payload.error.type == "lease_expired"
    assert queue.claim("anyone") == []
