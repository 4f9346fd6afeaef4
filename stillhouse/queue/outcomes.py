"""The one visible outcome of a job: its row in send_queue, written inside the same
transaction as the job's final state. `outcome:<job id>` is unique, so a job can never
get a second result or failure row.

A Discord job's row waits (pending) for a bot to deliver it. An API caller reads the
outcome from the job itself, so its row is written already delivered: it still makes a
second outcome impossible, and no bot claims it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from stillhouse.config import QueueSettings
from stillhouse.queue.records import JobRecord
from stillhouse.queue.statements import INSERT_SEND
from stillhouse.schemas.jobs import (
    DeliveryPayload,
    FailurePayload,
    JobResult,
    NoticePayload,
    ResultPayload,
)
from stillhouse.schemas.states import DeliveryKind, DeliveryStatus
from stillhouse.schemas.worker_io import ErrorInfo

CANCELLED_TEXT = "Your request was cancelled."


def outcome_key(job_id: int) -> str:
    """The dedupe key that makes a job's outcome row unique."""
    return f"outcome:{job_id}"


def result(
    conn: Connection,
    job: JobRecord,
    done: JobResult,
    now: datetime,
    settings: QueueSettings,
    *,
    cancel_too_late: bool = False,
    reused_from: str | None = None,
) -> None:
    """Queue the images for the user (made for this job, or `reused_from` another's)."""
    payload = ResultPayload(
        images=done.images,
        workflow_name=job.workflow_name,
        params=job.params,
        cancel_too_late=cancel_too_late,
        reused_from=reused_from,
    )
    _insert(conn, job, DeliveryKind.RESULT, payload, now, settings)


def failure(
    conn: Connection, job: JobRecord, error: ErrorInfo, now: datetime, settings: QueueSettings
) -> None:
    """Queue a clear failure message for the user."""
    payload = FailurePayload(error=error, attempts=job.attempts)
    _insert(conn, job, DeliveryKind.FAILURE, payload, now, settings)


def cancelled(conn: Connection, job: JobRecord, now: datetime, settings: QueueSettings) -> None:
    """Queue the notice that the job was cancelled."""
    _insert(conn, job, DeliveryKind.NOTICE, NoticePayload(text=CANCELLED_TEXT), now, settings)


def _insert(
    conn: Connection,
    job: JobRecord,
    kind: DeliveryKind,
    payload: DeliveryPayload,
    now: datetime,
    settings: QueueSettings,
) -> None:
    routing = job.routing
    token = routing.interaction_token
    INSERT_SEND.execute(
        conn,
        {
            "job_id": job.id,
            "job_public_id": job.public_id,
            "partition_id": job.partition_id,
            "kind": kind,
            "dedupe_key": outcome_key(job.id),
            "status": DeliveryStatus.SENT if routing.source == "api" else DeliveryStatus.PENDING,
            "sent_at": now if routing.source == "api" else None,
            "source": routing.source,
            "user_id": routing.user_id,
            "guild_id": routing.guild_id,
            "channel_id": routing.channel_id,
            "interaction_token": token.get_secret_value() if token else None,
            "interaction_expires_at": routing.interaction_expires_at,
            "visibility": routing.visibility,
            "payload": payload,
            "max_attempts": settings.delivery_max_attempts,
            "run_after": now,
            "created_at": now,
            "updated_at": now,
        },
    )
