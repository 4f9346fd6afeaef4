"""Locks and rate counters: the same contract in-process and on a real memcached."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stillhouse.config import MemcachedSettings
from stillhouse.locks import InProcessLocks, LockService, MemcachedLocks, held, make_locks
from tests.conftest import MemcachedServer
from tests.support import free_port, wait_until


@pytest.fixture(params=["in-process", "memcached"])
def locks(request: pytest.FixtureRequest) -> Iterator[LockService]:
    if request.param == "in-process":
        yield InProcessLocks()
        return
    server = MemcachedServer(free_port())
    server.start()
    service = MemcachedLocks(MemcachedSettings(servers=server.address))
    yield service
    service.close()
    server.stop()


def test_a_lock_has_one_holder_until_released(locks: LockService) -> None:
    first = locks.acquire("reaper", ttl_s=30)
    assert first is not None and not first.degraded
    assert locks.acquire("reaper", ttl_s=30) is None
    assert locks.acquire("other", ttl_s=30) is not None
    assert locks.release(first)
    assert locks.acquire("reaper", ttl_s=30) is not None


def test_only_the_owner_can_release_or_extend(locks: LockService) -> None:
    mine = locks.acquire("reaper", ttl_s=30)
    assert mine is not None
    from stillhouse.locks import Lock

    impostor = Lock(key="reaper", token="not-the-owner")
    assert not locks.release(impostor)
    assert not locks.extend(impostor, ttl_s=30)
    assert locks.acquire("reaper", ttl_s=30) is None
    assert locks.extend(mine, ttl_s=30)
    assert locks.release(mine)
    assert not locks.release(mine), "released twice"


def test_a_lock_expires_after_its_ttl(locks: LockService) -> None:
    stale = locks.acquire("short", ttl_s=1)
    assert stale is not None
    taken = wait_until(lambda: locks.acquire("short", ttl_s=30), timeout_s=5, what="expiry")
    assert not locks.release(stale), "an expired holder released the new holder's lock"
    assert locks.release(taken)


def test_held_releases_on_exit(locks: LockService) -> None:
    with held(locks, "job:1", ttl_s=30) as lock:
        assert lock is not None
        with held(locks, "job:1", ttl_s=30) as second:
            assert second is None
    assert locks.acquire("job:1", ttl_s=30) is not None


def test_rate_counter_allows_up_to_the_limit_per_window(locks: LockService) -> None:
    results = [locks.hit("user:42", limit=3, window_s=3600) for _ in range(5)]
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert [r.count for r in results] == [1, 2, 3, 4, 5]
    assert results[-1].retry_after_s > 0
    assert locks.hit("user:43", limit=3, window_s=3600).allowed


def test_odd_keys_are_safe_for_memcached(locks: LockService) -> None:
    key = "user name with spaces/" + "x" * 300
    lock = locks.acquire(key, ttl_s=30)
    assert lock is not None
    assert locks.acquire(key, ttl_s=30) is None
    assert locks.release(lock)


def test_memcached_down_fails_open_and_recovers(memcached: MemcachedServer) -> None:
    locks = make_locks(MemcachedSettings(servers=memcached.address))
    assert isinstance(locks, MemcachedLocks)
    memcached.stop()
    degraded = locks.acquire("reaper", ttl_s=30)
    assert degraded is not None and degraded.degraded
    assert locks.release(degraded)
    # Once the client has marked the server dead it answers a refused `add` without an
    # error: that must still fail open, never read as "someone else holds it".
    for n in range(5):
        lock = locks.acquire(f"interaction:{n}", ttl_s=30)
        assert lock is not None and lock.degraded, n
    assert locks.hit("user:1", limit=1, window_s=60).allowed
    memcached.start()
    recovered = wait_until(
        lambda: (lock := locks.acquire("reaper", ttl_s=30)) and not lock.degraded and lock,
        timeout_s=10,
        what="memcached locks to recover",
    )
    assert locks.acquire("reaper", ttl_s=30) is None
    assert locks.release(recovered)
    locks.close()


def test_no_servers_means_in_process_locks() -> None:
    assert isinstance(make_locks(MemcachedSettings(servers="")), InProcessLocks)
