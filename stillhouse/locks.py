"""Locks and rate-limit counters behind one small interface.

A lock here is an optimisation, never the arbiter: code under a lock must stay correct
without it, because the database's conditional updates and unique keys decide. So when
memcached is unreachable the memcached backend fails open (the lock is granted as
`degraded`, counters allow) and logs it, rather than stopping the system.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from stillhouse.config import MemcachedSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lock:
    """A held lock. `degraded` means memcached was unreachable and nothing was locked."""

    key: str
    token: str
    degraded: bool = False


@dataclass(frozen=True)
class RateLimit:
    """One counted hit: allowed or not, the count in this window, and when it resets."""

    allowed: bool
    count: int
    retry_after_s: float


class LockService(Protocol):
    """What callers need from a lock and counter backend."""

    def acquire(self, key: str, ttl_s: float) -> Lock | None:
        """Take the lock for `ttl_s`, or None if someone else holds it."""

    def release(self, lock: Lock) -> bool:
        """Drop the lock if it is still ours."""

    def extend(self, lock: Lock, ttl_s: float) -> bool:
        """Push the expiry out if the lock is still ours."""

    def hit(self, key: str, limit: int, window_s: float) -> RateLimit:
        """Count one event in a fixed window and say if it is within `limit`."""

    def close(self) -> None:
        """Drop connections (at shutdown)."""

    @property
    def degraded_total(self) -> int:
        """Calls that failed open because memcached was unreachable (a metric)."""


@contextmanager
def held(locks: LockService, key: str, ttl_s: float) -> Iterator[Lock | None]:
    """`with held(locks, "reaper", 30) as lock:` — lock is None when someone else has it."""
    lock = locks.acquire(key, ttl_s)
    try:
        yield lock
    finally:
        if lock is not None:
            locks.release(lock)


def _window(window_s: float, now: float) -> tuple[int, float]:
    index = int(now // window_s)
    return index, (index + 1) * window_s - now


class InProcessLocks:
    """Locks and counters for one process (the embedded `stillhouse up`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self._locks: dict[str, tuple[str, float]] = {}
        self._counters: dict[tuple[str, int], int] = {}

    def acquire(self, key: str, ttl_s: float) -> Lock | None:
        now = self._clock()
        with self._mutex:
            current = self._locks.get(key)
            if current is not None and current[1] > now:
                return None
            token = secrets.token_hex(8)
            self._locks[key] = (token, now + ttl_s)
            return Lock(key, token)

    def release(self, lock: Lock) -> bool:
        with self._mutex:
            if self._is_mine(lock):
                del self._locks[lock.key]
                return True
            return False

    def extend(self, lock: Lock, ttl_s: float) -> bool:
        with self._mutex:
            if self._is_mine(lock):
                self._locks[lock.key] = (lock.token, self._clock() + ttl_s)
                return True
            return False

    def hit(self, key: str, limit: int, window_s: float) -> RateLimit:
        index, reset = _window(window_s, time.time())
        with self._mutex:
            self._counters = {k: v for k, v in self._counters.items() if k[1] >= index}
            count = self._counters.get((key, index), 0) + 1
            self._counters[(key, index)] = count
        return RateLimit(count <= limit, count, 0.0 if count <= limit else reset)

    def close(self) -> None:
        pass

    @property
    def degraded_total(self) -> int:
        return 0  # nothing to be unreachable

    def _is_mine(self, lock: Lock) -> bool:
        current = self._locks.get(lock.key)
        return current is not None and current[0] == lock.token and current[1] > self._clock()


class MemcachedLocks:
    """Locks as `add` with a TTL and an owner token; release/extend by CAS, owner only."""

    def __init__(self, settings: MemcachedSettings) -> None:
        from pymemcache.client.hash import HashClient

        self._prefix = settings.key_prefix
        self._client: Any = HashClient(
            settings.server_list(),
            use_pooling=True,
            default_noreply=False,  # pymemcache's default noreply makes `add` always True
            connect_timeout=settings.connect_timeout_s,
            timeout=settings.timeout_s,
            retry_attempts=1,
            retry_timeout=1,
            dead_timeout=1,
        )
        self._last_warning = 0.0
        self._degraded = 0

    @property
    def degraded_total(self) -> int:
        return self._degraded

    def acquire(self, key: str, ttl_s: float) -> Lock | None:
        token = secrets.token_hex(8)
        added = self._call(self._client.add, self._key(key), token, expire=_ttl(ttl_s))
        if added is _DOWN:
            return Lock(key, token, degraded=True)
        if added:
            return Lock(key, token)
        # pymemcache answers a refused `add` without an error while it waits to retry a
        # server that failed: only then is the refusal not a holder's. Asking memcached
        # who holds the lock instead would race the holder's release and grant it twice.
        if self._failing(self._key(key)):
            self._warn(ConnectionError("memcached server marked failed"))
            return Lock(key, token, degraded=True)
        return None

    def release(self, lock: Lock) -> bool:
        # CAS with a negative expiry drops the item atomically, and only if it is still ours.
        return self._swap_if_mine(lock, expire=-1)

    def extend(self, lock: Lock, ttl_s: float) -> bool:
        return self._swap_if_mine(lock, expire=_ttl(ttl_s))

    def hit(self, key: str, limit: int, window_s: float) -> RateLimit:
        index, reset = _window(window_s, time.time())
        counter = self._key(f"rate:{key}:{index}")
        count = self._call(self._client.incr, counter, 1)
        if count is False:  # pymemcache's silent answer while a failed server waits
            count = _DOWN
        if count is None:
            added = self._call(self._client.add, counter, "1", expire=math.ceil(window_s) + 1)
            count = 1 if added is True else self._call(self._client.incr, counter, 1)
        if count is _DOWN or count is None:
            return RateLimit(True, 0, 0.0)
        count = int(count)
        return RateLimit(count <= limit, count, 0.0 if count <= limit else reset)

    def close(self) -> None:
        self._client.close()

    def _swap_if_mine(self, lock: Lock, expire: int) -> bool:
        if lock.degraded:
            return True
        found = self._call(self._client.gets, self._key(lock.key))
        if found is _DOWN:
            return True
        value, cas = found
        if value is None or value.decode() != lock.token:
            return False
        swapped = self._call(self._client.cas, self._key(lock.key), lock.token, cas, expire=expire)
        return swapped is _DOWN or bool(swapped)

    def _failing(self, full_key: str) -> bool:
        """Whether the client is skipping the server that owns this key (HashClient keeps
        failed servers in `_failed_clients` until its retry succeeds; no public API)."""
        node = self._client.hasher.get_node(full_key)
        if node is None:  # every server is marked dead
            return True
        return self._client.clients[node].server in self._client._failed_clients

    def _key(self, key: str) -> str:
        full = self._prefix + key
        if len(full) > 200 or any(c.isspace() or ord(c) < 33 for c in full):
            return self._prefix + "h:" + hashlib.sha256(key.encode()).hexdigest()
        return full

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (OSError, TimeoutError, ConnectionError) as exc:
            self._warn(exc)
        except Exception as exc:  # pymemcache's own errors have no shared base with OSError
            if type(exc).__module__.startswith("pymemcache"):
                self._warn(exc)
            else:
                raise
        return _DOWN

    def _warn(self, exc: BaseException) -> None:
        self._degraded += 1
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            log.warning(
                "memcached unreachable; locks and counters fail open",
                extra={"action": "locks.degraded", "error": repr(exc)},
            )


class _Down:
    """Sentinel: memcached did not answer."""


_DOWN = _Down()


def _ttl(ttl_s: float) -> int:
    return max(1, math.ceil(ttl_s))


def make_locks(settings: MemcachedSettings) -> LockService:
    """Memcached when servers are configured, else in-process."""
    if settings.server_list():
        return MemcachedLocks(settings)
    return InProcessLocks()
