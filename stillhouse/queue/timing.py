"""Clock and retry backoff shared by both queues."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    rand: Callable[[], float] = random.random,
) -> timedelta:
    """Exponential backoff with equal jitter: half fixed, half random.

    The fixed half guarantees growth between attempts; the random half spreads the herd
    of jobs that failed together (one dead worker, one GPU outage) over time.
    """
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return timedelta(seconds=ceiling / 2 + rand() * ceiling / 2)
