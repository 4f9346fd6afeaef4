"""Build a real worker (settings, supervisor, storage) pointed at the ComfyUI double."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stillhouse.config import Settings, StorageSettings, WorkerSettings, make_settings
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.worker_io import InputImage, OutputTarget, WorkerInput
from tests.support import free_port
from tests.worker.comfy_double import double_command
from worker.handler import WorkerContext, handle
from worker.main import make_context

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfy"


def captured(name: str) -> dict[str, Any]:
    """A captured graph as a plain dict."""
    return json.loads((CAPTURES / "workflows" / f"{name}.json").read_text())


@dataclass
class Worker:
    """A worker process's innards, driven job by job."""

    settings: Settings
    ctx: WorkerContext
    progress: list[dict[str, Any]] = field(default_factory=list)

    def run(
        self,
        graph: dict[str, Any],
        *,
        job_id: str = "job1",
        timeout_s: float = 60,
        inputs: list[InputImage] | None = None,
    ) -> dict[str, Any]:
        return asyncio.run(self.run_async(graph, job_id=job_id, timeout_s=timeout_s, inputs=inputs))

    async def run_async(
        self,
        graph: dict[str, Any],
        *,
        job_id: str = "job1",
        timeout_s: float = 60,
        inputs: list[InputImage] | None = None,
    ) -> dict[str, Any]:
        request = WorkerInput(
            job_id=job_id,
            workflow=ComfyGraph.model_validate(graph),
            inputs=inputs or [],
            output=OutputTarget(bucket=self.ctx.storage.bucket, prefix="results/"),
            timeout_s=timeout_s,
        )
        job = {"id": f"rp-{job_id}", "input": request.model_dump(mode="json", by_alias=True)}
        return await handle(job, self.ctx)

    def stop(self) -> None:
        self.ctx.supervisor.stop()


def make_worker(
    tmp_path: Path,
    storage: StorageSettings,
    *switches: str,
    attach_url: str | None = None,
    **worker_settings: Any,
) -> Worker:
    """A worker whose supervisor starts the double with `switches` (or attaches)."""
    port = free_port()
    url = attach_url or f"http://127.0.0.1:{port}"
    options: dict[str, Any] = {
        "comfy_url": url,
        "comfy_command": "" if attach_url else double_command(port, *switches),
        "startup_timeout_s": 30,
        "ws_inactivity_s": 5,
        "poll_interval_s": 0.05,
        "allowed_input_hosts": "127.0.0.1",
        "progress_interval_s": 0,
        **worker_settings,
    }
    settings = make_settings(data_dir=tmp_path, storage=storage, worker=WorkerSettings(**options))
    ctx = make_context(settings)
    worker = Worker(settings, ctx)
    ctx.report_progress = lambda _job, update: worker.progress.append(update)
    return worker
