"""Prometheus metrics and the master's small HTTP listener: /metrics, /healthz and the
RunPod webhook (which only wakes the job's follower; the status it reads decides)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class MasterMetrics:
    """Everything a master counts, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.claimed = Counter("stillhouse_jobs_claimed", "jobs claimed", registry=r)
        self.succeeded = Counter("stillhouse_jobs_succeeded", "jobs that made images", registry=r)
        self.gpu_seconds = Counter(
            "stillhouse_gpu_seconds",
            "ComfyUI execution seconds of succeeded jobs (the worker's timings)",
            registry=r,
        )
        self.failed = Counter("stillhouse_jobs_failed", "jobs failed for good", registry=r)
        self.retried = Counter("stillhouse_jobs_retried", "jobs sent back to retry", registry=r)
        self.cancelled = Counter("stillhouse_jobs_cancelled", "jobs cancelled", registry=r)
        self.overdue = Counter(
            "stillhouse_jobs_overdue", "jobs given up on at their deadline", registry=r
        )
        self.lease_lost = Counter("stillhouse_leases_lost", "jobs this master lost", registry=r)
        self.reaped = Counter("stillhouse_leases_reaped", "expired leases returned", registry=r)
        self.adopted = Counter(
            "stillhouse_jobs_adopted", "backend jobs taken over from a vanished holder", registry=r
        )
        self.lost_submits = Counter(
            "stillhouse_submits_unknown",
            "submits whose backend id was never stored (a holder died in the submit window, "
            "or the answer was lost): each may have run on a GPU as well",
            registry=r,
        )
        self.paused = Gauge(
            "stillhouse_dispatch_paused",
            "1 while the backend refuses this deployment (cause: unauthorized, forbidden, "
            "unknown_endpoint)",
            ["cause"],
            registry=r,
        )
        self.loop_errors = Counter(
            "stillhouse_loop_errors",
            "unexpected errors a long-running loop survived",
            ["loop"],
            registry=r,
        )
        self.in_flight = Gauge("stillhouse_jobs_in_flight", "jobs this master holds", registry=r)
        self.queue_depth = Gauge("stillhouse_queue_depth", "jobs waiting", ["status"], registry=r)
        self.delivery_backlog = Gauge(
            "stillhouse_delivery_backlog", "send rows waiting for a bot", registry=r
        )
        self.delivery_oldest = Gauge(
            "stillhouse_delivery_oldest_seconds",
            "how long the oldest send row waiting for a bot has waited",
            registry=r,
        )
        self.worker_errors = Counter(
            "stillhouse_worker_errors",
            "GPU tries that ended in an error, by its type (what the worker or backend said)",
            ["type"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "stillhouse_queue_wait_seconds", "enqueue to claim", buckets=WAIT_BUCKETS, registry=r
        )
        self.backend_time = Histogram(
            "stillhouse_backend_seconds",
            "claim to backend outcome",
            buckets=WAIT_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


def make_app(
    metrics: MasterMetrics,
    notify: Callable[[str], None],
    webhook_token: str | None,
    problem: Callable[[], str | None] = lambda: None,
) -> web.Application:
    """The listener's routes; /healthz answers 503 with the reason while `problem` says
    something is wrong (dispatch paused by the backend's refusal)."""

    async def metrics_page(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        wrong = problem()
        return web.Response(text=wrong or "ok", status=503 if wrong else 200)

    async def runpod_webhook(request: web.Request) -> web.Response:
        given = request.query.get("token", "")
        if webhook_token and not hmac.compare_digest(given, webhook_token):
            return web.Response(status=403)
        body = await request.json()
        if isinstance(body, dict) and body.get("id"):
            notify(str(body["id"]))
        return web.Response(text="ok")

    app = web.Application(client_max_size=2**20)
    app.add_routes(
        [
            web.get("/metrics", metrics_page),
            web.get("/healthz", healthz),
            web.post("/webhooks/runpod", runpod_webhook),
        ]
    )
    return app
