"""Wake-up hints: a counter per topic that whoever changes something bumps, and whoever
waits for it watches, so a master claims a new job the moment it is queued instead of at
its next idle poll. A hint only says "look now": the database stays the arbiter, and a
lost hint (memcached down or restarted) costs only the old polling interval.

In one process (`stillhouse up`) the counters live in memory; across processes, in
memcached, read every WATCH_S (a `get` on loopback takes a fraction of a millisecond).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Protocol

from stillhouse.config import MemcachedSettings

JOBS = "jobs"  # a job was queued (or handed back): masters, claim
WATCH_S = 0.005


class Hints(Protocol):
    """Bump and read a topic's counter."""

    def bump(self, topic: str) -> None:
        """Something changed."""

    def version(self, topic: str) -> int | None:
        """The counter now (None: unknown, e.g. memcached down)."""


class InProcessHints:
    """Counters for one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}

    def bump(self, topic: str) -> None:
        with self._lock:
            self._counters[topic] = self._counters.get(topic, 0) + 1

    def version(self, topic: str) -> int | None:
        return self._counters.get(topic, 0)


class MemcachedHints:
    """Counters in memcached, shared by every process; failures are silent (a hint)."""

    def __init__(self, settings: MemcachedSettings) -> None:
        from pymemcache.client.hash import HashClient

        self._prefix = settings.key_prefix + "hint:"
        self._client: Any = HashClient(
            settings.server_list(),
            use_pooling=True,
            default_noreply=False,
            connect_timeout=settings.connect_timeout_s,
            timeout=settings.timeout_s,
            retry_attempts=1,
            retry_timeout=1,
            dead_timeout=1,
            ignore_exc=True,  # a hint that does not arrive only costs the polling interval
        )

    def bump(self, topic: str) -> None:
        key = self._prefix + topic
        if self._client.incr(key, 1) is None:  # a first bump (or memcached restarted)
            self._client.add(key, "1", expire=0)

    def version(self, topic: str) -> int | None:
        value = self._client.get(self._prefix + topic)
        try:
            return int(value) if value is not None else 0
        except ValueError:
            return None


def make_hints(settings: MemcachedSettings) -> Hints:
    """Memcached when servers are configured, else in-process."""
    if settings.server_list():
        return MemcachedHints(settings)
    return InProcessHints()


async def changed(hints: Hints, topic: str, seen: int | None, timeout_s: float) -> int | None:
    """Wait until the topic's counter moves past `seen` or `timeout_s` passes; the counter
    then. Reads in a thread only when the hints live in memcached."""
    deadline = time.monotonic() + timeout_s
    local = isinstance(hints, InProcessHints)
    while True:
        now = hints.version(topic) if local else await asyncio.to_thread(hints.version, topic)
        if now is not None and now != seen:
            return now
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return now
        await asyncio.sleep(min(WATCH_S, remaining))
