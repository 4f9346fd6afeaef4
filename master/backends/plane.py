"""A RunPod-compatible control plane inside the master, for the `local` backend.

Local GPU workers run the real runpod worker loop (`python -m worker` with RunPod's
RUNPOD_WEBHOOK_* variables pointed here), so they take jobs, post progress and results,
and hear stop signals exactly as they do on RunPod: the local backend is RunPod's
protocol, not a second one. Routes (what the runpod worker SDK calls):

    GET  /job-take/{worker}        long poll: a job `{id, input}`, or 204
    GET  /job-take-batch/{worker}  the same, up to `batch_size` jobs in a list
    POST /job-done/{worker}?id=ID  `{"status": "IN_PROGRESS", "output": progress}`, or the
                                   handler's result `{"output": …}` / `{"error": …}`
    GET  /job-stop/{worker}        long poll: `{"jobsToStop": [ids]}`, or 204
    GET  /ping/{worker}            heartbeat

Every change to a job calls `on_change(job id)`, so the master looks at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)
LONG_POLL_S = 1.0
FINAL = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass
class PlaneJob:
    """One job, as RunPod's control plane tracks it."""

    id: str
    input: dict[str, Any]
    status: str = "IN_QUEUE"
    worker: str | None = None
    output: Any = None
    error: Any = None
    progress: dict[str, Any] | None = None


@dataclass
class PlaneWorker:
    """A worker polling the plane."""

    id: str
    last_seen: float = field(default_factory=time.monotonic)
    stop: set[str] = field(default_factory=set)


class ControlPlane:
    """Jobs for local workers; `start()` listens, `url` is what workers are given."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.jobs: dict[str, PlaneJob] = {}
        self.workers: dict[str, PlaneWorker] = {}
        self.on_change: Callable[[str], None] = lambda _job_id: None
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The plane's root URL as workers on this host reach it."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def worker_env(self, worker_id: str) -> dict[str, str]:
        """What the runpod worker SDK reads to work for this plane."""
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{self.url}/job-take/$ID?gpu=local",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{self.url}/job-done/$RUNPOD_POD_ID?id=$ID",
            "RUNPOD_WEBHOOK_PING": f"{self.url}/ping/$RUNPOD_POD_ID",
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_AI_API_KEY": "local",
            "RUNPOD_PING_INTERVAL": "1000",
        }

    async def start(self) -> None:
        """Listen (port 0: any free port, then `port` is the one taken)."""
        app = web.Application(client_max_size=64 * 2**20)
        app.add_routes(
            [
                web.get("/job-take/{worker}", self._take),
                web.get("/job-take-batch/{worker}", self._take),
                web.post("/job-done/{worker}", self._done),
                web.get("/job-stop/{worker}", self._stop_signals),
                web.get("/ping/{worker}", self._ping),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the master's side ----------------------------------------------------------------

    def submit(self, job_input: dict[str, Any]) -> str:
        """Queue a job for the next free worker; its id."""
        job = PlaneJob(f"local-{uuid.uuid4().hex}", job_input)
        self.jobs[job.id] = job
        self._touch()
        return job.id

    def cancel(self, job_id: str) -> None:
        """Cancel it; a running one is also stopped on its worker (stop signal)."""
        job = self.jobs.get(job_id)
        if job is None or job.status in FINAL:
            return
        if job.status == "IN_PROGRESS" and job.worker in self.workers:
            self.workers[job.worker].stop.add(job_id)
        self._finish(job, "CANCELLED")

    def forget(self, job_id: str) -> None:
        """The master has read the job's outcome."""
        self.jobs.pop(job_id, None)

    def fail_worker(self, worker_id: str, message: str) -> None:
        """A worker process died: RunPod fails the job it held."""
        for job in list(self.jobs.values()):
            if job.worker == worker_id and job.status == "IN_PROGRESS":
                error = {"type": "worker_died", "message": message, "retryable": True}
                self._finish(job, "FAILED", error=json.dumps(error))

    def live_workers(self, within_s: float) -> int:
        """Workers heard from recently."""
        now = time.monotonic()
        return sum(1 for w in self.workers.values() if now - w.last_seen <= within_s)

    # -- the workers' side ----------------------------------------------------------------

    async def _take(self, request: web.Request) -> web.Response:
        """One job (`/job-take/`), or up to `batch_size` (`/job-take-batch/`, which the
        SDK asks for when its worker may hold more than one), after a long poll."""
        worker = self._seen(request.match_info["worker"])
        batch = request.path.startswith("/job-take-batch/")
        wanted = max(1, int(request.query.get("batch_size", "1"))) if batch else 1
        deadline = time.monotonic() + LONG_POLL_S
        while True:
            taken = []
            for job in [j for j in self.jobs.values() if j.status == "IN_QUEUE"][:wanted]:
                if not self._may_take(worker):
                    break
                job.status, job.worker = "IN_PROGRESS", worker.id
                log.debug("taken", extra={"action": "plane.take", "backend_job_id": job.id})
                self.on_change(job.id)
                taken.append({"id": job.id, "input": job.input})
            if taken:
                return web.json_response(taken if batch else taken[0])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return web.Response(status=204)
            await self._wait(remaining)

    async def _done(self, request: web.Request) -> web.Response:
        self._seen(request.match_info["worker"])
        job = self.jobs.get(request.query.get("id", ""))
        body = json.loads(await request.text() or "{}")
        if job is None or job.status in FINAL:
            return web.Response(text="ok")  # cancelled meanwhile: dropped, as RunPod does
        log.debug("reported", extra={"action": "plane.done", "backend_job_id": job.id})
        if body.get("status") == "IN_PROGRESS":
            output = body.get("output")
            job.progress = output if isinstance(output, dict) else None
            self.on_change(job.id)
        elif "error" in body:
            self._finish(job, "FAILED", error=body["error"])
        else:
            self._finish(job, "COMPLETED", output=body.get("output"))
        return web.Response(text="ok")

    async def _stop_signals(self, request: web.Request) -> web.Response:
        worker = self._seen(request.match_info["worker"])
        deadline = time.monotonic() + LONG_POLL_S
        while not worker.stop:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return web.Response(status=204)
            await self._wait(remaining)
        ids, worker.stop = sorted(worker.stop), set()
        return web.json_response({"jobsToStop": ids})

    async def _ping(self, request: web.Request) -> web.Response:
        self._seen(request.match_info["worker"])
        return web.Response(text="ok")

    # -- plumbing -------------------------------------------------------------------------

    def _may_take(self, worker: PlaneWorker) -> bool:
        """A busy worker (one holding a second job waits its turn) gets the job only when
        no idle worker is asking for one: better started now than held."""
        busy = {j.worker for j in self.jobs.values() if j.status == "IN_PROGRESS"}
        if worker.id not in busy:
            return True
        now = time.monotonic()
        return not any(
            w.id not in busy and now - w.last_seen <= 2 * LONG_POLL_S for w in self.workers.values()
        )

    def _seen(self, worker_id: str) -> PlaneWorker:
        worker = self.workers.setdefault(worker_id, PlaneWorker(worker_id))
        worker.last_seen = time.monotonic()
        return worker

    def _finish(self, job: PlaneJob, status: str, *, output: Any = None, error: Any = None) -> None:
        job.status, job.output, job.error = status, output, error
        self._touch()
        self.on_change(job.id)

    def _touch(self) -> None:
        # Wake every long poll: each holds the event of its moment, replaced here.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, seconds: float) -> None:
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), seconds)
