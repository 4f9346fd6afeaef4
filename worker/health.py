"""The worker's own health, for an orchestrator's liveness probe and for Prometheus:
`GET /healthz` asks ComfyUI now (200, or 503 with why), `GET /metrics` says whether it
answered and how the worker's jobs ended. On `STILLHOUSE_WORKER__HEALTH_PORT` (0 = off),
in a thread of its own so a busy job never delays the answer."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import aiohttp
from aiohttp import web

from worker.comfy.supervisor import PROBE_TIMEOUT_S, Supervisor

OUTCOMES = Counter[str]()


def count(outcome: str) -> None:
    """One job ended: done, failed (retryable or not), cancelled."""
    OUTCOMES[outcome] += 1


async def comfy_answers(url: str) -> bool:
    """Whether ComfyUI answers `/system_stats` within PROBE_TIMEOUT_S."""
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{url}/system_stats") as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


def make_app(supervisor: Supervisor) -> web.Application:
    """/healthz and /metrics."""

    async def healthz(_request: web.Request) -> web.Response:
        if await comfy_answers(supervisor.url):
            return web.Response(text="ok")
        mode = "attached to" if supervisor.attached else "running"
        return web.Response(status=503, text=f"ComfyUI ({mode} {supervisor.url}) does not answer")

    async def metrics(_request: web.Request) -> web.Response:
        up = int(await comfy_answers(supervisor.url))
        lines = [
            "# HELP stillhouse_worker_comfy_up 1 when ComfyUI answered just now",
            "# TYPE stillhouse_worker_comfy_up gauge",
            f"stillhouse_worker_comfy_up {up}",
            "# HELP stillhouse_worker_comfy_starts_total ComfyUI processes this worker started",
            "# TYPE stillhouse_worker_comfy_starts_total counter",
            f"stillhouse_worker_comfy_starts_total {supervisor.starts}",
            "# HELP stillhouse_worker_jobs_total jobs this worker ended, by outcome",
            "# TYPE stillhouse_worker_jobs_total counter",
            *(f'stillhouse_worker_jobs_total{{outcome="{k}"}} {v}' for k, v in OUTCOMES.items()),
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/metrics", metrics)])
    return app


def serve_in_thread(supervisor: Supervisor, host: str, port: int) -> threading.Thread:
    """Start the listener on its own loop and thread; returns the (daemon) thread."""
    started = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(make_app(supervisor), access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, host, port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True, name="worker-health")
    thread.start()
    started.wait(10)
    return thread
