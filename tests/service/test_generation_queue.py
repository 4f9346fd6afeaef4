"""generation_queue operations on MariaDB and SQLite (the `engine` fixture runs both)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from stillhouse.config import QueueSettings
from stillhouse.db.models import Delivery, GenerationJob
from stillhouse.errors import JobNotFound, LeaseLost
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.queue.records import CancelOutcome, FailOutcome
from stillhouse.schemas.jobs import FailurePayload, JobResult, NoticePayload, ResultPayload
from stillhouse.schemas.states import DeliveryKind, DeliveryStatus, JobStatus
from stillhouse.schemas.worker_io import ErrorInfo
from tests.support import IMAGE, FakeClock, new_job

SETTINGS = QueueSettings(max_attempts=3, lease_s=30, backoff_base_s=10, backoff_max_s=60)
RETRYABLE = ErrorInfo(type="worker_died", message="GPU worker vanished", retryable=True)
NODE_ERROR = ErrorInfo(
    type="node_error",
    message="Value 9000 bigger than max of 8192",
    node_id="5",
    node_type="EmptyLatentImage",
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(engine: Engine, clock: FakeClock) -> GenerationQueue:
    return GenerationQueue(engine, SETTINGS, clock=clock, rand=lambda: 0.5)


@pytest.fixture
def sends(engine: Engine, clock: FakeClock) -> SendQueue:
    return SendQueue(engine, SETTINGS, clock=clock)


def outcome_rows(engine: Engine, job_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(Delivery).where(Delivery.job_id == job_id)
            ).scalar_one()
        )


def test_enqueue_stores_a_queued_job_under_an_unguessable_public_id(queue: GenerationQueue) -> None:
    enqueued = queue.enqueue(new_job())
    assert enqueued.created
    stored = queue.get(enqueued.job.public_id)
    assert stored is not None
    assert stored.status is JobStatus.QUEUED
    assert len(stored.public_id) == 16
    assert stored.params.root["prompt"] == "a lighthouse at dawn"
    assert stored.graph == new_job().graph
    assert stored.max_attempts == SETTINGS.max_attempts
    assert stored == enqueued.job


def test_same_interaction_enqueued_twice_gives_one_job(queue: GenerationQueue) -> None:
    first = queue.enqueue(new_job("first", interaction_id=111))
    second = queue.enqueue(new_job("second replica", interaction_id=111))
    assert first.created and not second.created
    assert second.job.public_id == first.job.public_id
    assert second.job.params.root["prompt"] == "first"


def test_a_new_job_wakes_the_masters_once_it_is_committed_and_a_repeat_does_not(
    queue: GenerationQueue, engine: Engine
) -> None:
    seen: list[int] = []

    def queued() -> None:  # what a master would find, claiming on another connection
        with engine.connect() as conn:
            seen.append(
                int(conn.execute(select(func.count()).select_from(GenerationJob)).scalar_one())
            )

    job = new_job(interaction_id=7)
    first = queue.enqueue(job, queued=queued)
    again = queue.enqueue(job, queued=queued)
    assert first.created and not again.created
    assert seen == [1], "one wake-up, after the job was visible to other connections"


def test_interaction_token_is_kept_but_never_shown(queue: GenerationQueue) -> None:
    job = queue.enqueue(new_job(token="very-secret-token")).job
    assert "very-secret-token" not in repr(job)
    assert job.routing.interaction_token is not None
    assert job.routing.interaction_token.get_secret_value() == "very-secret-token"


def test_claim_takes_urgent_then_oldest_first(queue: GenerationQueue, clock: FakeClock) -> None:
    old = queue.enqueue(new_job("old")).job
    clock.advance(1)
    urgent = queue.enqueue(new_job("urgent", priority=-5)).job
    clock.advance(1)
    newer = queue.enqueue(new_job("newer")).job
    claimed = [j.public_id for j in queue.claim("m1", limit=3)]
    assert claimed == [urgent.public_id, old.public_id, newer.public_id]


def test_claim_leases_to_the_owner_and_counts_the_claim_not_an_attempt(
    queue: GenerationQueue, clock: FakeClock
) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1", limit=5)
    assert job.status is JobStatus.DISPATCHED
    assert job.lease_owner == "m1"
    assert job.claims == 1 and job.attempts == 0
    assert job.lease_expires_at == clock.now + timedelta(seconds=SETTINGS.lease_s)
    assert queue.get(job.public_id) == job
    assert queue.claim("m2", limit=5) == []


def test_claim_leaves_jobs_in_backoff_alone(queue: GenerationQueue, clock: FakeClock) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1")
    assert queue.fail(job, RETRYABLE) is FailOutcome.RETRYING
    assert queue.claim("m1") == []
    clock.advance(SETTINGS.backoff_base_s)
    [again] = queue.claim("m1")
    assert again.id == job.id and again.claims == 2


def test_retry_backoff_grows_exponentially_with_jitter(
    queue: GenerationQueue, clock: FakeClock
) -> None:
    queue.enqueue(new_job(max_attempts=5))
    delays = []
    for _ in range(4):
        clock.advance(3600)
        [job] = queue.claim("m1")
        queue.mark_running(job, backend_job_id="rp")
        queue.fail(job, RETRYABLE)
        stored = queue.get(job.public_id)
        assert stored is not None and stored.status is JobStatus.QUEUED
        delays.append((stored.run_after - clock.now).total_seconds())
    # rand() = 0.5: three quarters of min(max, base * 2^(n-1)).
    assert delays == [7.5, 15.0, 30.0, 45.0]


def test_complete_writes_the_result_row_with_the_job(
    queue: GenerationQueue, sends: SendQueue, engine: Engine
) -> None:
    queue.enqueue(new_job(interaction_id=5))
    [job] = queue.claim("m1")
    queue.mark_running(job, backend_job_id="rp-123")
    queue.complete(job, JobResult(images=[IMAGE]))
    done = queue.get(job.public_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert done.result is not None and done.result.images == [IMAGE]
    assert done.backend_job_id == "rp-123" and done.finished_at is not None
    [row] = sends.for_job(job.id)
    assert row.kind is DeliveryKind.RESULT and row.status is DeliveryStatus.PENDING
    assert isinstance(row.payload, ResultPayload) and row.payload.images == [IMAGE]
    assert row.routing.channel_id == 99
    assert row.routing.interaction_token is not None
    assert row.routing.interaction_token.get_secret_value() == "interaction-token-secret"


def test_a_job_cannot_be_completed_twice(queue: GenerationQueue, engine: Engine) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1")
    queue.complete(job, JobResult(images=[IMAGE]))
    with pytest.raises(LeaseLost):
        queue.complete(job, JobResult(images=[IMAGE]))
    assert outcome_rows(engine, job.id) == 1


def test_a_reaped_claim_can_no_longer_complete(
    queue: GenerationQueue, clock: FakeClock, engine: Engine
) -> None:
    queue.enqueue(new_job())
    [stale] = queue.claim("m1")
    clock.advance(SETTINGS.lease_s + 1)
    assert queue.reap_expired().requeued == 1
    clock.advance(SETTINGS.backoff_max_s)
    [fresh] = queue.claim("m2")
    with pytest.raises(LeaseLost):
        queue.complete(stale, JobResult(images=[IMAGE]))
    with pytest.raises(LeaseLost):
        queue.set_progress(stale, 0.5)
    queue.complete(fresh, JobResult(images=[IMAGE]))
    assert outcome_rows(engine, fresh.id) == 1


def test_non_retryable_failure_fails_at_once_with_the_workers_message(
    queue: GenerationQueue, sends: SendQueue
) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1")
    assert queue.fail(job, NODE_ERROR) is FailOutcome.FAILED
    stored = queue.get(job.public_id)
    assert stored is not None and stored.status is JobStatus.FAILED
    assert stored.error == NODE_ERROR
    [row] = sends.for_job(job.id)
    assert row.kind is DeliveryKind.FAILURE
    assert isinstance(row.payload, FailurePayload)
    assert row.payload.error.message == "Value 9000 bigger than max of 8192"
    assert row.payload.error.node_id == "5"


def test_retryable_failure_at_max_attempts_fails_with_a_row_for_the_user(
    queue: GenerationQueue, clock: FakeClock, sends: SendQueue
) -> None:
    queue.enqueue(new_job(max_attempts=2))
    outcomes = []
    for _ in range(2):
        clock.advance(3600)
        [job] = queue.claim("m1")
        queue.mark_running(job, backend_job_id="rp")  # each try reached a GPU
        outcomes.append(queue.fail(job, RETRYABLE))
    assert outcomes == [FailOutcome.RETRYING, FailOutcome.FAILED]
    [row] = sends.for_job(job.id)
    assert isinstance(row.payload, FailurePayload) and row.payload.attempts == 2


def test_cancel_of_a_queued_job_is_immediate_and_tells_the_user(
    queue: GenerationQueue, sends: SendQueue
) -> None:
    job = queue.enqueue(new_job()).job
    assert queue.cancel(job.public_id) is CancelOutcome.CANCELLED
    assert queue.claim("m1") == []
    assert queue.cancel(job.public_id) is CancelOutcome.ALREADY_FINISHED
    [row] = sends.for_job(job.id)
    assert isinstance(row.payload, NoticePayload) and "cancelled" in row.payload.text


def test_cancel_of_a_running_job_reaches_its_holder(
    queue: GenerationQueue, sends: SendQueue
) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1")
    queue.mark_running(job)
    assert queue.cancel(job.public_id) is CancelOutcome.REQUESTED
    lease = queue.renew("m1", [job.id])
    assert lease.held == {job.id} and lease.cancel_requested == {job.id}
    queue.finish_cancelled(job)
    stored = queue.get(job.public_id)
    assert stored is not None and stored.status is JobStatus.CANCELLED
    [row] = sends.for_job(job.id)
    assert row.kind is DeliveryKind.NOTICE


def test_cancel_of_an_unknown_job_says_so(queue: GenerationQueue) -> None:
    assert queue.cancel("no-such-job") is CancelOutcome.NOT_FOUND


def test_reaper_returns_expired_jobs_in_line_without_costing_an_attempt(
    queue: GenerationQueue, clock: FakeClock, sends: SendQueue
) -> None:
    queue.enqueue(new_job("never submitted"))
    queue.enqueue(new_job("running on a gpu", max_attempts=1))
    queue.enqueue(new_job("healthy"))
    claimed = {j.params.root["prompt"]: j for j in queue.claim("m1", limit=3)}
    queue.mark_running(claimed["running on a gpu"], backend_job_id="rp-7")
    clock.advance(SETTINGS.lease_s / 2)
    queue.renew("m1", [claimed["healthy"].id])
    clock.advance(SETTINGS.lease_s / 2 + 1)
    report = queue.reap_expired()
    assert (report.requeued, report.failed, report.cancelled) == (2, 0, 0)
    fresh, running, healthy = (
        queue.get(claimed[p].public_id) for p in ("never submitted", "running on a gpu", "healthy")
    )
    assert fresh is not None and fresh.status is JobStatus.QUEUED and fresh.attempts == 0
    assert fresh.run_after == claimed["never submitted"].run_after, "it kept its place"
    # Its one attempt is spent, but its GPU job may have finished: the next holder asks.
    assert running is not None and running.status is JobStatus.QUEUED
    assert running.backend_job_id == "rp-7" and running.attempts == 1
    assert healthy is not None and healthy.status is JobStatus.DISPATCHED
    assert sends.for_job(running.id) == [] and sends.for_job(fresh.id) == []
    assert queue.reap_expired().total == 0


def test_reaper_fails_only_a_job_that_never_reached_a_gpu_in_max_claims(
    engine: Engine, clock: FakeClock, sends: SendQueue
) -> None:
    settings = SETTINGS.model_copy(update={"max_claims": 2})
    queue = GenerationQueue(engine, settings, clock=clock, rand=lambda: 0.5)
    poison = queue.enqueue(new_job("stops every master")).job
    adopted = queue.enqueue(new_job("at the backend")).job
    for _ in range(3):
        for job in queue.claim("m1", limit=2):
            if job.id == adopted.id and job.backend_job_id is None:
                queue.mark_running(job, backend_job_id="rp-1")
        clock.advance(SETTINGS.lease_s + 1)
        queue.reap_expired()
    failed, kept = queue.get(poison.public_id), queue.get(adopted.public_id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.claims == 2
    assert failed.error is not None and failed.error.type == "lease_expired"
    [row] = sends.for_job(failed.id)
    assert row.kind is DeliveryKind.FAILURE
    assert kept is not None and kept.status is JobStatus.QUEUED and kept.claims == 3


def test_a_submit_whose_fate_is_unknown_is_counted_by_the_next_holder(
    queue: GenerationQueue, clock: FakeClock
) -> None:
    queue.enqueue(new_job())
    [first] = queue.claim("m1")
    queue.begin_submit(first)  # the master dies before storing the backend id
    clock.advance(SETTINGS.lease_s + 1)
    assert queue.reap_expired().requeued == 1
    [second] = queue.claim("m2")
    assert second.submitting_since is not None and second.backend_job_id is None
    queue.begin_submit(second)
    queue.mark_running(second, backend_job_id="rp-2")
    stored = queue.get(second.public_id)
    assert stored is not None and stored.lost_submits == 1
    assert stored.submitting_since is None and stored.attempts == 1
    assert stored.backend_job_id == "rp-2"


def test_a_submit_that_never_left_is_not_counted(queue: GenerationQueue) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1")
    queue.begin_submit(job)
    queue.abort_submit(job)  # connection refused: no job at the backend
    queue.begin_submit(job)
    queue.mark_running(job, backend_job_id="rp-1")
    stored = queue.get(job.public_id)
    assert stored is not None and stored.lost_submits == 0 and stored.attempts == 1


def test_cancels_for_lists_the_holders_cancelled_jobs(queue: GenerationQueue) -> None:
    queue.enqueue(new_job())
    queue.enqueue(new_job())
    mine, other = queue.claim("m1", limit=2)
    queue.mark_running(mine)
    assert queue.cancels_for("m1") == frozenset()
    assert queue.cancel(mine.public_id) is CancelOutcome.REQUESTED
    assert queue.cancels_for("m1") == {mine.id}
    assert queue.cancels_for("m2") == frozenset()
    assert other.id not in queue.cancels_for("m1")


def test_a_result_after_a_cancel_says_the_images_came_first(
    queue: GenerationQueue, sends: SendQueue
) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1")
    queue.mark_running(job, backend_job_id="rp-1")
    queue.cancel(job.public_id)
    queue.complete(job, JobResult(images=[IMAGE]))
    [row] = sends.for_job(job.id)
    assert isinstance(row.payload, ResultPayload) and row.payload.cancel_too_late


def test_renew_reports_only_the_leases_still_held(queue: GenerationQueue) -> None:
    queue.enqueue(new_job())
    queue.enqueue(new_job())
    first, second = queue.claim("m1", limit=2)
    queue.complete(first, JobResult(images=[IMAGE]))
    assert queue.renew("m1", [first.id, second.id]).held == {second.id}
    assert queue.renew("m2", [second.id]).held == frozenset()


def test_progress_is_recorded_for_the_holder(queue: GenerationQueue) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1")
    queue.mark_running(job)
    queue.set_progress(job, 0.25, "KSampler 5/20")
    stored = queue.get(job.public_id)
    assert stored is not None and stored.status is JobStatus.RUNNING
    assert stored.progress == 0.25 and stored.progress_note == "KSampler 5/20"
    assert stored.started_at is not None


def test_position_counts_jobs_ahead_and_estimates_the_wait(
    queue: GenerationQueue, clock: FakeClock
) -> None:
    for _ in range(3):
        queue.enqueue(new_job())
    claimed = queue.claim("m1", limit=3)
    clock.advance(2)
    for job in claimed:
        queue.complete(job, JobResult(images=[IMAGE]))
    waiting = [queue.enqueue(new_job()).job for _ in range(4)]
    position = queue.position(waiting[3].public_id)
    assert position.status is JobStatus.QUEUED
    assert position.ahead == 3
    # Each recent job held its worker 2 s, none is running now: four to go, one at a time
    # (not 800 s from "3 finished in the 600 s window": the queue was idle, not slow).
    assert position.estimated_wait_s == pytest.approx(8.0)
    with pytest.raises(JobNotFound):
        queue.position("nope")


def test_the_wait_is_shared_among_the_workers_busy_now(
    queue: GenerationQueue, clock: FakeClock
) -> None:
    queue.enqueue(new_job())
    [done] = queue.claim("m1")
    clock.advance(10)
    queue.complete(done, JobResult(images=[IMAGE]))
    for _ in range(2):
        queue.enqueue(new_job())
    queue.claim("m1", limit=2)  # two workers busy now
    waiting = [queue.enqueue(new_job()).job for _ in range(4)]
    # Four to go (three ahead and itself) at 10 s each, two at a time.
    assert queue.position(waiting[3].public_id).estimated_wait_s == pytest.approx(20.0)


def test_a_busy_queues_pace_comes_from_its_most_recent_jobs(
    queue: GenerationQueue, clock: FakeClock
) -> None:
    for _ in range(60):
        queue.enqueue(new_job())
    claimed = queue.claim("m1", limit=60)
    assert len(claimed) == 60
    clock.advance(30)
    for job in claimed:
        clock.advance(1)  # one finishes each second
        queue.complete(job, JobResult(images=[IMAGE]))
    waiting = [queue.enqueue(new_job()).job for _ in range(10)]
    # The last 50 finished over 49 s: ten to go take about 10 s (not the 100 s that "60
    # finished in the 600 s window" says, nor the minute each held its worker).
    wait = queue.position(waiting[9].public_id).estimated_wait_s
    assert wait == pytest.approx(10 * 49 / 50)


def test_wait_is_unknown_without_recent_history(queue: GenerationQueue) -> None:
    job = queue.enqueue(new_job()).job
    position = queue.position(job.public_id)
    assert position.ahead == 0 and position.estimated_wait_s is None


def test_input_images_travel_with_the_job(queue: GenerationQueue) -> None:
    from stillhouse.schemas.jobs import InputSource

    sources = [
        InputSource(name="image-0123456789abcdef.png", url="https://cdn.discordapp.com/a/b.png"),  # type: ignore[arg-type]
        InputSource(name="image-fedcba9876543210.png", storage_key="stillhouse/job/x.png"),
    ]
    queued = queue.enqueue(new_job().model_copy(update={"inputs": sources})).job
    assert queued.inputs == sources
    [claimed] = queue.claim("m1")
    assert claimed.inputs == sources


def test_a_claim_keeps_the_jobs_at_the_backend_within_the_cap_across_masters(
    queue: GenerationQueue,
) -> None:
    for _ in range(6):
        queue.enqueue(new_job())
    first = queue.claim("m1", 3, backend_cap=4)
    assert len(first) == 3
    assert len(queue.claim("m2", 3, backend_cap=4)) == 1, "one place left under the cap"
    assert queue.claim("m3", 3, backend_cap=4) == []
    queue.complete(first[0], JobResult(images=[IMAGE]))
    assert len(queue.claim("m3", 3, backend_cap=4)) == 1, "a finished job freed its place"
    assert queue.active_count() == 4
    assert len(queue.claim("m3", 3)) == 1, "no cap: the rest"


def test_a_drained_job_goes_back_at_once_without_spending_an_attempt(
    queue: GenerationQueue,
) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1")
    queue.mark_running(job, backend_job_id="rp-1")
    assert queue.active_count() == 1
    queue.hand_back(job)
    [again] = queue.claim("m2")
    assert again.attempts == 1 and again.backend_job_id == "rp-1"
    assert queue.active_count() == 1


def test_a_reaped_job_keeps_its_backend_job_for_adoption(
    queue: GenerationQueue, clock: FakeClock
) -> None:
    queue.enqueue(new_job())
    [job] = queue.claim("m1")
    queue.mark_running(job, backend_job_id="rp-7")
    clock.advance(SETTINGS.lease_s + 1)
    queue.reap_expired()
    clock.advance(SETTINGS.backoff_max_s)
    [adopted] = queue.claim("m2")
    assert adopted.backend_job_id == "rp-7"
    queue.fail(adopted, RETRYABLE)
    clock.advance(SETTINGS.backoff_max_s)
    [fresh] = queue.claim("m2")
    assert fresh.backend_job_id is None, "a failed backend job is not adopted"


def test_depth_counts_only_unfinished_jobs(queue: GenerationQueue) -> None:
    first = queue.enqueue(new_job()).job
    queue.enqueue(new_job("second"))
    [claimed] = queue.claim("owner", limit=1)
    assert claimed.id == first.id
    queue.complete(claimed, JobResult(images=[IMAGE]))
    queue.enqueue(new_job("third"))
    [running] = queue.claim("owner", limit=1)
    queue.mark_running(running, "backend-1")
    assert queue.depth() == {
        JobStatus.QUEUED: 1,
        JobStatus.DISPATCHED: 0,
        JobStatus.RUNNING: 1,
    }
    assert queue.counts()[JobStatus.SUCCEEDED] == 1
