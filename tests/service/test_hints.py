"""Wake-up hints through a real memcached: a waiter wakes when another process's bump
lands, times out with the counter unchanged, and many waiters share one watcher."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from stillhouse import hints as hints_module
from stillhouse.config import MemcachedSettings
from stillhouse.hints import JOBS, MemcachedHints, changed
from tests.conftest import MemcachedServer


def test_a_bump_from_another_client_wakes_the_waiter(memcached: MemcachedServer) -> None:
    settings = MemcachedSettings(servers=memcached.address)
    waiting, bumping = MemcachedHints(settings), MemcachedHints(settings)

    async def scenario() -> tuple[int | None, int | None, float]:
        seen = await changed(waiting, JOBS, None, 1.0)  # the counter now
        started = time.monotonic()
        timer = threading.Timer(0.2, bumping.bump, (JOBS,))
        timer.start()
        after = await changed(waiting, JOBS, seen, 10.0)
        return seen, after, time.monotonic() - started

    seen, after, took = asyncio.run(scenario())
    waiting.close()
    bumping.close()
    assert seen == 0 and after == 1
    assert took < 2.0, "woken by the bump, not at the 10 s timeout"


def test_a_bump_in_the_same_process_wakes_its_waiter_without_reading_memcached(
    memcached: MemcachedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watcher reads memcached only every 5 s here: a wake within a second is the bump's.
    monkeypatch.setattr(hints_module, "HOT_WATCH_S", 5.0)
    monkeypatch.setattr(hints_module, "WATCH_S", 5.0)
    hints = MemcachedHints(MemcachedSettings(servers=memcached.address))

    async def scenario() -> tuple[int | None, int | None, float]:
        seen = await changed(hints, JOBS, None, 1.0)  # the watcher's first read
        started = time.monotonic()
        asyncio.get_running_loop().call_later(0.1, hints.bump, JOBS)
        after = await changed(hints, JOBS, seen, 10.0)
        return seen, after, time.monotonic() - started

    seen, after, took = asyncio.run(scenario())
    hints.close()
    assert seen == 0 and after == 1
    assert took < 1.0, f"woken after {took:.2f} s: by the watcher's next read, not the bump"


def test_an_unchanged_counter_waits_out_the_timeout(memcached: MemcachedServer) -> None:
    hints = MemcachedHints(MemcachedSettings(servers=memcached.address))

    async def scenario() -> tuple[int | None, float]:
        seen = await changed(hints, JOBS, None, 1.0)
        started = time.monotonic()
        return await changed(hints, JOBS, seen, 0.3), time.monotonic() - started

    value, took = asyncio.run(scenario())
    hints.close()
    assert value == 0 and 0.3 <= took < 2.0


def test_many_waiters_share_one_watcher_thread(memcached: MemcachedServer) -> None:
    hints = MemcachedHints(MemcachedSettings(servers=memcached.address))
    before = threading.active_count()

    async def scenario() -> list[int | None]:
        seen = await changed(hints, JOBS, None, 1.0)
        waits = [changed(hints, JOBS, seen, 10.0) for _ in range(50)]
        threading.Timer(0.2, hints.bump, (JOBS,)).start()
        return await asyncio.gather(*waits)

    assert asyncio.run(scenario()) == [1] * 50
    assert hints.watcher(JOBS) is hints.watcher(JOBS)
    assert threading.active_count() <= before + 2  # the watcher (and a finished timer)
    hints.close()


def test_the_watcher_looks_often_while_hints_flow_and_less_once_still() -> None:
    from stillhouse.hints import (
        HOT_S,
        HOT_WATCH_S,
        UNREACHABLE_RETRY_S,
        WATCH_S,
        _interval,
    )

    assert _interval(True, 0.0) == HOT_WATCH_S
    assert _interval(True, HOT_S - 1) == HOT_WATCH_S
    assert _interval(True, HOT_S + 1) == WATCH_S
    assert _interval(False, 0.0) == UNREACHABLE_RETRY_S
    assert HOT_WATCH_S < WATCH_S
