"""FAILED, TIMED_OUT and lost jobs retry with backoff up to the limit, and so do jobs the
backend never ends (cancelled there at their deadline); a non-retryable error fails at
once and the worker's message reaches the user's failure row."""

from __future__ import annotations

import itertools

from sqlalchemy import Engine

from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.jobs import FailurePayload
from stillhouse.schemas.states import DeliveryKind, JobStatus
from tests.doubles.runpod.state import Fate
from tests.master.cluster import Cluster, enqueue
from tests.worker.harness import captured

BACKOFF_BASE_S = 0.2  # the cluster's masters run with this base


def submission_times(cluster: Cluster, public_id: str) -> list[float]:
    return [at for at, job_id in cluster.double.state.submissions if job_id == public_id]


def rows(engine: Engine, job_id: int) -> list[DeliveryKind]:
    return [r.kind for r in SendQueue(engine, QueueSettings()).for_job(job_id)]


def test_failed_timed_out_and_lost_jobs_are_retried_with_backoff(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine
) -> None:
    cluster.double.plan(Fate.FAIL, Fate.TIME_OUT, Fate.LOSE)
    # At once: ComfyUI answers a graph it ran before from its cache within a few ms.
    cluster.double.state.time_out_after_s = 0.001
    [public_id] = enqueue(queue, 1, max_attempts=4)
    cluster.start_worker("w0")
    cluster.start_master("m0")
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=90)
    job = queue.get(public_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert job.attempts == 4 and job.error is None
    assert rows(mariadb_engine, job.id) == [DeliveryKind.RESULT]
    times = submission_times(cluster, public_id)
    assert len(times) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for attempt, gap in enumerate(gaps, start=1):
        # Equal jitter: at least half of base * 2^(attempt-1) after the failure was seen.
        assert gap >= BACKOFF_BASE_S * 2 ** (attempt - 1) / 2, gaps
    statuses = [j.status for j in cluster.double.jobs_for(public_id)]
    assert statuses == ["FAILED", "TIMED_OUT", "COMPLETED"], "the lost one is gone"


def test_a_job_failing_every_attempt_fails_with_a_row_for_the_user(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine
) -> None:
    cluster.double.plan(Fate.FAIL, Fate.FAIL, Fate.FAIL)
    [public_id] = enqueue(queue, 1, max_attempts=3)
    cluster.start_worker("w0")
    cluster.start_master("m0")
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=90)
    job = queue.get(public_id)
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == 3
    [row] = SendQueue(mariadb_engine, QueueSettings()).for_job(job.id)
    assert isinstance(row.payload, FailurePayload) and row.payload.attempts == 3
    assert "CUDA error" in row.payload.error.message
    assert len(submission_times(cluster, public_id)) == 3


def test_a_non_retryable_error_fails_at_once_with_the_workers_message(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine
) -> None:
    bad = ComfyGraph.model_validate(captured("bad_width"))
    [public_id] = enqueue(queue, 1, max_attempts=3, graph=bad)
    cluster.start_worker("w0")
    cluster.start_master("m0")
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=90)
    job = queue.get(public_id)
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == 1
    [row] = SendQueue(mariadb_engine, QueueSettings()).for_job(job.id)
    assert isinstance(row.payload, FailurePayload)
    error = row.payload.error
    assert (error.type, error.node_id, error.node_type) == (
        "invalid_graph",
        "5",
        "EmptyLatentImage",
    )
    assert error.message == "Value 100000 bigger than max of 16384: width"
    assert not error.retryable
    assert len(submission_times(cluster, public_id)) == 1


def test_a_job_no_gpu_takes_is_cancelled_at_its_deadline_and_fails_with_a_row(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine
) -> None:
    # No worker: RunPod answers IN_QUEUE for ever, as an endpoint with no GPUs to give.
    [public_id] = enqueue(queue, 1, max_attempts=2)
    cluster.start_master("m0", master__job_timeout_s="1", master__backend_queue_s="1")
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=60)
    job = queue.get(public_id)
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == 2
    [row] = SendQueue(mariadb_engine, QueueSettings()).for_job(job.id)
    assert isinstance(row.payload, FailurePayload) and row.payload.error.type == "timeout"
    statuses = [j.status for j in cluster.double.jobs_for(public_id)]
    assert statuses == ["CANCELLED", "CANCELLED"], "a GPU job given up on was left queued"
