"""Admission: a user's limits counted and the job inserted in one transaction.

The transaction first locks the user's `requesters` row with an UPDATE (a user's first
request creates the row beforehand, in a transaction of its own), so two requests of one
user are admitted one after the other and the second counts the first's row. Without the
lock, 200 simultaneous requests could all count the same "2 unfinished" and all pass a
cap of 3. MariaDB runs READ COMMITTED, so the counts after the lock see what the previous
holder committed; SQLite's BEGIN IMMEDIATE serializes writers whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

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
# The rolling windows a quota may cover (stillhouse.tiers names them the same).
WINDOWS: dict[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
}


def _look() -> Prepared:
    """What admission needs to know, in one statement (one round trip, not three): the
    job this request id already made, if any; for each window, the user's requests in
    it and the oldest of them (when the window's first place frees), over the longest
    window; and how many of the user's requests are unfinished."""
    earlier = (
        select(_C.id).where(_C.interaction_id == bindparam("interaction_id")).scalar_subquery()
    )
    unfinished = (
        select(func.count())
        .where(_C.user_id == bindparam("user_id"), or_(*(_C.status == s for s in _UNFINISHED)))
        .scalar_subquery()
    )
    columns = [earlier.label("earlier_id"), unfinished.label("active")]
    for name in WINDOWS:
        inside = _C.created_at >= bindparam(f"since_{name}")
        columns.append(func.coalesce(func.sum(case((inside, 1), else_=0)), 0).label(name))
        columns.append(func.min(case((inside, _C.created_at), else_=None)).label(f"{name}_oldest"))
    longest = f"since_{max(WINDOWS, key=WINDOWS.__getitem__)}"
    return Prepared(
        select(*columns).where(
            _C.user_id == bindparam("user_id"), _C.created_at >= bindparam(longest)
        )
    )


# Every acceptance runs these: compiled once (stillhouse.queue.prepared), not rebuilt.
_LOCK_REQUESTER = Prepared(
    update(REQUESTERS)
    .where(REQUESTERS.c.user_id == bindparam("user_id"))
    .values(last_request_at=bindparam("now"))
)
_LOOK = _look()


class Limits(BaseModel):
    """What one user may have: requests waiting or running at once, and new requests per
    rolling window (WINDOWS; a window left out has no limit)."""

    model_config = ConfigDict(frozen=True)

    max_active: int
    quotas: dict[str, int] = {}
    tier: str = "default"


class LimitReached(StillhouseError):
    """The user is at a limit; `kind` says which, `retry_after_s` when it frees."""

    def __init__(
        self,
        kind: Literal["rate", "active", "quota"],
        count: int,
        limit: int,
        retry_after_s: float | None = None,
        window: str | None = None,
    ) -> None:
        super().__init__(f"{kind} limit reached: {count} of {limit}")
        self.kind = kind
        self.count = count
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.window = window  # which quota: "minute" (kind "rate"), "hour", … "month"


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


def look(
    conn: Connection, user_id: int, interaction_id: int | None, now: datetime
) -> dict[str, Any]:
    """With the lock held: the id of the job this request id already made (`earlier_id`,
    None if none) and what `check_limits` counts."""
    params = {f"since_{name}": now - span for name, span in WINDOWS.items()}
    wanted = {"user_id": user_id, "interaction_id": interaction_id, **params}
    [looked] = _LOOK.mappings(conn, wanted)
    return looked


def check_limits(looked: Mapping[str, Any], limits: Limits, now: datetime) -> None:
    """LimitReached if one more request would go past a limit, by what `look` saw: the
    per-minute rate first, then requests at once, then the longer windows."""
    _over(limits, looked, "minute", now)
    active = int(looked["active"])
    if active >= limits.max_active:
        raise LimitReached("active", active, limits.max_active)
    for name in [n for n in WINDOWS if n != "minute"]:  # shortest first
        _over(limits, looked, name, now)


def _over(limits: Limits, counted: Mapping[str, Any], window: str, now: datetime) -> None:
    limit = limits.quotas.get(window)
    used = int(counted[window])
    if limit is None or used < limit:
        return
    oldest = counted[f"{window}_oldest"]
    span = WINDOWS[window]
    wait = max(1.0, (oldest + span - now).total_seconds()) if oldest else span.total_seconds()
    kind: Literal["rate", "quota"] = "rate" if window == "minute" else "quota"
    raise LimitReached(kind, used, limit, wait, window)


def same_request(existing: JobRecord, digest: str | None) -> Enqueued:
    """The job a request id already made, unless it was made from another request."""
    if existing.request_digest != digest:
        raise IdempotencyConflict(f"request id {existing.interaction_id} came with another request")
    return Enqueued(job=existing, created=False)
