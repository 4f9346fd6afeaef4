"""The queues' prebuilt statements.

The statements every job passes through are built once; the writes among them are
`Prepared`, compiled once per dialect (see stillhouse/queue/prepared.py and
bench/queue_throughput.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from stillhouse.db.models import Delivery, GenerationJob
from stillhouse.queue.prepared import Prepared
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.states import ACTIVE_JOB_STATES, DeliveryStatus, JobStatus

JOBS = cast(Table, GenerationJob.__table__)
SENDS = cast(Table, Delivery.__table__)
_C = JOBS.c

# A new row's constant columns are part of the statement; every other column but the
# key is bound, so one compiled form serves every row.
_NEW_JOB: dict[str, Any] = {
    "status": JobStatus.QUEUED,
    "attempts": 0,
    "claims": 0,
    "lost_submits": 0,
    "cancel_requested": False,
    **dict.fromkeys(
        ("lease_owner", "lease_expires_at", "backend_job_id", "progress", "progress_note"),
    ),
    **dict.fromkeys(("submitting_since", "message_edit_until")),
    **dict.fromkeys(("result", "gpu_ms", "error", "dispatched_at", "started_at", "finished_at")),
}
_NEW_SEND: dict[str, Any] = {
    "attempts": 0,
    **dict.fromkeys(("lease_owner", "lease_expires_at", "discord_message_id", "last_error")),
}
INSERT_JOB = Prepared(
    insert(JOBS).values(_NEW_JOB), [c.key for c in JOBS.c if c.key not in {"id", *_NEW_JOB}]
)
INSERT_SEND = Prepared(
    insert(SENDS).values(_NEW_SEND), [c.key for c in SENDS.c if c.key not in {"id", *_NEW_SEND}]
)


# Claims come in a few sizes; one statement per size, with the LIMIT and the id list
# written in, spares SQLAlchemy's per-call expansion of LIMIT and IN parameters.
@functools.lru_cache(maxsize=64)
def runnable_jobs(limit: int) -> Prepared:
    """The next `limit` runnable jobs of a partition, locked, skipping locked ones."""
    return Prepared(
        select(JOBS)
        .where(
            _C.status == JobStatus.QUEUED,
            _C.partition_id == bindparam("partition"),
            _C.run_after <= bindparam("now"),
        )
        .order_by(_C.priority, _C.run_after, _C.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


@functools.lru_cache(maxsize=64)
def lease_jobs(count: int) -> Prepared:
    """Lease `count` jobs, bound as id_0 … id_{count-1}."""
    return Prepared(
        update(JOBS)
        .where(_C.id.in_([bindparam(f"id_{n}") for n in range(count)]))
        .values(
            claims=_C.claims + 1,
            status=JobStatus.DISPATCHED,
            lease_owner=bindparam("owner"),
            lease_expires_at=bindparam("expires"),
            dispatched_at=bindparam("now"),
            updated_at=bindparam("now"),
        )
    )


# OR of equalities, not IN: an IN list is re-rendered into the SQL on every call.
_STILL_ACTIVE = or_(*(_C.status == state for state in ACTIVE_JOB_STATES))
# The row is still this claim's: same owner, same claim, still active.
HELD = and_(
    _C.id == bindparam("held_id"),
    _C.lease_owner == bindparam("held_owner"),
    _C.claims == bindparam("held_claim"),
    _STILL_ACTIVE,
)
_SUCCEED_VALUES: dict[str, Any] = dict(
    status=JobStatus.SUCCEEDED,
    lease_owner=None,
    lease_expires_at=None,
    error=None,  # an earlier attempt's error no longer describes the job
    progress=1.0,
    result=bindparam("done"),
    gpu_ms=bindparam("gpu_ms"),
    finished_at=bindparam("now"),
    updated_at=bindparam("now"),
)
SUCCEED_HELD = Prepared(update(JOBS).where(HELD).values(_SUCCEED_VALUES))
# The common case in one statement; a job whose user asked to cancel it is succeeded by
# SUCCEED_HELD instead, so its answer can say the images came first.
SUCCEED_HELD_UNCANCELLED = Prepared(
    update(JOBS).where(HELD, _C.cancel_requested.is_(False)).values(_SUCCEED_VALUES)
)


# The send queue's claim, like the generation queue's: one statement per size.
@functools.lru_cache(maxsize=64)
def pending_sends(limit: int, partitions: tuple[int, ...]) -> Prepared:
    """The next `limit` pending rows of these partitions, locked, skipping locked ones."""
    sends = SENDS.c
    return Prepared(
        select(SENDS)
        .where(
            sends.status == DeliveryStatus.PENDING,
            or_(*(sends.partition_id == partition for partition in partitions)),
            sends.run_after <= bindparam("now"),
        )
        .order_by(sends.run_after, sends.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


@functools.lru_cache(maxsize=64)
def lease_sends(count: int) -> Prepared:
    """Lease `count` send rows, bound as id_0 … id_{count-1}."""
    sends = SENDS.c
    return Prepared(
        update(SENDS)
        .where(sends.id.in_([bindparam(f"id_{n}") for n in range(count)]))
        .values(
            attempts=sends.attempts + 1,
            status=DeliveryStatus.SENDING,
            lease_owner=bindparam("owner"),
            lease_expires_at=bindparam("expires"),
            updated_at=bindparam("now"),
        )
    )


# About to submit: count a mark an earlier submit left (MySQL assigns left to right, each
# seeing the ones before: count, then mark).
_BEGIN_SUBMIT_VALUES: tuple[tuple[Any, Any], ...] = (
    (_C.lost_submits, _C.lost_submits + case((_C.submitting_since.is_(None), 0), else_=1)),
    (_C.submitting_since, bindparam("now")),
    (_C.updated_at, bindparam("now")),
)
BEGIN_SUBMIT_HELD = Prepared(update(JOBS).where(HELD).ordered_values(*_BEGIN_SUBMIT_VALUES))


def _running_values(backend_job_id: Any) -> dict[str, Any]:
    return dict(
        status=JobStatus.RUNNING,
        started_at=func.coalesce(_C.started_at, bindparam("now")),
        updated_at=bindparam("now"),
        backend_job_id=backend_job_id,
        submitting_since=None,
        attempts=_C.attempts + 1,
    )


# The backend took the job: a new try, running, its backend id kept for adoption.
RUNNING_HELD = Prepared(
    update(JOBS).where(HELD).values(_running_values(bindparam("backend_job_id")))
)


def _held_by_position(count: int) -> ColumnElement[bool]:
    """HELD for `count` jobs at once, bound as held_id_n / held_owner_n / held_claim_n."""
    return and_(
        or_(
            *(
                and_(
                    _C.id == bindparam(f"held_id_{n}"),
                    _C.lease_owner == bindparam(f"held_owner_{n}"),
                    _C.claims == bindparam(f"held_claim_{n}"),
                )
                for n in range(count)
            )
        ),
        _STILL_ACTIVE,
    )


@functools.lru_cache(maxsize=64)
def begin_submits_held(count: int) -> Prepared:
    """BEGIN_SUBMIT_HELD for `count` jobs in one statement (a master's group commit)."""
    return Prepared(
        update(JOBS).where(_held_by_position(count)).ordered_values(*_BEGIN_SUBMIT_VALUES)
    )


@functools.lru_cache(maxsize=64)
def running_held(count: int) -> Prepared:
    """RUNNING_HELD for `count` jobs in one statement, each with its backend id (bound as
    backend_job_id_n)."""
    backend_ids = case(
        *(
            (_C.id == bindparam(f"held_id_{n}"), bindparam(f"backend_job_id_{n}"))
            for n in range(count)
        ),
        else_=_C.backend_job_id,
    )
    return Prepared(
        update(JOBS).where(_held_by_position(count)).values(_running_values(backend_ids))
    )


@functools.lru_cache(maxsize=64)
def held_among(count: int) -> Prepared:
    """Which of `count` jobs (bound as in begin_submits_held) are still held."""
    return Prepared(select(_C.id).where(_held_by_position(count)))


def held_params_by_position(jobs: list[JobRecord]) -> dict[str, Any]:
    """Binds for `_held_by_position(len(jobs))`."""
    params: dict[str, Any] = {}
    for n, job in enumerate(jobs):
        params[f"held_id_{n}"] = job.id
        params[f"held_owner_{n}"] = job.lease_owner
        params[f"held_claim_{n}"] = job.claims
    return params


def held_params(job: JobRecord) -> dict[str, Any]:
    """Binds for HELD from a claimed record."""
    return {"held_id": job.id, "held_owner": job.lease_owner, "held_claim": job.claims}


def ahead_of(job: JobRecord | Mapping[Any, Any]) -> ColumnElement[bool]:
    """Queued jobs a claimer takes before this one (the same order as the claim)."""
    if isinstance(job, JobRecord):
        priority, run_after, job_id = job.priority, job.run_after, job.id
    else:
        priority, run_after, job_id = job["priority"], job["run_after"], job["id"]
    return or_(
        _C.priority < priority,
        and_(_C.priority == priority, _C.run_after < run_after),
        and_(_C.priority == priority, _C.run_after == run_after, _C.id < job_id),
    )
