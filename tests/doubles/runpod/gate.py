"""What stands in front of the hosted API (`/v2/{endpoint}/run|status|cancel|health`):
RunPod's gateway checks the API key, and tests plan HTTP faults and slow answers.

Order for each hosted request: it is recorded (`state.requests`), then any planned hang
waits, then the key is checked (401, plain text), then a planned fault answers, then an
unknown endpoint answers 404; only then does the double handle it. A planned fault
therefore never creates a job. A hung request is handled after its hang even when the
client gave up meanwhile (RunPod does not know the client left).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.doubles.runpod.state import EndpointState, HostedRequest

HOSTED_OPS = ("run", "status", "cancel", "health", "update_endpoint")
RUNPOD_JOB = web.RequestKey("runpod_job", str)  # the job a /run created, for the log

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class PlannedFault:
    status: int
    body: bytes
    content_type: str


def fault(status: int, body: Any = None, content_type: str = "application/json") -> PlannedFault:
    """The answer to give: `body` may be bytes, text, or anything JSON (dumped)."""
    if body is None:
        body = {"error": f"planned {status}"} if "json" in content_type else f"planned {status}"
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    return PlannedFault(status, data, content_type)


class HostedGate:
    """Auth, planned faults and hangs, and the request log, as an aiohttp middleware."""

    def __init__(self, state: EndpointState, endpoint_id: str, api_key: str | None) -> None:
        self.state = state
        self.endpoint_id = endpoint_id
        self.api_key = api_key
        self.faults: dict[str, deque[PlannedFault]] = defaultdict(deque)
        self.hangs: dict[str, deque[float]] = defaultdict(deque)

    def fail_next(self, op: str, planned: PlannedFault, times: int = 1) -> None:
        _check(op)
        self.faults[op].extend([planned] * times)

    def hang_next(self, op: str, seconds: float, times: int = 1) -> None:
        _check(op)
        self.hangs[op].extend([seconds] * times)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        op = request.match_info.route.name
        if op not in HOSTED_OPS:
            return await handler(request)
        record = HostedRequest(time.monotonic(), op, request.match_info.get("job"))
        self.state.requests.append(record)
        if self.hangs[op]:
            await request.read()  # the body arrived; the client may give up while we hang
            await asyncio.sleep(self.hangs[op].popleft())
        try:
            response = await self._answer(op, request, handler)
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        except Exception:
            record.status = 500  # what aiohttp answers for it
            raise
        record.job_id = record.job_id or request.get(RUNPOD_JOB)
        record.status = response.status
        return response

    async def _answer(self, op: str, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._authorized(request):
            # a gateway's answer: plain text, not JSON
            return web.Response(status=401, text="Unauthorized")
        if self.faults[op]:
            planned = self.faults[op].popleft()
            headers = {"Content-Type": planned.content_type}  # may carry a charset
            return web.Response(status=planned.status, body=planned.body, headers=headers)
        if request.match_info["endpoint"] != self.endpoint_id:
            return web.json_response({"error": "endpoint not found"}, status=404)
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        # The runpod SDK (Endpoint and AsyncioEndpoint, 1.12) sends "Bearer <key>".
        if self.api_key is None:
            return True
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"


def _check(op: str) -> None:
    if op not in HOSTED_OPS:
        raise ValueError(f"op must be one of {HOSTED_OPS}, not {op!r}")
