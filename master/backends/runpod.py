"""The RunPod serverless endpoint over its HTTP API, with the runpod SDK's URLs and
headers. Each answer is classed by what it means for the job, not by how it failed:

- 401 / 403, and 404 on `run` or `health` (no such endpoint): the deployment is refused
  (`BackendRefused`): dispatch pauses and no job pays for it;
- 429, 5xx, timeouts, lost connections, a JSON answer without `status`: unavailable,
  retried with backoff (a submit refused at connect or with 429 never reached RunPod);
- 404 on `status`: RunPod does not know that job; only `lost_after_polls` such answers in
  a row make it lost;
- another 4xx on `run`: this job's request is refused (too large, malformed): it fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import runpod
from runpod.endpoint.asyncio.asyncio_runner import Endpoint as AsyncioEndpoint

from master.backends.base import (
    BackendRefused,
    BackendUnavailable,
    JobRejected,
    Phase,
    Poll,
    SubmitNotSent,
)
from stillhouse.config import RunPodSettings
from stillhouse.schemas.worker_io import ErrorInfo, WorkerInput, WorkerOutput, parse_error

_PHASES = {
    "IN_QUEUE": Phase.QUEUED,
    "IN_PROGRESS": Phase.RUNNING,
    "COMPLETED": Phase.COMPLETED,
    "FAILED": Phase.FAILED,
    "CANCELLED": Phase.FAILED,
    "TIMED_OUT": Phase.FAILED,
}
_REFUSED = {401: "unauthorized", 403: "forbidden"}
_FIX = {
    "unauthorized": "check STILLHOUSE_RUNPOD__API_KEY",
    "forbidden": "check the API key's permissions on this endpoint",
    "unknown_endpoint": "check STILLHOUSE_RUNPOD__ENDPOINT_ID",
}


class RunPodBackend:
    """Jobs on one RunPod endpoint."""

    name = "runpod"
    capacity: int | None = None

    def __init__(
        self, settings: RunPodSettings, job_timeout_s: float, owner: str = "master"
    ) -> None:
        assert settings.api_key is not None, "settings validation requires an API key"
        # The SDK reads its base URL from a module global when objects are created.
        runpod.endpoint_url_base = settings.base_url.rstrip("/")
        self._settings = settings
        self._timeout_ms = int(job_timeout_s * 1000) + 60_000
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30, sock_connect=10)
        )
        endpoint = AsyncioEndpoint(
            settings.endpoint_id, self._session, api_key=settings.api_key.get_secret_value()
        )
        self._url = endpoint.endpoint_url.rsplit("/", 1)[0]  # …/v2/{endpoint}
        # Who is asking, for RunPod's logs (and the test double's submit-window checks).
        self._headers = {**endpoint.headers, "User-Agent": f"stillhouse/0.1 ({owner})"}
        self._not_found: dict[str, int] = {}

    async def submit(self, request: WorkerInput) -> str:
        body: dict[str, Any] = {
            "input": request.model_dump(mode="json", by_alias=True),
            "policy": {"executionTimeout": self._timeout_ms},
        }
        if self._settings.webhook_url:
            token = self._settings.webhook_token
            query = f"?token={token.get_secret_value()}" if token else ""
            body["webhook"] = f"{self._settings.webhook_url}{query}"
        _status, answer = await self._call("POST", "run", body=body)
        if not isinstance(answer, dict) or not answer.get("id"):
            raise BackendUnavailable("RunPod accepted the job without an id")
        return str(answer["id"])

    async def poll(self, backend_job_id: str) -> Poll:
        status, state = await self._call("GET", "status", backend_job_id)
        if status == 404:
            return self._missing(backend_job_id)
        if not isinstance(state, dict) or "status" not in state:
            raise BackendUnavailable(f"RunPod answered {status} without a job status")
        self._not_found.pop(backend_job_id, None)
        return _to_poll(state)

    async def cancel(self, backend_job_id: str) -> None:
        await self._call("POST", "cancel", backend_job_id)  # 404: nothing left to stop

    async def health(self) -> dict[str, Any]:
        _status, answer = await self._call("GET", "health")
        if not isinstance(answer, dict):
            raise BackendUnavailable("RunPod's health answer is not JSON")
        return answer

    def watch(self, notify: Callable[[str], None]) -> None:
        """Nothing to watch here (RunPod's webhook reaches the master's listener)."""

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        await self._session.close()

    def _missing(self, backend_job_id: str) -> Poll:
        count = self._not_found.get(backend_job_id, 0) + 1
        self._not_found[backend_job_id] = count
        if count < self._settings.lost_after_polls:
            return Poll(phase=Phase.RUNNING)
        self._not_found.pop(backend_job_id, None)
        return Poll(
            phase=Phase.LOST,
            error=ErrorInfo(type="lost", message="the GPU service lost the job", retryable=True),
        )

    async def _call(
        self, method: str, op: str, job_id: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """One request; its status and JSON body (None when not JSON), or the error its
        answer means."""
        url = f"{self._url}/{op}" + (f"/{job_id}" if job_id else "")
        try:
            async with self._session.request(
                method, url, headers=self._headers, json=body
            ) as response:
                status, text = response.status, await response.text()
        except aiohttp.ClientConnectorError as exc:
            raise SubmitNotSent(f"RunPod unreachable: {type(exc).__name__}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailable(f"RunPod unreachable: {type(exc).__name__}") from exc
        cause = _REFUSED.get(status)
        if cause is None and status == 404 and op in ("run", "health"):
            cause = "unknown_endpoint"
        if cause is not None:
            raise BackendRefused(cause, f"RunPod answered {status} to {op}: {_FIX[cause]}")
        if status == 429:
            raise SubmitNotSent(f"RunPod answered 429 to {op}")
        if status >= 500 or (status >= 400 and status != 404 and op != "run"):
            raise BackendUnavailable(f"RunPod answered {status} to {op}")
        if status >= 400 and op == "run":
            raise JobRejected(f"the GPU service refused the request ({status}): {text[:200]}")
        try:
            return status, json.loads(text)
        except ValueError:
            if status == 404:
                return status, None
            raise BackendUnavailable(f"RunPod answered {status} to {op} without JSON") from None


def _to_poll(state: dict[str, Any]) -> Poll:
    status = str(state.get("status"))
    phase = _PHASES.get(status, Phase.RUNNING)
    if phase is Phase.COMPLETED:
        try:
            return Poll(phase=phase, output=WorkerOutput.model_validate(state.get("output")))
        except ValueError:
            return Poll(
                phase=Phase.FAILED,
                error=ErrorInfo(
                    type="bad_output",
                    message="the worker returned no usable images",
                    retryable=True,
                ),
            )
    if phase is Phase.FAILED:
        if status == "TIMED_OUT":
            error = ErrorInfo(
                type="timeout", message="the job ran out of time on the GPU", retryable=True
            )
        elif status == "CANCELLED":
            error = ErrorInfo(
                type="cancelled", message="the GPU service cancelled the job", retryable=True
            )
        else:
            error = parse_error(state.get("error") or "the GPU job failed")
        return Poll(phase=phase, error=error)
    progress = state.get("output") if isinstance(state.get("output"), dict) else None
    return Poll(phase=phase, progress=progress)
