"""What each kind of RunPod answer does to dispatch, against the RunPod-compatible endpoint
answering that way, through the real HTTP client: refusals of the deployment (401, 403,
unknown endpoint) pause dispatch and fail nothing; busy or broken answers (429, 5xx, a
timeout, a JSON body without a status) are retried; a job counts as lost only after
real not-found answers, and is cancelled at RunPod before it runs again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from master.backends.runpod import RunPodBackend
from master.dispatcher import Dispatcher
from master.metrics import MasterMetrics
from stillhouse.config import Settings, make_settings
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.schemas.states import JobStatus
from stillhouse.storage import make_storage
from tests.doubles.runpod.server import RunPodDouble
from tests.doubles.runpod.simulated import SimulatedWorkers
from tests.master.cluster import enqueue
from tests.master.scripted import DONE

KEY = "the-right-key"
JOBS = 3


def settings_for(tmp: Path, url: str, double: RunPodDouble, **runpod: Any) -> Settings:
    return make_settings(
        data_dir=tmp,
        database={"url": url},
        queue={"lease_s": 5, "backoff_base_s": 0.05, "backoff_max_s": 0.2},
        master={
            "backend": "runpod",
            "claim_interval_s": 0.05,
            "poll_interval_s": 0.05,
            "backend_call_timeout_s": 0.5,
            "http_port": 0,
        },
        runpod={
            "endpoint_id": double.endpoint_id,
            "api_key": KEY,
            "base_url": double.base_url,
            "lost_after_polls": 3,
            **runpod,
        },
    )


def double_with_gpus(service_s: float = 0.05) -> RunPodDouble:
    output = DONE.model_dump(mode="json")
    return RunPodDouble(simulated=SimulatedWorkers(4, service_s, output), api_key=KEY).start()


def runs(double: RunPodDouble) -> list[float]:
    """When each /run arrived."""
    return [r.at for r in double.state.requests if r.op == "run"]


async def dispatching(
    settings: Settings,
    queue: GenerationQueue,
    scenario: Callable[[Dispatcher], Awaitable[None]],
) -> Dispatcher:
    """A master's dispatcher on the real RunPod client while `scenario` runs."""
    backend = RunPodBackend(settings.runpod, settings.master.job_timeout_s, "master-test-1-ab")
    dispatcher = Dispatcher(
        settings, queue, backend, make_storage(settings), MasterMetrics(), "master-test"
    )
    run = asyncio.create_task(dispatcher.run())
    try:
        await scenario(dispatcher)
    finally:
        dispatcher.stop()
        await asyncio.wait_for(run, 30)
        await backend.close()
    return dispatcher


