"""`stillhouse_locks_degraded_total` for any process that holds a LockService and a
Prometheus registry (bots, masters): calls that failed open while memcached was away."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from stillhouse.locks import LockService


class DegradedLocks(Collector):
    """Reads the lock service's own count at each scrape."""

    def __init__(self, locks: LockService) -> None:
        self._locks = locks

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "stillhouse_locks_degraded",
            "lock and counter calls that failed open: memcached unreachable",
            value=self._locks.degraded_total,
        )


def count_degraded_locks(registry: CollectorRegistry, locks: LockService) -> None:
    """Export the lock service's failures in `registry`."""
    registry.register(DegradedLocks(locks))
