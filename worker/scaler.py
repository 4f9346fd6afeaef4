"""The runpod SDK's job loop, without its idle sleeps.

The SDK (runpod 1.12, `rp_scale.JobScaler`) takes jobs in one loop and starts them in
another, and both sleep: a fetched job waits up to 0.1 s before its handler starts (the
starting loop polls), a worker holding as many jobs as it may sleeps a whole second
before it looks again, and a concurrency that changes waits, in 1 s steps, until the
worker holds nothing. Measured with `bench/gpu_duty_cycle.py`: the worker took its jobs
in bursts and left the GPU idle ~0.5 s after each, a duty cycle of 0.88.

`SteadyScaler` keeps the SDK's fetching, handling, stop signals and shutdown and changes
only when things happen: a fixed concurrency (no resizing), a job's handler starts the
moment it is fetched, and a finished job wakes the fetching loop at once. Its run holds
what the worker keeps open from job to job (config `kept_while_running`). Holding two
jobs, the second one's prompt is queued on ComfyUI while the first one runs
(worker.handler._Turn), and the next job is fetched while the second one runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from runpod.http_client import ClientSession, TooManyRequests
from runpod.serverless.modules import rp_scale

RECHECK_S = 1.0  # how often idle loops notice a shutdown
TOO_MANY_REQUESTS_PAUSE_S = 5.0  # as the SDK does


class SteadyScaler(rp_scale.JobScaler):  # type: ignore[misc]
    """The SDK's JobScaler holding exactly `concurrency` jobs, without polling sleeps."""

    def __init__(self, config: dict[str, Any]) -> None:
        concurrency = int(config["concurrency"])
        super().__init__({**config, "concurrency_modifier": lambda _current: concurrency})
        self.current_concurrency = concurrency
        self.jobs_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=concurrency)
        self._slot_freed = asyncio.Event()
        # What the worker keeps open while the loop runs (its HTTP session: worker.sessions).
        self._kept: Callable[[], AbstractAsyncContextManager[None]] = config.get(
            "kept_while_running", contextlib.nullcontext
        )

    async def run(self) -> None:
        """The SDK's run, inside what the worker keeps open for it."""
        async with self._kept():
            await super().run()

    async def set_scale(self) -> None:
        """Fixed at `concurrency`: never resized (the SDK's resize waits for an empty
        worker)."""

    def held(self) -> int:
        """Jobs taken and not finished (the SDK counts a fetched job until it ends)."""
        return int(self.job_progress.get_job_count())

    async def get_jobs(self, session: ClientSession) -> None:
        """Fetch while fewer than `concurrency` jobs are held; when full, wait for one to
        finish instead of sleeping."""
        while self.is_alive():
            wanted = self.current_concurrency - self.held()
            if wanted <= 0:
                self._slot_freed.clear()
                if self.current_concurrency - self.held() <= 0:
                    await _wait(self._slot_freed, RECHECK_S)
                continue
            try:
                jobs = await asyncio.wait_for(
                    self.jobs_fetcher(session, wanted), timeout=self.jobs_fetcher_timeout
                )
            except TooManyRequests:
                await asyncio.sleep(TOO_MANY_REQUESTS_PAUSE_S)
                continue
            except TimeoutError:
                continue  # a long poll that got nothing
            except Exception as error:  # as the SDK: log, and keep the worker alive
                rp_scale.log.error(f"Failed to get job: {type(error).__name__}: {error}")
                await asyncio.sleep(RECHECK_S)
                continue
            for job in jobs or []:
                self.job_progress.add(job)
                await self.jobs_queue.put(job)

    async def run_jobs(self, session: ClientSession) -> None:
        """Start each job's handler the moment it is fetched; at shutdown, let the held
        jobs finish."""
        tasks: set[asyncio.Task[None]] = set()
        while self.is_alive() or not self.jobs_queue.empty():
            try:
                job = await asyncio.wait_for(self.jobs_queue.get(), timeout=RECHECK_S)
            except TimeoutError:
                continue
            task = asyncio.create_task(self.handle_job(session, job))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.jobs_tasks[job["id"]] = task
        await asyncio.gather(*tasks, return_exceptions=True)

    async def handle_job(self, session: ClientSession, job: dict[str, Any]) -> None:
        try:
            await super().handle_job(session, job)
        finally:
            self._slot_freed.set()  # the fetching loop may take the next job now


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)


def install() -> None:
    """Make the SDK's worker run SteadyScaler: `runpod.serverless.start` builds its
    scaler as `rp_scale.JobScaler(config)` (runpod 1.12, serverless/worker.py)."""
    rp_scale.JobScaler = SteadyScaler