async def until(probe: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def all_succeeded(queue: GenerationQueue, ids: list[str]) -> bool:
    return all((job := queue.get(i)) is not None and job.status is JobStatus.SUCCEEDED for i in ids)


def paused_metric(dispatcher: Dispatcher, cause: str) -> float:
    registry = dispatcher.metrics.registry
    return registry.get_sample_value("stillhouse_dispatch_paused", {"cause": cause}) or 0.0


@pytest.mark.parametrize(
    ("wrong", "cause", "fix"),
    [
        ({"api_key": "a-revoked-key"}, "unauthorized", "STILLHOUSE_RUNPOD__API_KEY"),
        ({"endpoint_id": "no-such-endpoint"}, "unknown_endpoint", "ENDPOINT_ID"),
    ],
)
def test_a_refused_deployment_pauses_dispatch_and_fails_nothing(
    tmp_path: Path,
    mariadb_url: str,
    mariadb_engine: Engine,
    wrong: dict[str, str],
    cause: str,
    fix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    double = double_with_gpus()
    try:
        settings = settings_for(tmp_path, mariadb_url, double, **wrong)
        queue = GenerationQueue(mariadb_engine, settings.queue)
        ids = enqueue(queue, JOBS)

        async def scenario(dispatcher: Dispatcher) -> None:
            await until(dispatcher.problem, 10, "dispatch paused")
            await until(lambda: queue.depth()[JobStatus.QUEUED] == JOBS, 10, "all handed back")
            paused_at = len(runs(double))
            await asyncio.sleep(3)  # the pause itself: what happens while it lasts
            assert len(runs(double)) == paused_at, "submits went on while paused"
            assert paused_metric(dispatcher, cause) == 1

        dispatcher = asyncio.run(dispatching(settings, queue, scenario))
        problem = dispatcher.problem()
        assert problem is not None and fix in problem
        # At most the jobs already on their way when the first refusal came back.
        assert len(runs(double)) <= JOBS, "a retry storm against a refusing endpoint"
        health = [r for r in double.state.requests if r.op == "health"]
        assert 1 <= len(health) <= 3, "the pause probes, gently"
        for public_id in ids:
            job = queue.get(public_id)
            assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 0
            assert SendQueue(mariadb_engine, settings.queue).for_job(job.id) == []
        assert any("dispatch paused" in r.message for r in caplog.records if r.levelname == "ERROR")
    finally:
        double.stop()


def test_a_403_pauses_then_dispatch_resumes_once_runpod_answers(
    tmp_path: Path, mariadb_url: str, mariadb_engine: Engine
) -> None:
    double = double_with_gpus()
    try:
        double.fail_next("run", 403)
        settings = settings_for(tmp_path, mariadb_url, double)
        queue = GenerationQueue(mariadb_engine, settings.queue)
        ids = enqueue(queue, JOBS)

        async def scenario(dispatcher: Dispatcher) -> None:
            await until(dispatcher.problem, 10, "dispatch paused")
            assert paused_metric(dispatcher, "forbidden") == 1
            await until(lambda: all_succeeded(queue, ids), 30, "every job done after the pause")
            assert dispatcher.problem() is None and paused_metric(dispatcher, "forbidden") == 0

        asyncio.run(dispatching(settings, queue, scenario))
        for public_id in ids:
            job = queue.get(public_id)
            assert job is not None and job.attempts == 1 and job.lost_submits == 0
            assert len(double.jobs_for(public_id)) == 1
    finally:
        double.stop()


@pytest.mark.parametrize(
    ("status", "counted"),
    [(429, 0), (500, 1), (502, 1), (503, 1)],
)
def test_busy_or_broken_submits_are_retried_and_counted_when_their_fate_is_unknown(
    tmp_path: Path, mariadb_url: str, mariadb_engine: Engine, status: int, counted: int
) -> None:
    double = double_with_gpus()
    try:
        double.fail_next("run", status, body="<html>bad gateway</html>", content_type="text/html")
        settings = settings_for(tmp_path, mariadb_url, double)
        queue = GenerationQueue(mariadb_engine, settings.queue)
        [public_id] = enqueue(queue, 1)

        async def scenario(_dispatcher: Dispatcher) -> None:
            await until(lambda: all_succeeded(queue, [public_id]), 20, "the job done")

        dispatcher = asyncio.run(dispatching(settings, queue, scenario))
        job = queue.get(public_id)
        assert job is not None and job.attempts == 1 and job.lost_submits == counted
        assert len(runs(double)) == 2 and len(double.jobs_for(public_id)) == 1
        metric = dispatcher.metrics.registry.get_sample_value("stillhouse_submits_unknown_total")
        assert metric == counted
    finally:
        double.stop()


def test_a_submit_that_times_out_is_retried_and_its_possible_twin_counted(
    tmp_path: Path, mariadb_url: str, mariadb_engine: Engine
) -> None:
    double = double_with_gpus()
    try:
        double.hang_next("run", 1.5)  # RunPod takes it, but answers after the client gave up
        settings = settings_for(tmp_path, mariadb_url, double)
        queue = GenerationQueue(mariadb_engine, settings.queue)
        [public_id] = enqueue(queue, 1)

        async def scenario(_dispatcher: Dispatcher) -> None:
            await until(lambda: all_succeeded(queue, [public_id]), 20, "the job done")
            await until(lambda: len(double.jobs_for(public_id)) == 2, 5, "the twin at RunPod")

        asyncio.run(dispatching(settings, queue, scenario))
        job = queue.get(public_id)
        assert job is not None and job.lost_submits == 1, "the GPU run twice, uncounted"
        assert job.backend_job_id in {j.id for j in double.jobs_for(public_id)}
    finally:
        double.stop()


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (503, {"error": "upstream unavailable"}, "application/json"),
        (502, "<html>bad gateway</html>", "text/html"),
        (200, {"id": "a job without its status"}, "application/json"),
    ],
)
def test_a_status_answer_without_a_status_is_unavailable_not_lost(
    tmp_path: Path,
    mariadb_url: str,
    mariadb_engine: Engine,
    status: int,
    body: Any,
    content_type: str,
) -> None:
    double = double_with_gpus(service_s=1.0)
    try:
        settings = settings_for(tmp_path, mariadb_url, double)
        queue = GenerationQueue(mariadb_engine, settings.queue)
        [public_id] = enqueue(queue, 1)

        async def scenario(_dispatcher: Dispatcher) -> None:
            await until(lambda: double.jobs_for(public_id), 10, "the job at RunPod")
            double.fail_next("status", status, times=4, body=body, content_type=content_type)
            await until(lambda: all_succeeded(queue, [public_id]), 20, "the job done")

        asyncio.run(dispatching(settings, queue, scenario))
        job = queue.get(public_id)
        assert job is not None and job.attempts == 1
        assert len(runs(double)) == 1, "resubmitted as lost"
    finally:
        double.stop()


def test_a_job_runpod_does_not_know_is_cancelled_there_before_it_runs_again(
    tmp_path: Path, mariadb_url: str, mariadb_engine: Engine
) -> None:
    double = double_with_gpus(service_s=3.0)
    try:
        settings = settings_for(tmp_path, mariadb_url, double)
        queue = GenerationQueue(mariadb_engine, settings.queue)
        [public_id] = enqueue(queue, 1)

        async def scenario(_dispatcher: Dispatcher) -> None:
            await until(lambda: double.jobs_for(public_id), 10, "the job at RunPod")
            double.fail_next("status", 404, times=3, body={"error": "request does not exist"})
            await until(lambda: all_succeeded(queue, [public_id]), 20, "the job done")

        asyncio.run(dispatching(settings, queue, scenario))
        first, second = double.jobs_for(public_id)
        assert first.status == "CANCELLED" and second.status == "COMPLETED"
        ops = [(r.op, r.job_id) for r in double.state.requests if r.op in ("run", "cancel")]
        assert ops.index(("cancel", first.id)) < ops.index(("run", second.id))
        job = queue.get(public_id)
        assert job is not None and job.attempts == 2
    finally:
        double.stop()
