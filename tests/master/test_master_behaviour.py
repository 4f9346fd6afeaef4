"""A master's other duties: users' cancels, draining on SIGTERM (and the next master
adopting the running GPU job), metrics, RunPod webhooks, the local backend."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import requests
from sqlalchemy import Engine

from stillhouse.config import QueueSettings, StorageSettings
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.queue.records import CancelOutcome
from stillhouse.schemas.states import DeliveryKind, JobStatus
from tests.master.cluster import Cluster, base_env, enqueue, storage_env
from tests.support import free_port, wait_until
from tests.worker.comfy_double import double_command


def runpod_status(cluster: Cluster, public_id: str) -> str | None:
    jobs = cluster.double.jobs_for(public_id)
    return jobs[-1].status if jobs else None


def test_a_users_cancel_reaches_the_gpu_job(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine
) -> None:
    [public_id] = enqueue(queue, 1)
    cluster.start_worker("w0", "--hang")
    cluster.start_master("m0")
    wait_until(
        lambda: runpod_status(cluster, public_id) == "IN_PROGRESS",
        timeout_s=60,
        what="the job to run on the GPU",
    )
    assert queue.cancel(public_id) is CancelOutcome.REQUESTED
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=30)
    job = queue.get(public_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    assert [r.kind for r in SendQueue(mariadb_engine, QueueSettings()).for_job(job.id)] == [
        DeliveryKind.NOTICE
    ]
    assert runpod_status(cluster, public_id) == "CANCELLED"


def test_sigterm_hands_back_and_the_next_master_adopts_the_running_gpu_job(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine
) -> None:
    [public_id] = enqueue(queue, 1)
    cluster.start_worker("w0", "--step-time", "4")  # one sampler step of 4 s
    cluster.start_master("m0", master__drain_grace_s="0.5")
    wait_until(
        lambda: runpod_status(cluster, public_id) == "IN_PROGRESS",
        timeout_s=60,
        what="the job to run on the GPU",
    )
    began = time.monotonic()
    assert cluster.terminate("m0") == 0
    assert time.monotonic() - began < 10, "draining took longer than its grace"
    handed_back = queue.get(public_id)
    assert handed_back is not None and handed_back.status is JobStatus.QUEUED
    # Its one GPU try is running: handed back with its id, for the next master to adopt.
    assert handed_back.attempts == 1 and handed_back.backend_job_id is not None
    cluster.start_master("m1")
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=60)
    done = queue.get(public_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.attempts == 1
    assert len(cluster.double.jobs_for(public_id)) == 1, "the GPU job ran twice"
    assert "adopted a backend job" in cluster.log("m1")


def test_metrics_count_what_the_master_did(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine
) -> None:
    enqueue(queue, 3)
    port = free_port()
    cluster.start_worker("w0")
    cluster.start_master("m0", master__http_port=str(port), master__http_host="127.0.0.1")
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=60)

    def scraped() -> str | None:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        # The gauge counts what is waiting or in flight: nothing, once all three are done.
        depth = ('stillhouse_queue_depth{status="queued"} 0.0', 'status="running"} 0.0')
        return text if all(d in text for d in depth) else None

    text = wait_until(scraped, timeout_s=20, what="the queue depth gauge")
    assert "stillhouse_jobs_claimed_total 3.0" in text
    assert "stillhouse_jobs_succeeded_total 3.0" in text
    assert "stillhouse_queue_wait_seconds_count 3.0" in text
    assert "stillhouse_backend_seconds_count 3.0" in text
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok"


def test_runpod_webhooks_wake_the_master_instead_of_slow_polling(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine
) -> None:
    enqueue(queue, 3)
    port = free_port()
    cluster.start_worker("w0")
    began = time.monotonic()
    cluster.start_master(
        "m0",
        master__http_port=str(port),
        master__http_host="127.0.0.1",
        master__poll_interval_s="60",
        runpod__webhook_url=f"http://127.0.0.1:{port}/webhooks/runpod",
        runpod__webhook_token="hook-secret",
    )
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=40)
    assert time.monotonic() - began < 40, "finished only by polling"
    forged = requests.post(
        f"http://127.0.0.1:{port}/webhooks/runpod?token=wrong", json={"id": "x"}, timeout=5
    )
    assert forged.status_code == 403


def test_the_local_backend_runs_worker_processes(
    tmp_path: Path,
    queue: GenerationQueue,
    mariadb_engine: Engine,
    mariadb_url: str,
    s3_settings: StorageSettings,
    cluster: Cluster,
) -> None:
    ids = enqueue(queue, 6)
    comfy_port = free_port()
    cluster.master_env = {
        "STILLHOUSE_MASTER__BACKEND": "local",
        "STILLHOUSE_MASTER__LOCAL_WORKERS": "2",
        "STILLHOUSE_MASTER__LOCAL_PLANE_PORT": str(free_port()),
        "STILLHOUSE_WORKER__COMFY_URL": f"http://127.0.0.1:{comfy_port}",
        "STILLHOUSE_WORKER__COMFY_COMMAND": double_command(comfy_port).replace(
            str(comfy_port), "{port}"
        ),
    }
    cluster.start_master("m0")
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=120)
    for public_id in ids:
        job = queue.get(public_id)
        assert job is not None and job.status is JobStatus.SUCCEEDED, cluster.log("m0")[-2000:]
        assert job.result is not None and job.result.images[0].bucket == s3_settings.s3_bucket


def test_the_local_backend_uses_workers_that_already_run(
    queue: GenerationQueue,
    mariadb_engine: Engine,
    s3_settings: StorageSettings,
    cluster: Cluster,
) -> None:
    """As in docker-compose: the GPU worker is its own service, running the runpod worker
    loop against the master's control plane; the master starts no worker of its own."""
    comfy_port, plane_port = free_port(), free_port()
    plane = f"http://127.0.0.1:{plane_port}"
    worker_env = {
        **base_env(),
        **storage_env(s3_settings),
        "STILLHOUSE_DATA_DIR": str(cluster.tmp / "gpu"),
        "STILLHOUSE_LOG__FORMAT": "text",
        "STILLHOUSE_WORKER__COMFY_URL": f"http://127.0.0.1:{comfy_port}",
        "STILLHOUSE_WORKER__COMFY_COMMAND": double_command(comfy_port),
        "RUNPOD_WEBHOOK_GET_JOB": f"{plane}/job-take/$ID?gpu=test",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{plane}/job-done/$RUNPOD_POD_ID?id=$ID",
        "RUNPOD_WEBHOOK_PING": f"{plane}/ping/$RUNPOD_POD_ID",
        "RUNPOD_POD_ID": "gpu-service",
        "RUNPOD_AI_API_KEY": "local",
        "RUNPOD_PING_INTERVAL": "1000",
    }
    cluster.spawn("gpu", [sys.executable, "-m", "worker"], worker_env)
    ids = enqueue(queue, 3)
    cluster.master_env = {
        "STILLHOUSE_MASTER__BACKEND": "local",
        "STILLHOUSE_MASTER__LOCAL_WORKERS": "0",
        "STILLHOUSE_MASTER__LOCAL_PLANE_PORT": str(plane_port),
    }
    cluster.start_master("m0")
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=120)
    for public_id in ids:
        job = queue.get(public_id)
        assert job is not None and job.status is JobStatus.SUCCEEDED, cluster.log("m0")[-2000:]
    assert "local worker starting" not in cluster.log("m0"), "it must not start its own"
