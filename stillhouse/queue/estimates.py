"""How long a queued job will wait, from how long recent jobs really held a worker.

Counting jobs finished in a window alone says an idle queue is slow: one sub-second job in
the last 10 minutes reads as "600 s a job". The time each recent job held its worker
(dispatched to finished) does not have that flaw; the finish rate still helps when many
workers share the queue. No recent measurement, no estimate: nothing beats a wild guess.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from stillhouse.queue.statements import JOBS
from stillhouse.schemas.states import ACTIVE_JOB_STATES, JobStatus

_C = JOBS.c
SAMPLE = 50  # recent successes measured: enough for a steady median, a cheap query


def estimated_wait_s(conn: Connection, ahead: int, *, now: datetime, window_s: int) -> float | None:
    """Seconds until a job with `ahead` queued jobs before it is done, or None."""
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
    # Jobs held at once now: how many workers are sharing the line.
    lanes = int(
        conn.execute(
            select(func.count()).select_from(JOBS).where(_C.status.in_(ACTIVE_JOB_STATES))
        ).scalar_one()
    )
    by_time = (ahead + 1) * per_job / max(1, lanes)
    finished = int(
        conn.execute(
            select(func.count()).select_from(JOBS).where(_C.finished_at >= since)
        ).scalar_one()
    )
    by_rate = (ahead + 1) * window_s / finished
    # Each overstates in its own case (an idle window; many workers with few busy now).
    return min(by_time, by_rate)
