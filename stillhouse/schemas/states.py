"""Row states, mirrored as strings in the database."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Generation job: queued -> dispatched -> running -> succeeded | failed | cancelled."""

    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True once nothing more will happen to the job."""
        return self in TERMINAL_JOB_STATES


ACTIVE_JOB_STATES = (JobStatus.DISPATCHED, JobStatus.RUNNING)
TERMINAL_JOB_STATES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class DeliveryStatus(StrEnum):
    """Send-queue row: pending -> sending -> sent | failed."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class DeliveryKind(StrEnum):
    """What a send-queue row tells the user."""

    RESULT = "result"
    FAILURE = "failure"
    PROGRESS = "progress"
    NOTICE = "notice"
