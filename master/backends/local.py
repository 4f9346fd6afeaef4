"""Local GPU workers, for `stillhouse up`, docker-compose and tests, at parity with RunPod:
each worker runs the real runpod worker loop against the master's own control plane
(master.backends.plane), so cancel, progress and completion work as on RunPod — a cancel
stops the handler, which interrupts ComfyUI, and the worker takes its next job only once
it stopped; progress flows to the master as the worker reports it; a finished job wakes
the master at once.

The backend starts `LOCAL_WORKERS` processes itself (started again when one dies, its job
failed as retryable), or uses workers that already run elsewhere and poll the plane
(compose's GPU service: RUNPOD_WEBHOOK_GET_JOB=http://master:8300/job-take/$ID, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from master.backends.base import Phase, Poll, SubmitNotSent
from master.backends.plane import ControlPlane
from stillhouse.processes import die_with_parent
from stillhouse.schemas.worker_io import ErrorInfo, WorkerInput, WorkerOutput, parse_error

log = logging.getLogger(__name__)
WATCH_S = 0.5
EXTERNAL_ALIVE_S = 10.0  # an external worker silent this long no longer counts


@dataclass
class _Worker:
    id: str
    log_path: Path
    comfy_url: str
    process: subprocess.Popen[bytes] | None = None


class LocalBackend:
    """`count` worker processes (or workers already running) on a local control plane."""

    name = "local"

    def __init__(
        self,
        count: int,
        plane_host: str,
        plane_port: int,
        log_dir: Path,
        comfy_url: str,
        jobs_per_worker: int = 1,
    ) -> None:
        self.plane = ControlPlane(plane_host, plane_port)
        self._per_worker = jobs_per_worker
        comfy = urlsplit(comfy_url)
        self._workers = [
            _Worker(f"local-{n}", log_dir / f"worker-{n}.log", _nth_comfy(comfy, n))
            for n in range(count)
        ]
        self._watcher: asyncio.Task[None] | None = None

    @property
    def capacity(self) -> int | None:
        """Jobs to hand over at once: what the workers (its own, or those heard from)
        hold at once each."""
        own = sum(1 for w in self._workers if w.process is not None)
        return (own or self.plane.live_workers(EXTERNAL_ALIVE_S)) * self._per_worker

    def watch(self, notify: Callable[[str], None]) -> None:
        self.plane.on_change = notify

    async def start(self) -> None:
        await self.plane.start()
        for worker in self._workers:
            self._spawn(worker)
        if self._workers:
            self._watcher = asyncio.create_task(self._restart_the_dead(), name="local-workers")
        log.info(
            "local control plane listening",
            extra={"action": "local.plane", "url": self.plane.url, "workers": len(self._workers)},
        )

    async def submit(self, request: WorkerInput) -> str:
        if not self.capacity:
            raise SubmitNotSent("no local worker is running")
        return self.plane.submit(request.model_dump(mode="json", by_alias=True))

    async def poll(self, backend_job_id: str) -> Poll:
        job = self.plane.jobs.get(backend_job_id)
        if job is None:
            error = ErrorInfo(type="lost", message="the local worker lost the job", retryable=True)
            return Poll(phase=Phase.LOST, error=error)
        if job.status == "IN_QUEUE":
            return Poll(phase=Phase.QUEUED)
        if job.status == "IN_PROGRESS":
            return Poll(phase=Phase.RUNNING, progress=job.progress)
        self.plane.forget(backend_job_id)
        if job.status == "COMPLETED":
            try:
                return Poll(phase=Phase.COMPLETED, output=WorkerOutput.model_validate(job.output))
            except ValueError:
                error = ErrorInfo(
                    type="bad_output",
                    message="the worker returned no usable images",
                    retryable=True,
                )
                return Poll(phase=Phase.FAILED, error=error)
        if job.status == "CANCELLED":
            error = ErrorInfo(type="cancelled", message="the job was cancelled", retryable=True)
            return Poll(phase=Phase.FAILED, error=error)
        return Poll(phase=Phase.FAILED, error=parse_error(job.error or "the GPU job failed"))

    async def cancel(self, backend_job_id: str) -> None:
        self.plane.cancel(backend_job_id)

    async def health(self) -> dict[str, Any]:
        running = sum(1 for j in self.plane.jobs.values() if j.status == "IN_PROGRESS")
        return {"workers": {"alive": self.capacity, "running": running}}

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for worker in self._workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(worker.process.wait, 20)
        await self.plane.close()

    def _spawn(self, worker: _Worker) -> None:
        worker.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.plane.worker_env(worker.id),
            "STILLHOUSE_WORKER__COMFY_URL": worker.comfy_url,
        }
        with worker.log_path.open("ab") as sink:
            worker.process = subprocess.Popen(
                [sys.executable, "-m", "worker"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent(),  # started on the loop's (long-lived) thread
            )
        log.info("local worker starting", extra={"action": "local.start", "worker": worker.id})

    async def _restart_the_dead(self) -> None:
        """A worker that exited fails the job it held (retryable) and starts again."""
        while True:
            await asyncio.sleep(WATCH_S)
            for worker in self._workers:
                if worker.process is None or worker.process.poll() is None:
                    continue
                code = worker.process.returncode
                log.warning(
                    "local worker exited (code %s); starting it again",
                    code,
                    extra={"action": "local.restart", "worker": worker.id},
                )
                self.plane.fail_worker(worker.id, f"the local worker stopped (exit code {code})")
                self._spawn(worker)


def _nth_comfy(comfy: SplitResult, n: int) -> str:
    """Each worker starts its own ComfyUI on the next port after the configured one."""
    if not n:
        return urlunsplit(comfy)
    netloc = f"{comfy.hostname or '127.0.0.1'}:{(comfy.port or 8188) + n}"
    return urlunsplit(comfy._replace(netloc=netloc))
