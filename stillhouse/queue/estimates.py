"""How long a queued job will wait, from how long recent jobs really held a worker.

Counting jobs finished in a window alone says an idle queue is slow: one sub-second job in
the last 10 minutes reads as "600 s a job". The time each recent job held its worker
(dispatched to finished) does not have that flaw; the finish rate still helps when many
workers share the queue. No recent measurement, no estimate: nothing beats a wild guess.

Every acceptance asks: the pace is read from the last SAMPLE successes (never by counting
a busy window's thousands of finished jobs), at most once per PACE_TTL_S per process, since
a wait told to the user is a rough figure and the pace changes slowly.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from stillhouse.queue.statements import JOBS
from stillhouse.schemas.states import ACTIVE_JOB_STATES, JobStatus

_C = JOBS.c
SAMPLE = 50  # recent successes measured: enough for a steady median, a cheap query
PACE_TTL_S = 5.0


@dataclass(frozen=True)
class Pace:
    """How the queue moves now: the median time a recent job held its worker, how many
    jobs are held at once, and the rate recent jobs finished at (jobs a second)."""

    per_job_s: float
    lanes: int
    finish_rate: float

    def wait_s(self, ahead: int) -> float:
        """Seconds until a job with `ahead` queued jobs before it is done."""
        by_time = (ahead + 1) * self.per_job_s / max(1, self.lanes)
        by_rate = (ahead + 1) / self.finish_rate
        # Each overstates in its own case (an idle window; many workers with few busy now).
        return min(by_time, by_rate)


def measure_pace(conn: Connection, *, now: datetime, window_s: int) -> Pace | None:
    """The pace from the last SAMPLE successes within `window_s` seconds, or None with
    none. The finish rate comes from the same rows (SAMPLE over the time they span, or
    fewer over the whole window): counting every job a busy window finished read
    thousands of rows per acceptance."""
    since = now - timedelta(seconds=window_s)
    held = conn.execute(
        select(_C.dispatched_at, _C.finished_at)
        .where(
            _C.finished_at >= since,
            _C.status == JobStatus.SUCCEEDED,
            _C.dispatched_at.is_not(None),
        )
        .order_by(_C.finished_at.desc())
        .limit(SAMPLE)
    ).all()
    if not held:
        return None
    per_job = statistics.median(max(0.0, float((f - d).total_seconds())) for d, f in held)
    span_s = float(window_s)
    if len(held) == SAMPLE:
        span_s = max(1.0, (now - held[-1][1]).total_seconds())
    # Jobs held at once now: how many workers are sharing the line.
    lanes = conn.execute(
        select(func.count()).select_from(JOBS).where(_C.status.in_(ACTIVE_JOB_STATES))
    ).scalar_one()
    return Pace(per_job_s=per_job, lanes=int(lanes), finish_rate=len(held) / span_s)


class PaceCache:
    """The last pace measured and when (on the queue's clock); shared by a process's
    threads, so one measurement serves every acceptance for PACE_TTL_S."""

    def __init__(self, ttl_s: float = PACE_TTL_S) -> None:
        self._ttl = timedelta(seconds=ttl_s)
        self._lock = threading.Lock()
        self._measured: tuple[datetime, Pace | None] | None = None

    def pace(self, conn: Connection, *, now: datetime, window_s: int) -> Pace | None:
        with self._lock:
            cached = self._measured
            if cached is not None and timedelta(0) <= now - cached[0] < self._ttl:
                return cached[1]
        pace = measure_pace(conn, now=now, window_s=window_s)
        with self._lock:
            self._measured = (now, pace)
        return pace
