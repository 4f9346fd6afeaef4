"""A user's limits hold under concurrency: 50 requests of one user at once are admitted
exactly up to the limit, on MariaDB and on SQLite (the `services` fixture runs both)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from stillhouse.intake import Refusal
from stillhouse.services import Services
from tests.bot.test_intake import GUILD, request, requester

CALLERS = 50


def fire(services: Services, user_id: int = 42) -> Counter[str]:
    """CALLERS requests of one user released together; how each ended."""
    bound = services.intake.prepare(request(), GUILD)
    start = threading.Barrier(CALLERS)

    def one(n: int) -> str:
        who = requester(interaction_id=user_id * 1000 + n, user_id=user_id)
        start.wait()
        try:
            services.intake.submit(bound, who)
        except Refusal as exc:
            return f"refused: {exc.kind}"
        return "admitted"

    with ThreadPoolExecutor(CALLERS) as pool:
        return Counter(pool.map(one, range(CALLERS)))


def limited(services: Services, **limits: int) -> Services:
    intake = services.intake.settings.model_copy(update=limits)
    services.intake.settings = intake
    return services


def test_concurrent_requests_are_admitted_up_to_the_unfinished_cap(services: Services) -> None:
    outcomes = fire(limited(services, per_minute=1000, max_active_jobs=3))
    assert outcomes == Counter({"admitted": 3, "refused: limited": CALLERS - 3})
    assert services.insights.unfinished_count(42) == 3


def test_concurrent_requests_are_admitted_up_to_the_per_minute_rate(services: Services) -> None:
    outcomes = fire(limited(services, per_minute=7, max_active_jobs=1000))
    assert outcomes == Counter({"admitted": 7, "refused: limited": CALLERS - 7})


@pytest.mark.parametrize("own_quota", [False, True])
def test_concurrent_requests_are_admitted_up_to_the_daily_quota(
    services: Services, own_quota: bool
) -> None:
    if own_quota:
        services.moderation.set_quota(42, 4, set_by=1)
    else:
        limited(services, daily_quota=4)
    outcomes = fire(limited(services, per_minute=1000, max_active_jobs=1000))
    assert outcomes == Counter({"admitted": 4, "refused: limited": CALLERS - 4})


def test_one_users_burst_does_not_spend_anothers_limit(services: Services) -> None:
    limited(services, per_minute=1000, max_active_jobs=3)
    fire(services, user_id=42)
    assert fire(services, user_id=43)["admitted"] == 3
