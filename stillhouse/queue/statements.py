"""The queues' prebuilt statements.

The hot path's statements are built once; each call only binds values, which keeps
SQLAlchemy's per-call cost to parameter processing (see bench/queue_throughput.py).
"""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import Select, Table, Update, and_, bindparam, insert, select, update

from stillhouse.db.models import Delivery, GenerationJob
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.states import ACTIVE_JOB_STATES, JobStatus

JOBS = cast(Table, GenerationJob.__table__)
SENDS = cast(Table, Delivery.__table__)
_C = JOBS.c

INSERT_JOB = insert(JOBS)
INSERT_SEND = insert(SENDS)


# Claims come in a few sizes; one statement per size, with the LIMIT and the id list
# written in, spares SQLAlchemy's per-call expansion of LIMIT and IN parameters.
@functools.lru_cache(maxsize=64)
def runnable_jobs(limit: int) -> Select[Any]:
    """The next `limit` runnable jobs of a partition, locked, skipping locked ones."""
    return (
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
def lease_jobs(count: int) -> Update:
    """Lease `count` jobs, bound as id_0 … id_{count-1}."""
    return (
        update(JOBS)
        .where(_C.id.in_([bindparam(f"id_{n}") for n in range(count)]))
        .values(
            attempts=_C.attempts + 1,
            status=JobStatus.DISPATCHED,
            lease_owner=bindparam("owner"),
            lease_expires_at=bindparam("expires"),
            dispatched_at=bindparam("now"),
            updated_at=bindparam("now"),
        )
    )


# The row is still this claim's: same owner, same attempt, still active.
HELD = and_(
    _C.id == bindparam("held_id"),
    _C.lease_owner == bindparam("held_owner"),
    _C.attempts == bindparam("held_attempts"),
    _C.status.in_(ACTIVE_JOB_STATES),
)
SUCCEED_HELD = (
    update(JOBS)
    .where(HELD)
    .values(
        status=JobStatus.SUCCEEDED,
        lease_owner=None,
        lease_expires_at=None,
        error=None,  # an earlier attempt's error no longer describes the job
        progress=1.0,
        result=bindparam("done"),
        finished_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)


def held_params(job: JobRecord) -> dict[str, Any]:
    """Binds for HELD from a claimed record."""
    return {"held_id": job.id, "held_owner": job.lease_owner, "held_attempts": job.attempts}
