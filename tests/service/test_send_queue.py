"""send_queue operations on MariaDB and SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from stillhouse.config import QueueSettings
from stillhouse.errors import LeaseLost
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.queue.records import DeliveryRecord
from stillhouse.schemas.jobs import JobResult
from stillhouse.schemas.states import DeliveryStatus
from tests.support import IMAGE, FakeClock, new_job

SETTINGS = QueueSettings(
    delivery_max_attempts=3, delivery_lease_s=20, backoff_base_s=2, backoff_max_s=8
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sends(engine: Engine, clock: FakeClock) -> SendQueue:
    return SendQueue(engine, SETTINGS, clock=clock, rand=lambda: 0.0)


def finished_jobs(engine: Engine, clock: FakeClock, count: int) -> None:
    jobs = GenerationQueue(engine, SETTINGS, clock=clock)
    for n in range(count):
        jobs.enqueue(new_job(f"job {n}"))
        clock.advance(0.001)
    for job in jobs.claim("m1", limit=count):
        jobs.complete(job, JobResult(images=[IMAGE]))


def claim_one(sends: SendQueue, owner: str = "bot-1") -> DeliveryRecord:
    [row] = sends.claim(owner, limit=1)
    return row


def test_rows_are_claimed_oldest_first_by_one_sender(
    engine: Engine, clock: FakeClock, sends: SendQueue
) -> None:
    finished_jobs(engine, clock, 3)
    first = sends.claim("bot-1", limit=2)
    second = sends.claim("bot-2", limit=5)
    assert len(first) == 2 and len(second) == 1
    assert [r.job_id for r in first] == sorted(r.job_id for r in first)
    assert {r.id for r in first}.isdisjoint(r.id for r in second)
    assert all(r.status is DeliveryStatus.SENDING and r.attempts == 1 for r in first + second)
    assert sends.claim("bot-3") == []


def test_mark_sent_records_the_discord_message(
    engine: Engine, clock: FakeClock, sends: SendQueue
) -> None:
    finished_jobs(engine, clock, 1)
    row = claim_one(sends)
    sends.mark_sent(row, discord_message_id=1234567890123)
    stored = sends.get(row.id)
    assert stored is not None and stored.status is DeliveryStatus.SENT
    assert stored.discord_message_id == 1234567890123 and stored.sent_at == clock.now
    with pytest.raises(LeaseLost):
        sends.mark_sent(row)


def test_retry_waits_for_the_given_delay_then_gives_up_at_max(
    engine: Engine, clock: FakeClock, sends: SendQueue
) -> None:
    finished_jobs(engine, clock, 1)
    assert sends.retry(claim_one(sends), "429 Too Many Requests", delay_s=7.0)
    clock.advance(6.9)
    assert sends.claim("bot-1") == []
    clock.advance(0.2)
    assert sends.retry(claim_one(sends), "502 Bad Gateway")
    clock.advance(SETTINGS.backoff_max_s)
    last = claim_one(sends)
    assert last.attempts == 3
    assert not sends.retry(last, "503 Service Unavailable")
    stored = sends.get(last.id)
    assert stored is not None and stored.status is DeliveryStatus.FAILED
    assert stored.last_error == "503 Service Unavailable"


def test_fail_ends_a_row_that_cannot_succeed(
    engine: Engine, clock: FakeClock, sends: SendQueue
) -> None:
    finished_jobs(engine, clock, 1)
    row = claim_one(sends)
    sends.fail(row, "403 Missing Access")
    assert sends.counts() == {DeliveryStatus.FAILED: 1}
    assert sends.claim("bot-1") == []


def test_reaper_returns_rows_of_a_vanished_sender(
    engine: Engine, clock: FakeClock, sends: SendQueue
) -> None:
    finished_jobs(engine, clock, 2)
    stale, kept = sends.claim("bot-dead", limit=2)
    clock.advance(SETTINGS.delivery_lease_s / 2)
    assert sends.renew("bot-dead", [kept.id]).held == {kept.id}
    clock.advance(SETTINGS.delivery_lease_s / 2 + 1)
    report = sends.reap_expired()
    assert (report.requeued, report.failed) == (1, 0)
    clock.advance(SETTINGS.backoff_max_s)
    again = claim_one(sends, "bot-2")
    assert again.id == stale.id and again.attempts == 2
    with pytest.raises(LeaseLost):
        sends.mark_sent(stale)
    sends.mark_sent(again)


def test_reaper_fails_rows_that_spent_their_attempts(
    engine: Engine, clock: FakeClock, sends: SendQueue
) -> None:
    finished_jobs(engine, clock, 1)
    for _ in range(SETTINGS.delivery_max_attempts):
        claim_one(sends)
        clock.advance(SETTINGS.delivery_lease_s + 1)
        sends.reap_expired()
        clock.advance(SETTINGS.backoff_max_s)
    assert sends.counts() == {DeliveryStatus.FAILED: 1}
