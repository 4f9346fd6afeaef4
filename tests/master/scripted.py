"""One dispatcher in the test's own event loop, on the real MariaDB queue, with a backend
the test scripts: jobs that finish at once, never finish, or calls that never answer."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Any

from master.backends.base import Phase, Poll
from master.dispatcher import Dispatcher
from master.metrics import MasterMetrics
from stillhouse.config import Settings, make_settings
from stillhouse.queue import GenerationQueue
from stillhouse.schemas.worker_io import ComfyInfo, WorkerInput, WorkerOutput
from stillhouse.storage import make_storage
from tests.support import IMAGE

DONE = WorkerOutput(images=[IMAGE], comfy=ComfyInfo(prompt_id="p"))


class Script(StrEnum):
    """What the backend does with every job."""

    COMPLETE = "complete"  # COMPLETED on the first look (unless held)
    NEVER_FINAL = "never_final"  # IN_PROGRESS for ever, as a job the backend lost track of
    HANG_SUBMIT = "hang_submit"  # the run call never answers
    HANG_POLL = "hang_poll"  # status calls never answer


class ScriptedBackend:
    """An in-process backend; records what the dispatcher asked of it."""

    name = "scripted"
    capacity: int | None = None

    def __init__(self, script: Script = Script.COMPLETE) -> None:
        self.script = script
        self.submitted: list[str] = []  # backend job ids, in order
        self.submit_calls = 0
        self.poll_calls = 0
        self.cancelled: list[str] = []
        self.held: set[str] = set()  # public ids that stay RUNNING until released
        self._public: dict[str, str] = {}
        self._ids = itertools.count(1)

    async def submit(self, request: WorkerInput) -> str:
        self.submit_calls += 1
        if self.script is Script.HANG_SUBMIT:
            await asyncio.Event().wait()
        backend_job_id = f"sc-{next(self._ids)}"
        self._public[backend_job_id] = request.job_id
        self.submitted.append(backend_job_id)
        return backend_job_id

    async def poll(self, backend_job_id: str) -> Poll:
        self.poll_calls += 1
        if self.script is Script.HANG_POLL:
            await asyncio.Event().wait()
        if self.script is Script.NEVER_FINAL or self._public[backend_job_id] in self.held:
            return Poll(phase=Phase.RUNNING)
        return Poll(phase=Phase.COMPLETED, output=DONE)

    async def cancel(self, backend_job_id: str) -> None:
        self.cancelled.append(backend_job_id)

    async def health(self) -> dict[str, Any]:
        return {}

    def watch(self, notify: Callable[[str], None]) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def scripted_settings(tmp: Path, database_url: str, **master: Any) -> Settings:
    """Fast loops: short leases, polls and backoffs; `master` overrides MasterSettings."""
    return make_settings(
        data_dir=tmp,
        database={"url": database_url},
        queue={"lease_s": 0.6, "backoff_base_s": 0.05, "backoff_max_s": 0.1},
        master={"claim_interval_s": 0.05, "poll_interval_s": 0.05, "drain_grace_s": 0.2, **master},
    )


def make_dispatcher(
    settings: Settings, queue: GenerationQueue, backend: ScriptedBackend
) -> Dispatcher:
    return Dispatcher(
        settings, queue, backend, make_storage(settings), MasterMetrics(), "master-test"
    )


async def run_until_idle(
    dispatcher: Dispatcher, timeout_s: float, *beside: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """run(until_idle=True), with `beside` coroutines alongside; fail if it never ends."""
    helpers = [asyncio.create_task(step()) for step in beside]
    run = asyncio.create_task(dispatcher.run(until_idle=True))
    try:
        await asyncio.wait({run}, timeout=timeout_s)
        if not run.done():
            held = sorted(f.job.public_id for f in dispatcher.in_flight.values())
            raise AssertionError(f"after {timeout_s}s the dispatcher still held {held}")
        run.result()
        await asyncio.gather(*helpers)
    finally:
        for task in (run, *helpers):
            task.cancel()
        await asyncio.gather(run, *helpers, return_exceptions=True)


def metric(dispatcher: Dispatcher, name: str) -> float:
    """A counter's value in the dispatcher's registry."""
    return dispatcher.metrics.registry.get_sample_value(name) or 0.0
