"""The RunPod serverless endpoint, through the runpod SDK's asyncio client.

The SDK's `run` posts only `{"input": …}`; submitting with a webhook and an execution
policy uses the same URL and headers with those fields added. Job state (output, error)
comes from the SDK's job fetch, the only route it offers to RunPod's `error` field.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import runpod
from runpod.endpoint.asyncio.asyncio_runner import Endpoint as AsyncioEndpoint
from runpod.endpoint.asyncio.asyncio_runner import Job as AsyncioJob

from master.backends.base import BackendUnavailable, Phase, Poll
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


class RunPodBackend:
    """Jobs on one RunPod endpoint."""

    name = "runpod"
    capacity: int | None = None

    def __init__(self, settings: RunPodSettings, job_timeout_s: float) -> None:
        assert settings.api_key is not None, "settings validation requires an API key"
        # The SDK reads its base URL from a module global when objects are created.
        runpod.endpoint_url_base = settings.base_url.rstrip("/")
        self._settings = settings
        self._timeout_ms = int(job_timeout_s * 1000) + 60_000
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30, sock_connect=10)
        )
        self._endpoint = AsyncioEndpoint(
            settings.endpoint_id, self._session, api_key=settings.api_key.get_secret_value()
        )
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
        try:
            async with self._session.post(
                self._endpoint.endpoint_url, headers=self._endpoint.headers, json=body
            ) as response:
                if response.status >= 500 or response.status == 429:
                    raise BackendUnavailable(f"RunPod answered {response.status} to run")
                response.raise_for_status()
                answer = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailable(f"RunPod unreachable: {type(exc).__name__}") from exc
        return str(answer["id"])

    async def poll(self, backend_job_id: str) -> Poll:
        job = AsyncioJob(
            self._settings.endpoint_id, backend_job_id, self._session, self._endpoint.headers
        )
        try:
            state = await job._fetch_job()
        except aiohttp.ContentTypeError as exc:
            raise BackendUnavailable("RunPod answered without JSON") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailable(f"RunPod unreachable: {type(exc).__name__}") from exc
        except KeyError:  # no "status": RunPod does not know the job (any more)
            return self._missing(backend_job_id)
        self._not_found.pop(backend_job_id, None)
        return _to_poll(state)

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

    async def cancel(self, backend_job_id: str) -> None:
        job = AsyncioJob(
            self._settings.endpoint_id, backend_job_id, self._session, self._endpoint.headers
        )
        try:
            await job.cancel()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailable(f"RunPod unreachable: {type(exc).__name__}") from exc

    async def health(self) -> dict[str, Any]:
        health: dict[str, Any] = await self._endpoint.health()
        return health

    async def close(self) -> None:
        await self._session.close()


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
