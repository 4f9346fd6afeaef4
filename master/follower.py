"""Following one job: adopt the backend job an earlier holder left or submit a new one,
watch it (polls, webhooks, the user's cancel), and write its outcome. A job this master
loses is dropped without writing anything.

Between RunPod accepting a submit and its id being stored lies the submit window: the job
is marked before every submit (GenerationQueue.begin_submit), so a holder that dies there
is seen, and counted, by the next; a submit whose answer was lost is counted the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from dataclasses import dataclass, field

from master.backends.base import (
    Backend,
    BackendRefused,
    BackendUnavailable,
    JobRejected,
    Phase,
    Poll,
    SubmitNotSent,
)
from master.calls import Calls, Paused
from master.metrics import MasterMetrics
from master.requests import worker_input
from stillhouse.config import Settings
from stillhouse.errors import LeaseLost
from stillhouse.logs import log_context
from stillhouse.queue import GenerationQueue
from stillhouse.queue.records import FailOutcome, JobRecord
from stillhouse.schemas.jobs import JobResult
from stillhouse.schemas.worker_io import ErrorInfo
from stillhouse.storage import Storage

log = logging.getLogger(__name__)
MAX_POLL_S = 10.0
OVERDUE = ErrorInfo(
    type="timeout", message="the GPU service gave no result in time", retryable=True
)
ERROR_TYPE = re.compile(r"[a-z][a-z_]{0,31}")
NO_TRIES_LEFT = ErrorInfo(type="lost", message="the GPU service lost the job", retryable=True)


def error_label(error_type: str) -> str:
    """An error type as a metric label: the known short names as they are, anything else
    "other" (a backend's free text must not grow the metric without bound)."""
    return error_type if ERROR_TYPE.fullmatch(error_type) else "other"


@dataclass
class InFlight:
    """A job this master holds."""

    job: JobRecord
    backend_job_id: str | None = None
    cancel_requested: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last_progress: float = 0.0


class BackendIds:
    """Which flight follows which backend job (webhooks name the backend job)."""

    def __init__(self) -> None:
        self.flights: dict[str, InFlight] = {}

    def track(self, flight: InFlight, backend_job_id: str) -> None:
        flight.backend_job_id = backend_job_id
        self.flights[backend_job_id] = flight

    def untrack(self, flight: InFlight) -> None:
        """Forget the flight's backend job (never a newer flight's)."""
        if flight.backend_job_id is not None:
            if self.flights.get(flight.backend_job_id) is flight:
                del self.flights[flight.backend_job_id]
            flight.backend_job_id = None


class JobFollower:
    """Follows each job a dispatcher claimed, one asyncio task per job."""

    def __init__(
        self,
        settings: Settings,
        queue: GenerationQueue,
        backend: Backend,
        storage: Storage,
        metrics: MasterMetrics,
        calls: Calls,
        paused: Paused,
        ids: BackendIds,
    ) -> None:
        self.settings = settings
        self.master = settings.master
        self.queue = queue
        self.backend = backend
        self.storage = storage
        self.metrics = metrics
        self.calls = calls
        self.paused = paused
        self.ids = ids

    async def follow(self, flight: InFlight) -> None:
        """Take one claimed job to its outcome and write it (or drop it, lease lost)."""
        job = flight.job
        began = time.monotonic()
        with log_context(public_id=job.public_id, claim=job.claims):
            try:
                poll = await self._until_final(flight)
                if poll is None:  # the user cancelled it
                    return
                self.metrics.backend_time.observe(time.monotonic() - began)
                await self._settle(flight, poll)
            except BackendRefused as exc:
                # Not the job's fault: it goes back to the queue untouched.
                self.paused.start(exc)
                with contextlib.suppress(LeaseLost):
                    await self.calls.db(self.queue.hand_back, job)
            except LeaseLost:
                self.metrics.lease_lost.inc()
                log.warning(
                    "lost the lease; another holder owns the job",
                    extra={"action": "job.lease_lost"},
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                # The lease expires and the job comes back; this master carries on.
                log.exception("following the job failed", extra={"action": "job.follow_error"})

    async def _until_final(self, flight: InFlight) -> Poll | None:
        """The backend job's final poll, a failed one at the deadline, or None if cancelled."""
        deadline = asyncio.timeout(self.master.deadline_s())
        try:
            async with deadline:
                return await self._watch(flight)
        except TimeoutError:
            if not deadline.expired():
                raise
        return await self._give_up(flight)

    async def _watch(self, flight: InFlight) -> Poll | None:
        poll = await self._start(flight)
        interval = self.master.poll_interval_s
        while poll is not None and not poll.phase.is_final:
            if flight.cancel_requested:
                return await self._cancel(flight)
            await self._report(flight, poll)
            flight.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flight.wake.wait(), interval)
            if flight.cancel_requested:
                continue
            previous, poll = poll.phase, await self._poll(flight)
            # Look less often while nothing changes (a long queue at the backend must
            # not turn into a flood of status calls); a webhook or a cancel still wakes.
            unchanged = poll.phase is previous
            interval = min(interval * 1.5, MAX_POLL_S) if unchanged else self.master.poll_interval_s
        if poll is not None and poll.phase is Phase.LOST:
            # "Not found" several times over; should it exist after all, it must not run
            # beside the job's next try.
            await self._cancel_backend_job(flight)
        return poll

    async def _start(self, flight: InFlight) -> Poll | None:
        """Adopt the backend job an earlier holder left, or submit a new one (None: the
        user cancelled it before it reached the backend)."""
        job = flight.job
        if job.backend_job_id:
            self.ids.track(flight, job.backend_job_id)
            poll = await self._poll(flight)
            if poll.phase is not Phase.LOST:
                adopt = functools.partial(self.queue.mark_running, adopted=True)
                await self.calls.write(adopt, job)
                self.metrics.adopted.inc()
                log.info(
                    "adopted a backend job",
                    extra={"action": "job.adopt", "backend_job_id": job.backend_job_id},
                )
                return poll
            # The backend forgot it: make sure it cannot still run, then submit anew.
            await self._cancel_backend_job(flight)
            self.ids.untrack(flight)
        if job.attempts >= job.max_attempts:
            return Poll(phase=Phase.FAILED, error=job.error or NO_TRIES_LEFT)
        return await self._submit(flight)

    async def _submit(self, flight: InFlight) -> Poll | None:
        job = flight.job
        request = worker_input(job, self.settings, self.storage)
        unknown = job.submitting_since is not None  # an earlier holder died submitting
        delay = 0.5
        while True:
            if flight.cancel_requested:
                await self._finish_cancelled(flight)
                return None
            if self.paused.refusal is not None:  # another job just heard the refusal
                raise self.paused.refusal
            if unknown:
                self.metrics.lost_submits.inc()
                log.warning(
                    "an earlier submit of this job may have reached the backend",
                    extra={"action": "job.submit_unknown"},
                )
            await self.calls.write(self.queue.begin_submit, job)
            try:
                backend_job_id = await self.calls.bounded(self.backend.submit(request))
                break
            except JobRejected as exc:
                await self.calls.write(self.queue.abort_submit, job)
                error = ErrorInfo(type="invalid_input", message=str(exc), retryable=False)
                return Poll(phase=Phase.FAILED, error=error)
            except (BackendRefused, SubmitNotSent) as exc:
                await self.calls.write(self.queue.abort_submit, job)
                if isinstance(exc, BackendRefused):
                    raise
                unknown = False
                log.warning("backend unavailable: %s", exc, extra={"action": "backend.retry"})
            except BackendUnavailable as exc:
                unknown = True  # it may have been accepted before the answer was lost
                log.warning("backend unavailable: %s", exc, extra={"action": "backend.retry"})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        self.ids.track(flight, backend_job_id)
        try:
            await self.calls.write(self.queue.mark_running, job, backend_job_id)
        except LeaseLost:
            # Someone else holds the job now and will submit it themselves: stop ours.
            await self._cancel_backend_job(flight)
            raise
        log.info(
            "submitted",
            extra={
                "action": "job.submit",
                "backend_job_id": backend_job_id,
                "backend": self.backend.name,
            },
        )
        return Poll(phase=Phase.QUEUED)

    async def _poll(self, flight: InFlight) -> Poll:
        assert flight.backend_job_id is not None
        return await self.calls.backend(self.backend.poll, flight.backend_job_id)

    async def _report(self, flight: InFlight, poll: Poll) -> None:
        progress = poll.progress or {}
        now = time.monotonic()
        if (
            "fraction" not in progress
            or now - flight.last_progress < self.master.progress_interval_s
        ):
            return
        flight.last_progress = now
        note = progress.get("stage")
        if progress.get("steps"):
            note = f"step {progress.get('step')}/{progress.get('steps')}"
        await self.calls.write(
            self.queue.set_progress, flight.job, float(progress["fraction"]), note
        )

    async def _cancel(self, flight: InFlight) -> Poll | None:
        """Stop the backend job the user cancelled; if its images won the race, the
        completed poll (delivered with a note), else None once the job is cancelled."""
        if flight.backend_job_id is not None:
            await self._cancel_backend_job(flight)
            with contextlib.suppress(BackendUnavailable, BackendRefused):
                poll = await self.calls.bounded(self.backend.poll(flight.backend_job_id))
                if poll.phase is Phase.COMPLETED:
                    return poll
        await self._finish_cancelled(flight)
        return None

    async def _finish_cancelled(self, flight: InFlight) -> None:
        await self.calls.write(self.queue.finish_cancelled, flight.job)
        self.metrics.cancelled.inc()
        log.info("cancelled by the user", extra={"action": "job.cancelled"})

    async def _give_up(self, flight: InFlight) -> Poll:
        """Past the deadline: stop the backend job (best effort) and fail the attempt."""
        self.metrics.overdue.inc()
        log.warning(
            "no outcome from the backend within %ss; cancelling its job",
            self.master.deadline_s(),
            extra={"action": "job.overdue", "backend_job_id": flight.backend_job_id},
        )
        await self._cancel_backend_job(flight)
        return Poll(phase=Phase.FAILED, error=OVERDUE)

    async def _cancel_backend_job(self, flight: InFlight) -> None:
        if flight.backend_job_id is None:
            return
        with contextlib.suppress(BackendUnavailable, BackendRefused):
            await self.calls.bounded(self.backend.cancel(flight.backend_job_id))

    async def _settle(self, flight: InFlight, poll: Poll) -> None:
        job = flight.job
        if poll.phase is Phase.COMPLETED and poll.output is not None:
            result = JobResult(images=poll.output.images, timings=poll.output.timings)
            await self.calls.write(self.queue.complete, job, result)
            self.metrics.succeeded.inc()
            if result.timings is not None:
                self.metrics.gpu_seconds.inc(result.timings.execute_ms / 1000)
            log.info("succeeded", extra={"action": "job.succeeded", "images": len(result.images)})
            return
        error = poll.error or ErrorInfo(
            type="unknown", message="the GPU job failed", retryable=True
        )
        self.metrics.worker_errors.labels(error_label(error.type)).inc()
        outcome = await self.calls.write(self.queue.fail, job, error)
        {
            FailOutcome.RETRYING: self.metrics.retried,
            FailOutcome.FAILED: self.metrics.failed,
            FailOutcome.CANCELLED: self.metrics.cancelled,
        }[outcome].inc()
        log.info(
            "backend job failed: %s",
            error.message,
            extra={"action": f"job.{outcome.value}", "error_type": error.type},
        )
