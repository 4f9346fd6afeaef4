"""Start the worker: `python -m worker` on RunPod, `stillhouse worker` locally.

The runpod SDK reads its own flags from the command line (`--rp_serve_api`,
`--rp_api_port`, `--test_input` ...) and the RUNPOD_* environment.
"""

from __future__ import annotations

import atexit
from typing import Any

import runpod
from runpod.serverless.modules.worker_state import JobsProgress

from stillhouse.config import Settings, make_settings
from stillhouse.logs import configure_logging
from stillhouse.storage import make_storage
from worker import policy
from worker.cleanup import Cleaner
from worker.comfy.supervisor import Supervisor
from worker.handler import WorkerContext, handle
from worker.health import serve_in_thread


def make_context(settings: Settings) -> WorkerContext:
    """Everything the handler needs, built once per process."""
    supervisor = Supervisor(settings.worker, settings.data_dir / "logs")
    atexit.register(supervisor.stop)
    return WorkerContext(
        settings=settings,
        supervisor=supervisor,
        storage=make_storage(settings),
        report_progress=runpod.serverless.progress_update,
        allowed_nodes=policy.allowed_nodes(settings.worker.allowed_nodes),
        cleaner=Cleaner.for_settings(settings.worker),
    )


def main(settings: Settings | None = None) -> None:
    """Serve jobs through the runpod SDK: one prompt on ComfyUI at a time (one GPU), the
    next job held and waiting its turn (`concurrency`), so it starts the moment the GPU
    is free and while the last one's images upload."""
    settings = settings or make_settings()
    configure_logging(settings)
    ctx = make_context(settings)
    ctx.supervisor.boot()
    if settings.worker.health_port:
        serve_in_thread(ctx.supervisor, settings.worker.health_host, settings.worker.health_port)

    held = JobsHeld(settings.worker.concurrency)

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        held.running += 1
        try:
            return await handle(job, ctx)
        finally:
            held.running -= 1

    runpod.serverless.start({"handler": handler, "concurrency_modifier": held.modifier})


class JobsHeld:
    """The runpod SDK's concurrency modifier, so a worker holds exactly `concurrency`
    jobs. Between taking a job and starting its handler the SDK counts it twice (in its
    queue and in progress), and when that count reaches the modifier it sleeps a second
    before asking again: the modifier adds back what is counted twice, so the SDK keeps
    asking, and takes the next job at once, while fewer than `concurrency` are held."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.running = 0  # handlers under way

    def modifier(self, _current: int) -> int:
        counted_twice = max(0, int(JobsProgress().get_job_count()) - self.running)
        return self.concurrency + counted_twice
