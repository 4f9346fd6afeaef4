"""The API's admission under concurrency: 50 simultaneous POSTs of one caller are
admitted exactly up to the unfinished cap, and 50 retries with one Idempotency-Key make
one request (each backend in turn)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi.testclient import TestClient

from stillhouse.schemas.states import JobStatus
from stillhouse.services import Services

CALLERS = 50


def fire(client: TestClient, headers: list[dict[str, str]]) -> list[httpx.Response]:
    start = threading.Barrier(len(headers))

    def one(extra: dict[str, str]) -> httpx.Response:
        start.wait()
        return client.post("/v1/generations", json={"prompt": "a lighthouse"}, headers=extra)

    with ThreadPoolExecutor(len(headers)) as pool:
        return list(pool.map(one, headers))


def test_simultaneous_posts_of_one_caller_are_admitted_up_to_the_cap(
    client: TestClient, api_services: Services
) -> None:
    cap = api_services.settings.intake.max_active_jobs
    answers = fire(client, [{} for _ in range(CALLERS)])
    assert Counter(r.status_code for r in answers) == Counter({202: cap, 429: CALLERS - cap})
    for refused in (r for r in answers if r.status_code == 429):
        # No Retry-After: when one of the caller's own requests ends is not known.
        assert refused.json() == {"detail": refused.json()["detail"]}
        assert f"the limit is {cap}" in refused.json()["detail"]
    mine = {r.json()["id"] for r in answers if r.status_code == 202}
    assert len(mine) == cap


def test_simultaneous_retries_with_one_idempotency_key_make_one_request(
    client: TestClient, api_services: Services
) -> None:
    answers = fire(client, [{"Idempotency-Key": "retry-me"} for _ in range(CALLERS)])
    assert {r.status_code for r in answers} == {202}
    assert len({r.json()["id"] for r in answers}) == 1
    assert api_services.queue.depth()[JobStatus.QUEUED] == 1
