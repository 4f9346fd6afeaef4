"""`stillhouse scale workers`: the RunPod endpoint's worker counts, changed through
RunPod's REST API (PATCH /v1/endpoints/{id} with workersMin and workersMax)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from stillhouse.config import RunPodSettings, env_name
from stillhouse.errors import SettingsError, StillhouseError

TIMEOUT = aiohttp.ClientTimeout(total=30)


class ScalingRefused(StillhouseError):
    """RunPod did not change the endpoint; the message says why, in words."""


@dataclass(frozen=True)
class WorkerCounts:
    """The endpoint's worker bounds as RunPod now has them."""

    endpoint_id: str
    minimum: int
    maximum: int


async def set_worker_counts(settings: RunPodSettings, minimum: int, maximum: int) -> WorkerCounts:
    """Ask RunPod to keep between `minimum` and `maximum` workers on the endpoint."""
    if not settings.endpoint_id or settings.api_key is None:
        raise SettingsError(
            [
                f"{env_name('runpod', 'endpoint_id')} and {env_name('runpod', 'api_key')}: "
                "both needed to scale the endpoint"
            ]
        )
    if not 0 <= minimum <= maximum:
        raise ScalingRefused(f"--min {minimum} must be between 0 and --max {maximum}")
    url = f"{settings.rest_url.rstrip('/')}/endpoints/{settings.endpoint_id}"
    headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
    body = {"workersMin": minimum, "workersMax": maximum}
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.patch(url, json=body, headers=headers) as answer,
        ):
            status, text = answer.status, await answer.text()
            data = await answer.json(content_type=None) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ScalingRefused(f"RunPod could not be reached: {type(exc).__name__}") from exc
    if status in (401, 403):
        raise ScalingRefused(f"RunPod refused the API key ({status})")
    if status == 404:
        raise ScalingRefused(f"RunPod has no endpoint {settings.endpoint_id!r}")
    if status != 200 or not isinstance(data, dict):
        raise ScalingRefused(f"RunPod answered {status}: {text[:200]}")
    return WorkerCounts(
        endpoint_id=str(data.get("id", settings.endpoint_id)),
        minimum=int(data["workersMin"]),
        maximum=int(data["workersMax"]),
    )


def main(settings: RunPodSettings, minimum: int, maximum: int) -> int:
    """Entry point: say what RunPod now has, or why it refused."""
    try:
        counts = asyncio.run(set_worker_counts(settings, minimum, maximum))
    except ScalingRefused as exc:
        print(f"Not changed: {exc}.")
        return 1
    print(
        f"RunPod endpoint {counts.endpoint_id} now keeps {counts.minimum} to "
        f"{counts.maximum} workers."
    )
    return 0
