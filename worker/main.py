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
from worker import policy
from worker.comfy.supervisor import Supervisor
from worker.handler import WorkerContext, handle


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
    )


def main(settings: Settings | None = None) -> None:
    """Serve jobs through the runpod SDK, one at a time (one ComfyUI, one GPU)."""
    settings = settings or make_settings()
    configure_logging(settings)
    ctx = make_context(settings)
    ctx.supervisor.boot()

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        return await handle(job, ctx)

    runpod.serverless.start({"handler": handler, "concurrency_modifier": lambda _current: 1})
