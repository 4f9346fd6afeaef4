"""The interface every GPU backend offers the dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel

from stillhouse.schemas.worker_io import ErrorInfo, WorkerInput, WorkerOutput


class Phase(StrEnum):
    """Where a backend job is."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    LOST = "lost"  # the backend no longer knows the job

    @property
    def is_final(self) -> bool:
        """True when nothing more will happen to the backend job."""
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.LOST)


class Poll(BaseModel):
    """One look at a backend job."""

    phase: Phase
    output: WorkerOutput | None = None
    error: ErrorInfo | None = None
    progress: dict[str, Any] | None = None


class BackendUnavailable(Exception):
    """The backend could not be reached, was too slow, or answered 5xx / 429 / a body
    without what it should hold; try again later. A submit that failed this way may
    still have reached the backend."""


class SubmitNotSent(BackendUnavailable):
    """The submit never reached the backend (connection refused, 429): no job there."""


class JobRejected(Exception):
    """The backend refused this one job's request (400, 413): retrying cannot help."""


class BackendRefused(Exception):
    """The backend refuses this deployment (bad key, no such endpoint): nothing will
    work until an operator fixes a setting. Dispatch pauses; no job is failed for it."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause  # a short metric label: unauthorized, forbidden, unknown_endpoint


class Backend(Protocol):
    """Run, follow and cancel jobs on GPUs somewhere."""

    name: str

    @property
    def capacity(self) -> int | None:
        """Jobs it can take at once (None: the endpoint scales)."""

    def watch(self, notify: Callable[[str], None]) -> None:
        """Call `notify(backend job id)` whenever a job changes, where the backend can
        tell (RunPod tells through its webhook instead)."""

    async def start(self) -> None:
        """Open what the backend needs (listeners, worker processes)."""

    async def submit(self, request: WorkerInput) -> str:
        """Start the job; the backend's id for it."""

    async def poll(self, backend_job_id: str) -> Poll:
        """Where the job is now."""

    async def cancel(self, backend_job_id: str) -> None:
        """Stop the job (best effort)."""

    async def health(self) -> dict[str, Any]:
        """The backend's own view of its queue and workers."""

    async def close(self) -> None:
        """Release connections and processes."""
