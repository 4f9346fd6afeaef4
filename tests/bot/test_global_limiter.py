"""Discord's global limit holds for all bot processes together: they share one counter in
memcached, so no second ever sees more requests than the configured rate."""

from __future__ import annotations

import asyncio
import threading
import time

from bot.limiter import GlobalLimiter
from stillhouse.config import MemcachedSettings
from stillhouse.locks import MemcachedLocks
from tests.conftest import MemcachedServer

RATE = 45
SENDERS = 4
RUN_S = 2.5


def test_four_processes_together_stay_under_the_global_rate(memcached: MemcachedServer) -> None:
    stamps: list[float] = []
    guard = threading.Lock()

    def sender() -> None:  # one bot process: its own memcached client and event loop
        locks = MemcachedLocks(MemcachedSettings(servers=memcached.address))
        limiter = GlobalLimiter(locks, RATE)

        async def send_all() -> None:
            stop_at = time.monotonic() + RUN_S
            while time.monotonic() < stop_at:
                await limiter.acquire()
                with guard:
                    stamps.append(time.monotonic())

        try:
            asyncio.run(send_all())
        finally:
            locks.close()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    stamps.sort()
    busiest = max(sum(1 for t in stamps[i:] if t < start + 1.0) for i, start in enumerate(stamps))
    assert busiest <= RATE, f"{busiest} requests in one second"
    assert len(stamps) >= RATE * (RUN_S - 1) * 0.6, f"only {len(stamps)} requests went out"
