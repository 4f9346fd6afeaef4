"""Read-only questions the fronts ask of the generation queue: a user's jobs and counts,
jobs whose progress a bot shows, and the numbers behind /admin stats."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Engine, func, or_, select, true

from stillhouse.queue.estimates import PaceCache
from stillhouse.queue.records import JobRecord
from stillhouse.queue.statements import JOBS, ahead_of
from stillhouse.queue.timing import Clock, utcnow
from stillhouse.schemas.states import ACTIVE_JOB_STATES, JobStatus

_C = JOBS.c
_UNFINISHED = (JobStatus.QUEUED, *ACTIVE_JOB_STATES)
_WAIT_SAMPLE = 2000


class QueueStats(BaseModel):
    """The queue right now, and how the last window went."""

    queued: int
    in_flight: int
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    window_s: int
    median_wait_s: float | None

    @property
    def success_rate(self) -> float | None:
        """Succeeded among jobs that succeeded or failed in the window."""
        decided = self.succeeded + self.failed
        return None if decided == 0 else self.succeeded / decided


class Usage(BaseModel):
    """GPU time over a window: in all, and the users who took the most (user id, jobs,
    seconds)."""

    jobs: int
    gpu_s: float
    top: list[tuple[int, int, float]]


class Progress(BaseModel):
    """How far a job is, as a bot shows it: while queued, its place in the line and the
    wait the recent pace predicts; once sent, since when."""

    public_id: str
    status: JobStatus
    progress: float | None
    progress_note: str | None
    updated_at: datetime
    ahead: int | None = None
    estimated_wait_s: float | None = None
    dispatched_at: datetime | None = None
    typical_s: float | None = None  # how long recent jobs held a worker (the median)


class QueueInsights:
    """Counts and listings; no method writes."""

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock
        self._pace = PaceCache()

    def unfinished_count(self, user_id: int) -> int:
        """The user's jobs that are queued or running."""
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(JOBS)
                    .where(_C.user_id == user_id, _C.status.in_(_UNFINISHED))
                ).scalar_one()
            )

    def created_since(self, user_id: int, since: datetime) -> int:
        """Jobs the user asked for since `since` (for daily quotas)."""
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(JOBS)
                    .where(_C.user_id == user_id, _C.created_at >= since)
                ).scalar_one()
            )

    def gpu_seconds(self, user_id: int, since: datetime) -> tuple[int, float]:
        """The user's succeeded jobs asked for since `since`, and the GPU seconds they
        took (ComfyUI's execution of the try that succeeded)."""
        with self._engine.connect() as conn:
            count, total_ms = conn.execute(
                select(func.count(), func.coalesce(func.sum(_C.gpu_ms), 0)).where(
                    _C.user_id == user_id,
                    _C.created_at >= since,
                    _C.status == JobStatus.SUCCEEDED,
                )
            ).one()
        return int(count), float(total_ms) / 1000

    def usage(self, since: datetime, *, guild_id: int | None = None) -> Usage:
        """GPU time of the jobs that succeeded since `since` (of one guild's requests when
        `guild_id` is given), and who used the most."""
        mine = true() if guild_id is None else _C.guild_id == guild_id
        seconds = func.coalesce(func.sum(_C.gpu_ms), 0)
        window = (_C.finished_at >= since, _C.status == JobStatus.SUCCEEDED, mine)
        with self._engine.connect() as conn:
            jobs, total_ms = conn.execute(select(func.count(), seconds).where(*window)).one()
            top = conn.execute(
                select(_C.user_id, func.count(), seconds)
                .where(*window)
                .group_by(_C.user_id)
                .order_by(seconds.desc())
                .limit(5)
            ).all()
        return Usage(
            jobs=int(jobs),
            gpu_s=float(total_ms) / 1000,
            top=[(user, int(count), float(ms) / 1000) for user, count, ms in top if user],
        )

    def recent_results(self, user_id: int, limit: int = 10) -> list[JobRecord]:
        """The user's latest succeeded jobs, newest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(JOBS)
                .where(_C.user_id == user_id, _C.status == JobStatus.SUCCEEDED)
                .order_by(_C.id.desc())
                .limit(limit)
            ).mappings()
            return [JobRecord.from_row(r) for r in rows]

    def unfinished_jobs(self, user_id: int, limit: int = 10) -> list[JobRecord]:
        """The user's queued and running jobs, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(JOBS)
                .where(_C.user_id == user_id, _C.status.in_(_UNFINISHED))
                .order_by(_C.id)
                .limit(limit)
            ).mappings()
            return [JobRecord.from_row(r) for r in rows]

    def progress_of(self, public_ids: Sequence[str], *, window_s: int = 3600) -> list[Progress]:
        """Where these jobs stand (for the messages that show their progress); a queued
        job's place counts the queued jobs a claim takes before it (one indexed count
        each); its wait, and how long a job takes, come from the pace of the last
        `window_s` seconds."""
        if not public_ids:
            return []
        columns = (
            *(_C.public_id, _C.status, _C.progress, _C.progress_note, _C.updated_at),
            *(_C.dispatched_at, _C.priority, _C.run_after, _C.id),
        )
        with self._engine.connect() as conn:
            rows = list(
                conn.execute(select(*columns).where(_C.public_id.in_(list(public_ids))))
                .mappings()
                .all()
            )
            pace = self._pace.pace(conn, now=self._clock(), window_s=window_s) if rows else None
            found = []
            for row in rows:
                shown = Progress.model_validate(dict(row))
                shown.typical_s = None if pace is None else pace.per_job_s
                if row["status"] == JobStatus.QUEUED:
                    ahead = conn.execute(
                        select(func.count())
                        .select_from(JOBS)
                        .where(_C.status == JobStatus.QUEUED, ahead_of(row))
                    ).scalar_one()
                    shown.ahead = int(ahead)
                    shown.estimated_wait_s = None if pace is None else pace.wait_s(int(ahead))
                found.append(shown)
            return found

    def stats(self, window_s: int = 3600, *, guild_id: int | None = None) -> QueueStats:
        """Queue depth and in-flight now; outcomes and median queue wait over the window;
        of one guild's requests when `guild_id` is given."""
        since = self._clock() - timedelta(seconds=window_s)
        mine = true() if guild_id is None else _C.guild_id == guild_id
        with self._engine.connect() as conn:
            now_counts: dict[JobStatus, int] = dict(
                conn.execute(
                    select(_C.status, func.count())
                    .where(_C.status.in_(_UNFINISHED), mine)
                    .group_by(_C.status)
                ).all()
            )
            ended: dict[JobStatus, int] = dict(
                conn.execute(
                    select(_C.status, func.count())
                    .where(_C.finished_at >= since, mine)
                    .group_by(_C.status)
                ).all()
            )
            waits = conn.execute(
                select(_C.created_at, _C.dispatched_at)
                .where(
                    or_(_C.finished_at >= since, _C.status.in_(ACTIVE_JOB_STATES)),
                    _C.dispatched_at.is_not(None),
                    mine,
                )
                .order_by(_C.id.desc())
                .limit(_WAIT_SAMPLE)
            ).all()
        seconds = [(d - c).total_seconds() for c, d in waits]
        return QueueStats(
            queued=now_counts.get(JobStatus.QUEUED, 0),
            in_flight=sum(now_counts.get(s, 0) for s in ACTIVE_JOB_STATES),
            finished=sum(ended.values()),
            succeeded=ended.get(JobStatus.SUCCEEDED, 0),
            failed=ended.get(JobStatus.FAILED, 0),
            cancelled=ended.get(JobStatus.CANCELLED, 0),
            window_s=window_s,
            median_wait_s=statistics.median(seconds) if seconds else None,
        )
