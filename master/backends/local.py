"""Local workers, for `stillhouse up`, docker-compose and tests: each runs our worker
under the runpod SDK's local API (`python -m worker --rp_serve_api`) and takes one job at
a time through `POST /runsync`. Either this backend starts them (a process that dies is
started again for the next job) or they already run elsewhere (compose's GPU service),
reached at the URLs given."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from master.backends.base import Phase, Poll, SubmitNotSent
from stillhouse.processes import die_with_parent
from stillhouse.schemas.worker_io import ErrorInfo, WorkerInput, WorkerOutput, parse_error

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 120


@dataclass
class _Slot:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    busy_with: str | None = None
    external_url: str | None = None  # a worker someone else runs

    @property
    def url(self) -> str:
        return self.external_url or f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class _Run:
    slot: _Slot
    task: asyncio.Task[dict[str, Any]]
    started: float = field(default_factory=time.monotonic)


class LocalBackend:
    """`count` worker processes on ports `first_port`, `first_port + 1`, …"""

    name = "local"

    def __init__(
        self,
        count: int,
        first_port: int,
        log_dir: Path,
        comfy_url: str,
        worker_urls: list[str] | None = None,
    ) -> None:
        if worker_urls:
            self._slots = [
                _Slot(0, log_dir / f"worker-{n}.log", external_url=url.rstrip("/"))
                for n, url in enumerate(worker_urls)
            ]
        else:
            self._slots = [_Slot(first_port + n, log_dir / f"worker-{n}.log") for n in range(count)]
        self.capacity: int | None = len(self._slots)
        self._comfy = urlsplit(comfy_url)
        self._runs: dict[str, _Run] = {}
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def submit(self, request: WorkerInput) -> str:
        slot = next((s for s in self._slots if s.busy_with is None), None)
        if slot is None:
            raise SubmitNotSent("every local worker is busy")
        job_id = f"local-{uuid.uuid4().hex}"
        # Taken before the (slow) start, so a second submit cannot pick a starting worker.
        slot.busy_with = job_id
        try:
            await self._ensure_started(slot)
        except BaseException:
            slot.busy_with = None
            raise
        body = {"input": request.model_dump(mode="json", by_alias=True)}
        task = asyncio.create_task(self._runsync(slot, body))
        self._runs[job_id] = _Run(slot, task)
        return job_id

    async def poll(self, backend_job_id: str) -> Poll:
        run = self._runs.get(backend_job_id)
        if run is None:
            return Poll(
                phase=Phase.LOST,
                error=ErrorInfo(
                    type="lost", message="the local worker lost the job", retryable=True
                ),
            )
        if not run.task.done():
            return Poll(phase=Phase.RUNNING)
        self._runs.pop(backend_job_id)
        run.slot.busy_with = None
        try:
            answer = run.task.result()
        except (aiohttp.ClientError, asyncio.CancelledError) as exc:
            return Poll(
                phase=Phase.FAILED,
                error=ErrorInfo(
                    type="worker_died",
                    message=f"the local worker stopped: {type(exc).__name__}",
                    retryable=True,
                ),
            )
        if answer.get("status") == "COMPLETED":
            return Poll(phase=Phase.COMPLETED, output=WorkerOutput.model_validate(answer["output"]))
        return Poll(phase=Phase.FAILED, error=parse_error(answer.get("error") or "failed"))

    async def cancel(self, backend_job_id: str) -> None:
        run = self._runs.pop(backend_job_id, None)
        if run is not None:
            run.task.cancel()  # the local API cannot stop a job; its answer is dropped
            run.slot.busy_with = None

    async def health(self) -> dict[str, Any]:
        return {
            "workers": {
                "alive": sum(s.alive() for s in self._slots),
                "busy": sum(s.busy_with is not None for s in self._slots),
            }
        }

    async def close(self) -> None:
        for run in self._runs.values():
            run.task.cancel()
        await self._session.close()
        for slot in self._slots:
            if slot.alive():
                assert slot.process is not None
                slot.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    slot.process.wait(timeout=20)

    async def _runsync(self, slot: _Slot, body: dict[str, Any]) -> dict[str, Any]:
        async with self._session.post(f"{slot.url}/runsync", json=body) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    def _env(self, slot: _Slot) -> dict[str, str]:
        """Each worker starts its own ComfyUI on the next port after the configured one."""
        env = dict(os.environ)
        index = self._slots.index(slot)
        if index:
            port = (self._comfy.port or 8188) + index
            netloc = f"{self._comfy.hostname or '127.0.0.1'}:{port}"
            env["STILLHOUSE_WORKER__COMFY_URL"] = urlunsplit(self._comfy._replace(netloc=netloc))
        return env

    async def _ensure_started(self, slot: _Slot) -> None:
        if slot.external_url is not None:
            if not await self._answers(slot):
                raise SubmitNotSent(f"the worker at {slot.url} does not answer")
            return
        if slot.alive():
            return
        slot.log_path.parent.mkdir(parents=True, exist_ok=True)
        with slot.log_path.open("ab") as sink:
            slot.process = subprocess.Popen(  # noqa: S603 - our own worker module
                [
                    sys.executable,
                    "-m",
                    "worker",
                    "--rp_serve_api",
                    "--rp_api_host",
                    "127.0.0.1",
                    "--rp_api_port",
                    str(slot.port),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self._env(slot),
                preexec_fn=die_with_parent(),  # started on the loop's (long-lived) thread
            )
        log.info("local worker starting", extra={"action": "local.start", "port": slot.port})
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if await self._answers(slot):
                return
            if not slot.alive():
                raise SubmitNotSent(f"local worker exited at start; see {slot.log_path}")
            await asyncio.sleep(0.2)
        raise SubmitNotSent(f"local worker on port {slot.port} did not start")

    async def _answers(self, slot: _Slot) -> bool:
        try:
            async with self._session.get(
                f"{slot.url}/docs", timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
