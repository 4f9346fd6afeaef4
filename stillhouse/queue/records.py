"""Typed, immutable views of queue rows, built from result rows by from_row()."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.jobs import DeliveryPayload, InputSource, JobParams, JobResult, Routing
from stillhouse.schemas.states import DeliveryKind, DeliveryStatus, JobStatus
from stillhouse.schemas.worker_io import ErrorInfo

_ROUTING_FIELDS = (
    "source",
    "user_id",
    "guild_id",
    "channel_id",
    "shard_id",
    "interaction_token",
    "interaction_expires_at",
    "visibility",
)


def _split_routing(row: Mapping[Any, Any]) -> dict[str, Any]:
    values = dict(row)
    values["routing"] = Routing(**{k: values.pop(k) for k in _ROUTING_FIELDS if k in values})
    return values


class JobRecord(BaseModel):
    """A generation_queue row. A claimed record is also the lease: (owner, attempt)."""

    model_config = ConfigDict(frozen=True)

    id: int
    public_id: str
    partition_id: int
    status: JobStatus
    priority: int
    routing: Routing
    interaction_id: int | None
    request_digest: str | None = None
    workflow_name: str
    workflow_version: str
    params: JobParams
    graph: ComfyGraph
    inputs: list[InputSource]
    reuse_key: str | None = None
    reused_from: str | None = None  # answered with that earlier job's images
    attempts: int  # GPU tries: backend jobs started for it
    max_attempts: int
    claims: int  # times leased; with lease_owner, the lease's identity
    run_after: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    backend_job_id: str | None
    submitting_since: datetime | None
    lost_submits: int
    progress: float | None
    progress_note: str | None
    result: JobResult | None
    error: ErrorInfo | None
    created_at: datetime
    updated_at: datetime
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> JobRecord:
        """Build from a generation_queue result row (or the values just written)."""
        return cls.model_validate(_split_routing(row))


class DeliveryRecord(BaseModel):
    """A send_queue row."""

    model_config = ConfigDict(frozen=True)

    id: int
    job_id: int
    job_public_id: str
    partition_id: int
    kind: DeliveryKind
    dedupe_key: str | None
    status: DeliveryStatus
    routing: Routing
    payload: DeliveryPayload
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    discord_message_id: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> DeliveryRecord:
        """Build from a send_queue result row."""
        return cls.model_validate(_split_routing(row))


class Enqueued(BaseModel):
    """The job a front's request maps to; created=False when it was already queued."""

    job: JobRecord
    created: bool


class FailOutcome(StrEnum):
    """What fail() did with a job."""

    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CancelOutcome(StrEnum):
    """What cancel() did."""

    CANCELLED = "cancelled"
    REQUESTED = "requested"
    ALREADY_FINISHED = "already_finished"
    NOT_FOUND = "not_found"


class LeaseStatus(BaseModel):
    """After a renewal: which rows are still ours, and which the user asked to cancel."""

    held: frozenset[int]
    cancel_requested: frozenset[int]


class ReapReport(BaseModel):
    """What a reaper pass did with rows whose lease had expired."""

    requeued: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        """Rows touched."""
        return self.requeued + self.failed + self.cancelled


class QueuePosition(BaseModel):
    """Where a job stands, for /queue and the API."""

    status: JobStatus
    ahead: int | None
    estimated_wait_s: float | None
