"""Simulated GPUs inside the double: a pool of `count` slots, each job held for
`service_s` from its (wall-clock) start, so a restarted double finishes a job it had
started at the same moment the first one would have. Cancelling a running job frees its
slot at once (the simulated GPU stops)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.doubles.runpod.state import EndpointState, Fate, Job

WORKER = "simulated"  # the `worker` of every job the pool takes

Finisher = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class SimulatedWorkers:
    """A pool of `count` workers inside the double, each job taking `service_s`, each
    answering `output` (the worker's output contract) — no worker processes."""

    count: int
    service_s: float
    output: dict[str, Any]


class SimulatedPool:
    """Takes queued jobs while a slot is free; `pump()` after anything that may free one
    or queue one."""

    def __init__(
        self,
        spec: SimulatedWorkers,
        state: EndpointState,
        finish: Finisher,
        time_out: Callable[[str], None],
    ) -> None:
        self.spec = spec
        self.state = state
        self._finish = finish  # (job, status, **result) -> state change, wake-up, webhook
        self._time_out = time_out
        self.running: dict[str, asyncio.Task[None]] = {}

    def pump(self) -> None:
        while len(self.running) < self.spec.count:
            job = self.state.take_next(WORKER)
            if job is None:
                return
            self.resume(job)

    def resume(self, job: Job) -> None:
        """Run a job already taken (just now, or before a restart)."""
        self.running[job.id] = asyncio.get_running_loop().create_task(self._serve(job))
        if job.fate is Fate.TIME_OUT:
            asyncio.get_running_loop().call_later(
                self.state.time_out_after_s, self._time_out, job.id
            )

    def stop(self, job_id: str) -> None:
        """The job was cancelled (or timed out): its GPU is free again."""
        task = self.running.pop(job_id, None)
        if task is not None:
            task.cancel()
            self.pump()

    def close(self) -> None:
        for task in self.running.values():
            task.cancel()
        self.running.clear()

    async def _serve(self, job: Job) -> None:
        assert job.started_wall is not None
        await asyncio.sleep(max(0.0, job.started_wall + self.spec.service_s - time.time()))
        self.running.pop(job.id, None)
        self.pump()  # the slot is free before the webhook goes out, as on RunPod
        if job.status != "IN_PROGRESS" or job.forgotten:
            return  # timed out or lost meanwhile
        if job.fate is Fate.FAIL:
            await self._finish(job, "FAILED", error="handler: CUDA error: an illegal memory access")
            return
        output = dict(self.spec.output)
        output["images"] = [dict(i) for i in output.get("images", [])]
        await self._finish(job, "COMPLETED", output=output)
