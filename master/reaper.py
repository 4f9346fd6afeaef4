"""Return expired leases to the queue, one master at a time (a memcached lock; without
memcached every master reaps and SKIP LOCKED keeps them apart), and publish queue depth
and the delivery backlog (every master publishes the same whole-queue figures: take their
max, not their sum)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import DBAPIError

from master.metrics import MasterMetrics
from stillhouse.hints import JOBS, Hints
from stillhouse.locks import LockService
from stillhouse.queue import GenerationQueue, SendQueue

log = logging.getLogger(__name__)
LOCK_KEY = "master:reaper"


async def reap_forever(
    queue: GenerationQueue,
    sends: SendQueue,
    locks: LockService,
    metrics: MasterMetrics,
    interval_s: float,
    wake: Hints | None = None,
) -> None:
    """Sweep every interval until cancelled; a database outage only skips a sweep, and
    an unexpected error is logged and counted, never the end of reaping."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            if await reap_once(queue, sends, locks, metrics, interval_s) and wake is not None:
                wake.bump(JOBS)  # jobs back in line: a master takes them now
            counts = await asyncio.to_thread(queue.depth)
            waiting, oldest_s = await asyncio.to_thread(sends.backlog)
        except DBAPIError:
            log.warning("database unavailable; reaping later", extra={"action": "reap.skip"})
            continue
        except Exception:
            metrics.loop_errors.labels("reap").inc()
            log.exception("reaping failed", extra={"action": "loop.error"})
            continue
        for status, count in counts.items():
            metrics.queue_depth.labels(status.value).set(count)
        metrics.delivery_backlog.set(waiting)
        metrics.delivery_oldest.set(oldest_s)


async def reap_once(
    queue: GenerationQueue,
    sends: SendQueue,
    locks: LockService,
    metrics: MasterMetrics,
    interval_s: float,
) -> int:
    """One sweep, if this master wins the lock; how many jobs went back in line."""
    lock = await asyncio.to_thread(locks.acquire, LOCK_KEY, interval_s * 2)
    if lock is None:
        return 0
    try:
        jobs = await asyncio.to_thread(queue.reap_expired)
        rows = await asyncio.to_thread(sends.reap_expired)
    finally:
        await asyncio.to_thread(locks.release, lock)
    if jobs.total or rows.total:
        metrics.reaped.inc(jobs.total)
        log.info(
            "reaped expired leases",
            extra={
                "action": "reap.done",
                "requeued": jobs.requeued,
                "failed": jobs.failed,
                "rows_requeued": rows.requeued,
                "rows_failed": rows.failed,
            },
        )
    return jobs.requeued
