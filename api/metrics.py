"""The API's Prometheus metrics on GET /metrics: requests by method, route and status, and
how long they took. A plain ASGI wrapper rather than an HTTP middleware class: it leaves
the event streams (text/event-stream) streaming; a stream's time is the whole stream."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ApiMetrics:
    """What the API counts, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stillhouse_api_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stillhouse_api_request_seconds",
            "request to the end of its answer, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


class _Measured:
    """Wraps the app: times each HTTP request and counts its status under its route
    template (`/v1/generations/{generation_id}`, never the id itself)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # an exception before the answer started

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self._metrics.requests.labels(scope["method"], template, str(status)).inc()
            self._metrics.latency.labels(template).observe(time.perf_counter() - began)


def add_metrics(app: FastAPI) -> ApiMetrics:
    """Count every request and serve GET /metrics."""
    metrics = ApiMetrics()

    def page() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", page, methods=["GET"], include_in_schema=False)
    app.add_middleware(_Measured, metrics=metrics)
    return metrics
