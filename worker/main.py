"""Start the worker: `python -m worker` on RunPod, `stillhouse worker` locally.

The runpod SDK reads its own flags from the command line (`--rp_serve_api`,
`--rp_api_port`, `--test_input` ...) and the RUNPOD_* environment.
"""

from __future__ import annotations

import atexit
from typing import Any

import runpod

from stillhouse.config import Settings, make_settings
from stillhouse.logs import configure_logging
from stillhouse.storage import make_storage
from worker import policy, scaler
from worker.cleanup import Cleaner
from worker.comfy.supervisor import Supervisor
from worker.handler import WorkerContext, handle
from worker.health import serve_in_thread
from worker.progress import ProgressSender


def make_context(settings: Settings) -> WorkerContext:
    """Everything the handler needs, built once per process."""
    supervisor = Supervisor(settings.worker, settings.data_dir / "logs")
    atexit.register(supervisor.stop)
    return WorkerContext(
        settings=settings,
        supervisor=supervisor,
        storage=make_storage(settings),
        report_progress=ProgressSender(),
        allowed_nodes=policy.allowed_nodes(settings.worker.allowed_nodes),
        cleaner=Cleaner.for_settings(settings.worker),
    )


def main(settings: Settings | None = None) -> None:
    """Serve jobs through the runpod SDK's loop (worker.scaler): one prompt running on
    ComfyUI (one GPU), the next job's prompt queued behind it (`concurrency` 2), so the
    GPU goes from one to the next while the worker uploads and fetches."""
    settings = settings or make_settings()
    configure_logging(settings)
    ctx = make_context(settings)
    ctx.supervisor.boot()
    if settings.worker.health_port:
        serve_in_thread(ctx.supervisor, settings.worker.health_host, settings.worker.health_port)

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        return await handle(job, ctx)

    scaler.install()
    runpod.serverless.start(
        {
            "handler": handler,
            "concurrency": settings.worker.concurrency,
            "kept_while_running": ctx.sessions.kept,  # one HTTP session for every job
        }
    )
