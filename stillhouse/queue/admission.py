"""Admission: a user's limits counted and the job inserted in one transaction.

The transaction first locks the user's `requesters` row with an UPDATE (a user's first
request creates the row beforehand, in a transaction of its own), so two requests of one
user are admitted one after the other and the second counts the first's row. Without the
lock, 200 simultaneous requests could all count the same "2 unfinished" and all pass a
cap of 3. MariaDB runs READ COMMITTED, so the counts after the lock see what the previous
holder committed; SQLite's BEGIN IMMEDIATE serializes writers whole.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Engine, Table, bindparam, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from stillhouse.db.models import Requester
from stillhouse.errors import StillhouseError
from stillhouse.queue.prepared import Prepared
from stillhouse.queue.records import Enqueued, JobRecord
from stillhouse.queue.statements import JOBS
from stillhouse.schemas.states import ACTIVE_JOB_STATES, JobStatus

REQUESTERS: Table = Requester.__table__  # type: ignore[assignment]
_C = JOBS.c
_UNFINISHED = (JobStatus.QUEUED, *ACTIVE_JOB_STATES)
RATE_WINDOW = timedelta(minutes=1)
QUOTA_WINDOW = timedelta(days=1)

# Every acceptance runs these: compiled once (stillhouse.queue.prepared), not rebuilt.
_LOCK_REQUESTER = Prepared(
    update(REQUESTERS)
    .where(REQUESTERS.c.user_id == bindparam("user_id"))
    .values(last_request_at=bindparam("now"))
)
_COUNT_RECENT = Prepared(
    select(
        func.count().label("today"),
        func.coalesce(
            func.sum(case((_C.created_at >= bindparam("minute_ago"), 1), else_=0)), 0
        ).label("this_minute"),
        func.min(case((_C.created_at >= bindparam("minute_ago"), _C.created_at), else_=None)).label(
            "oldest_this_minute"
        ),
        func.min(_C.created_at).label("oldest_today"),
    ).where(_C.user_id == bindparam("user_id"), _C.created_at >= bindparam("day_ago"))
)
_COUNT_UNFINISHED = Prepared(
    select(func.count().label("active")).where(
        _C.user_id == bindparam("user_id"), or_(*(_C.status == state for state in _UNFINISHED))
    )
)


class Limits(BaseModel):
    """What one user may have: new requests a minute, requests waiting or running at
    once, requests per 24 hours (None: no daily limit)."""

    model_config = ConfigDict(frozen=True)

    per_minute: int
    max_active: int
    daily: int | None = None


class LimitReached(StillhouseError):
    """The user is at a limit; `kind` says which, `retry_after_s` when it frees."""

    def __init__(
        self,
        kind: Literal["rate", "active", "quota"],
        count: int,
        limit: int,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{kind} limit reached: {count} of {limit}")
        self.kind = kind
        self.count = count
        self.limit = limit
        self.retry_after_s = retry_after_s


class IdempotencyConflict(StillhouseError):
    """A request id (Idempotency-Key) reused with a different request."""


def lock_requester(conn: Connection, user_id: int, now: datetime) -> bool:
    """Hold the user's row until the transaction ends; False when the user has no row
    yet (create it with `add_requester`, outside this transaction, and start again)."""
    return bool(_LOCK_REQUESTER.execute(conn, {"user_id": user_id, "now": now}).rowcount)


def add_requester(engine: Engine, user_id: int, now: datetime) -> None:
    """The user's row, in a transaction of its own: when many first requests race, the
    losers' duplicate-key errors end their own short transactions (inside the admission
    transaction they would hold shared locks and deadlock on the UPDATE that follows)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(REQUESTERS).values(user_id=user_id, first_seen_at=now, last_request_at=now)
            )
    except IntegrityError:
        pass  # another request made it


def check_limits(conn: Connection, user_id: int, limits: Limits, now: datetime) -> None:
    """LimitReached if one more request would go past a limit (call with the lock held)."""
    minute_ago = now - RATE_WINDOW
    [counted] = _COUNT_RECENT.mappings(
        conn, {"user_id": user_id, "minute_ago": minute_ago, "day_ago": now - QUOTA_WINDOW}
    )
    today, this_minute = int(counted["today"]), int(counted["this_minute"])
    if this_minute >= limits.per_minute:
        oldest = counted["oldest_this_minute"]
        wait = (oldest + RATE_WINDOW - now).total_seconds() if oldest else 60.0
        raise LimitReached("rate", this_minute, limits.per_minute, max(1.0, wait))
    [unfinished] = _COUNT_UNFINISHED.mappings(conn, {"user_id": user_id})
    active = int(unfinished["active"])
    if active >= limits.max_active:
        raise LimitReached("active", active, limits.max_active)
    if limits.daily is not None and today >= limits.daily:
        oldest = counted["oldest_today"]
        wait = (oldest + QUOTA_WINDOW - now).total_seconds() if oldest else None
        raise LimitReached("quota", today, limits.daily, wait)


def same_request(existing: JobRecord, digest: str | None) -> Enqueued:
    """The job a request id already made, unless it was made from another request."""
    if existing.request_digest != digest:
        raise IdempotencyConflict(f"request id {existing.interaction_id} came with another request")
    return Enqueued(job=existing, created=False)
