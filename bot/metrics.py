"""A bot process's Prometheus metrics, on `STILLHOUSE_BOT__METRICS_PORT` when set."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest


class BotMetrics:
    """What a bot process counts, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "stillhouse_bot_deliveries",
            "send rows settled, by outcome (sent, retried, failed)",
            ["outcome"],
            registry=r,
        )
        self.loop_errors = Counter(
            "stillhouse_loop_errors",
            "unexpected errors a long-running loop survived",
            ["loop"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


async def serve_metrics(metrics: BotMetrics, host: str, port: int) -> web.AppRunner:
    """/metrics and /healthz on host:port."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes([web.get("/metrics", page), web.get("/healthz", healthz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
