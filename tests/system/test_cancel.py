"""Cancel reaches the GPU within 2 s: a user clicks Cancel on a job ComfyUI is running;
its master sees the cancel (it looks every `cancel_check_interval_s`), cancels the RunPod
job, the runpod worker SDK stops the handler, which interrupts ComfyUI. The user's
message becomes one cancel notice, and no image is ever delivered."""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import Engine

from stillhouse.schemas.states import DeliveryKind, JobStatus
from stillhouse.services import Services
from tests.bot.harness import CHANNEL, GUILD, USER, answers, queued_id, wait_answer
from tests.conftest import MemcachedServer
from tests.doubles.discord import DiscordEmulator
from tests.master.cluster import Cluster
from tests.support import wait_until
from tests.system.harness import System

pytestmark = pytest.mark.slow
CANCEL_WITHIN_S = 2.0


def interrupted_at(comfy_url: str) -> float | None:
    """When ComfyUI stopped a prompt on /interrupt (its own record), in epoch seconds."""
    history = requests.get(f"{comfy_url}/history", timeout=5).json()
    for entry in history.values():
        for kind, data in entry["status"]["messages"]:
            if kind == "execution_interrupted":
                return float(data["timestamp"]) / 1000
    return None


def test_a_cancel_stops_the_running_gpu_job_within_2_s_and_tells_the_user_once(
    cluster: Cluster,
    emu: DiscordEmulator,
    memcached: MemcachedServer,
    mariadb_engine: Engine,
    maria_services: Services,
) -> None:
    cluster.memcached = memcached.address
    system = System(cluster, emu)
    # 0.2 s a sampler step: the job runs for seconds unless stopped.
    comfy = cluster.start_worker("w0", "--step-time", "0.2")
    # Leases renewed every 10 s: the cancel must not wait for a renewal to be seen.
    cluster.start_master("m0", queue__lease_s="30")
    system.start(workers=0, masters=0)
    ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "stop me"})
    public_id = queued_id(ix)
    queue = maria_services.queue

    def running_on_the_gpu() -> bool:
        job = queue.get(public_id)
        runpod = cluster.double.jobs_for(public_id)
        return bool(job and job.progress and runpod and runpod[-1].status == "IN_PROGRESS")

    wait_until(running_on_the_gpu, 60, 0.05, what="ComfyUI running the job")
    assert ix.original is not None
    clicked = time.time()
    emu.click(ix.original, f"sh:x:{public_id}", USER)
    stopped = wait_until(lambda: interrupted_at(comfy), 10, 0.05, what="ComfyUI interrupted")
    print(f"\ncancel: click to ComfyUI interrupted {stopped - clicked:.2f} s")
    assert stopped - clicked <= CANCEL_WITHIN_S

    answer = wait_answer(emu, ix, public_id)
    assert "cancelled" in answer.content and not answer.attachments
    job = queue.get(public_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    [row] = maria_services.sends.for_job(job.id)
    assert row.kind is DeliveryKind.NOTICE
    assert [j.status for j in cluster.double.jobs_for(public_id)] == ["CANCELLED"]
    assert all(not r.attachment_names for r in answer.revisions), "an image was shown"
    assert answers(emu, ix, public_id) == [answer]
