"""The result cache (seed 000): a request identical to an earlier success is answered with
that job's images, from storage, without a GPU.

Identical means the same workflow at the same version, the same bound graph (every value
the worker would send to ComfyUI, the seed among them: a request without a seed draws
one, so only a repeated fixed seed can match) and the same stored input images. A request
with an image by URL is never reused: what a URL serves can change. The key is written
with every job; admission looks it up under the user's lock and, on a hit, inserts the new
job already succeeded with the earlier images and its outcome row, in the transaction
that admitted it.

Jobs answered with the same images share them: the original and every job reused from
it. When a user deletes their result, their job's key is cleared (so it is never offered
again) and the files are deleted only once no job of the group still has its key: a
group's members all have one (the original was found by it, the reused ones copied it),
so a cleared key means "deleted". The lookup reads the row it reuses with a shared lock,
so a deletion and a reuse of the same images never cross: whichever commits second sees
the other.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, exists, func, or_, select, update

from stillhouse.queue.prepared import Prepared
from stillhouse.queue.statements import JOBS
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.jobs import InputSource, JobResult
from stillhouse.schemas.states import JobStatus

_C = JOBS.c
# Looked up by every acceptance (stillhouse.queue.prepared: compiled once).
_NEWEST_SUCCESS = Prepared(
    select(_C.public_id, _C.reused_from, _C.result)
    .where(
        _C.reuse_key == bindparam("key"),
        _C.status == JobStatus.SUCCEEDED,
        _C.finished_at >= bindparam("since"),
    )
    .order_by(_C.id.desc())
    .limit(1)
    .with_for_update(read=True)
)


def reuse_key(
    workflow: str, version: str, graph: ComfyGraph, inputs: list[InputSource]
) -> str | None:
    """sha256 of what decides a job's images; None when they could differ between two
    runs of the same request (an input image fetched from a URL)."""
    if any(source.url is not None for source in inputs):
        return None
    decided: dict[str, Any] = {
        "workflow": workflow,
        "version": version,
        "graph": graph.model_dump(mode="json"),
        "inputs": sorted((s.name, s.storage_key or "") for s in inputs),
    }
    canonical = json.dumps(decided, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def earlier_result(conn: Connection, key: str, since: datetime) -> tuple[str, JobResult] | None:
    """The newest success with this key that finished after `since`: the public id of the
    job that made the images (the original, when that success was itself reused) and
    its result."""
    rows = _NEWEST_SUCCESS.mappings(conn, {"key": key, "since": since})
    row = rows[0] if rows else None
    if row is None or row["result"] is None:
        return None
    return (row["reused_from"] or row["public_id"], row["result"])


def reused_values(original: str, result: JobResult, now: datetime) -> dict[str, Any]:
    """The columns of a new job answered with `original`'s images: finished on arrival,
    never dispatched (so queue-wait estimates ignore it)."""
    return {
        "status": JobStatus.SUCCEEDED,
        "reused_from": original,
        "result": result,
        "progress": 1.0,
        "finished_at": now,
    }


def reused_by(conn: Connection, source: str, user_id: int, original: str) -> bool:
    """Whether this user has a job answered with `original`'s images (their images too,
    as inputs of a later request)."""
    mine = exists().where(_C.user_id == user_id, _C.source == source, _C.reused_from == original)
    return bool(conn.execute(select(mine)).scalar())


def window_start(now: datetime, reuse_results_s: int) -> datetime:
    """The oldest finish a reused result may have."""
    return now - timedelta(seconds=reuse_results_s)


def release(conn: Connection, public_id: str, original: str) -> bool:
    """The user of job `public_id` deleted its images: never offer them again from this
    job. True when no job sharing them (`original` and the jobs reused from it) still
    has them, so the files may go."""
    conn.execute(update(JOBS).where(_C.public_id == public_id).values(reuse_key=None))
    group = or_(_C.public_id == original, _C.reused_from == original)
    holding = conn.execute(
        select(func.count()).where(group, _C.reuse_key.is_not(None), _C.public_id != public_id)
    ).scalar_one()
    return int(holding) == 0
