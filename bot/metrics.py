"""A bot process's Prometheus metrics, on `STILLHOUSE_BOT__METRICS_PORT` when set."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import aiohttp
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Interaction to answer: seconds for a preview, up to minutes behind a cold GPU.
ANSWER_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


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
        self.discord_responses = Counter(
            "stillhouse_discord_responses",
            "Discord's HTTP answers to this process, by status (429: rate limited)",
            ["status"],
            registry=r,
        )
        self.answer_time = Histogram(
            "stillhouse_bot_answer_seconds",
            "from the user's interaction to its answer shown (a result or a failure)",
            buckets=ANSWER_BUCKETS,
            registry=r,
        )

    def trace(self) -> aiohttp.TraceConfig:
        """For discord.py's HTTP client (`http_trace`): counts every answer by status,
        the 429s discord.py retries on its own among them."""

        async def answered(
            _session: aiohttp.ClientSession,
            _context: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            self.discord_responses.labels(str(params.response.status)).inc()

        config = aiohttp.TraceConfig()
        config.on_request_end.append(answered)
        return config

    def watch_gateway(self, latencies: Callable[[], list[tuple[int, float]]]) -> None:
        """Export each shard's gateway latency (heartbeat to ack) at every scrape."""
        self.registry.register(_GatewayLatency(latencies))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _GatewayLatency(Collector):
    def __init__(self, latencies: Callable[[], list[tuple[int, float]]]) -> None:
        self._latencies = latencies

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "stillhouse_bot_gateway_latency_seconds",
            "heartbeat to acknowledgement on each shard's gateway connection",
            labels=["shard"],
        )
        for shard, latency in self._latencies():
            if latency == latency and latency != float("inf"):  # none measured yet: NaN/inf
                family.add_metric([str(shard)], latency)
        yield family


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
