"""The dispatcher: claim jobs in batches, hand each to the backend, follow it to an
outcome, write that outcome. One asyncio task per job in flight; one task renews every
lease this master holds and picks up users' cancel requests.

A job this master loses (its lease reaped, a cancel finished elsewhere) is dropped
without writing anything. A master that dies leaves leases that expire; the job goes back
to the queue with its backend job id, and the next master adopts that backend job
instead of running it twice.

Liveness: a held lease is renewed for as long as the job is followed, so following must
end. Every backend call has a time limit, and a job with no outcome from the backend by
its deadline (`job_timeout_s + backend_queue_s` after the claim) is cancelled there and
failed as retryable: it runs again after a backoff or fails with a row for its user.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from master.backends.base import Backend, BackendUnavailable, Phase, Poll
from master.metrics import MasterMetrics
from master.requests import worker_input
from stillhouse.config import Settings
from stillhouse.db.engine import is_outage
from stillhouse.errors import LeaseLost
from stillhouse.logs import log_context
from stillhouse.queue import GenerationQueue
from stillhouse.queue.records import FailOutcome, JobRecord
from stillhouse.schemas.jobs import JobResult
from stillhouse.schemas.states import JobStatus
from stillhouse.schemas.worker_io import ErrorInfo
from stillhouse.storage import Storage

log = logging.getLogger(__name__)
T = TypeVar("T")
DB_RETRY_FIRST_S = 0.2
DB_RETRY_MAX_S = 5.0
MAX_POLL_S = 10.0
OVERDUE = ErrorInfo(
    type="timeout", message="the GPU service gave no result in time", retryable=True
)


@dataclass
class InFlight:
    """A job this master holds."""

    job: JobRecord
    backend_job_id: str | None = None
    cancel_requested: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last_progress: float = 0.0


class Dispatcher:
    """Claims, submits, follows and settles jobs for one master."""

    def __init__(
        self,
        settings: Settings,
        queue: GenerationQueue,
        backend: Backend,
        storage: Storage,
        metrics: MasterMetrics,
        owner: str,
    ) -> None:
        self.settings = settings
        self.master = settings.master
        self.queue = queue
        self.backend = backend
        self.storage = storage
        self.metrics = metrics
        self.owner = owner
        self.in_flight: dict[int, InFlight] = {}
        self.by_backend_id: dict[str, InFlight] = {}
        self.stopping = asyncio.Event()
        self.capacity_freed = asyncio.Event()

    # -- the loop -------------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False) -> None:
        """Claim and follow jobs until stop() (or, with until_idle, until nothing is left)."""
        renewer = asyncio.create_task(self._renew_forever(), name="renew-leases")
        try:
            pause = self.master.claim_interval_s
            while not self.stopping.is_set():
                try:
                    claimed = await self._claim()
                    drained = until_idle and not claimed and not self.in_flight
                    if drained and await self._drained():
                        return
                    pause = self.master.claim_interval_s
                except DBAPIError as exc:
                    # However long the database is away, this master waits for it.
                    claimed = 0
                    pause = min(max(pause * 2, DB_RETRY_FIRST_S), DB_RETRY_MAX_S)
                    log.warning(
                        "database unavailable; claiming again in %.1fs: %s",
                        pause,
                        type(exc.orig).__name__,
                        extra={"action": "db.claim_retry"},
                    )
                if not claimed:
                    await self._idle(pause)
        finally:
            await self._drain()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    def stop(self) -> None:
        """Stop claiming; run() then drains (SIGTERM)."""
        self.stopping.set()
        self.capacity_freed.set()

    def notify(self, backend_job_id: str) -> None:
        """A webhook said this backend job changed: look at it now."""
        flight = self.by_backend_id.get(backend_job_id)
        if flight is not None:
            flight.wake.set()

    async def _claim(self) -> int:
        free = self.master.max_in_flight - len(self.in_flight)
        if self.backend.capacity is not None:
            free = min(free, self.backend.capacity - len(self.in_flight))
        if free > 0 and self.master.backend_max_in_flight:
            active = await self._db(self.queue.active_count)
            free = min(free, self.master.backend_max_in_flight - active)
        if free <= 0:
            return 0
        limit = min(free, self.master.claim_batch)
        partitions = self.master.partition_list()
        jobs = await self._db(self.queue.claim, self.owner, limit, partitions)
        for job in jobs:
            flight = InFlight(job)
            self.in_flight[job.id] = flight
            flight.task = asyncio.create_task(self._follow(flight), name=f"job-{job.public_id}")
            # Forget the job however its task ends, even cancelled before its first step
            # (then no line of _follow runs): a flight left behind keeps its lease renewed
            # for ever with no one following the job.
            flight.task.add_done_callback(functools.partial(self._ended, flight))
            self.metrics.claimed.inc()
            if job.dispatched_at is not None:
                self.metrics.queue_wait.observe(
                    (job.dispatched_at - job.created_at).total_seconds()
                )
        self.metrics.in_flight.set(len(self.in_flight))
        return len(jobs)

    async def _idle(self, seconds: float) -> None:
        self.capacity_freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.capacity_freed.wait(), timeout=seconds)

    async def _drained(self) -> bool:
        counts = await self._db(self.queue.depth)
        return counts.get(JobStatus.QUEUED, 0) == 0

    # -- one job --------------------------------------------------------------------------

    async def _follow(self, flight: InFlight) -> None:
        job = flight.job
        began = time.monotonic()
        with log_context(public_id=job.public_id, attempt=job.attempts):
            try:
                poll = await self._until_final(flight)
                if poll is None:  # the user cancelled it
                    return
                self.metrics.backend_time.observe(time.monotonic() - began)
                await self._settle(flight, poll)
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
        while not poll.phase.is_final:
            if flight.cancel_requested:
                await self._cancel(flight)
                return None
            await self._report(flight, poll)
            flight.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flight.wake.wait(), interval)
            previous, poll = poll.phase, await self._poll(flight)
            # Look less often while nothing changes (a long queue at the backend must
            # not turn into a flood of status calls); a webhook still wakes.
            unchanged = poll.phase is previous
            interval = min(interval * 1.5, MAX_POLL_S) if unchanged else self.master.poll_interval_s
        return poll

    async def _start(self, flight: InFlight) -> Poll:
        """Adopt the backend job a vanished holder left, or submit a new one."""
        job = flight.job
        if job.backend_job_id:
            self._track(flight, job.backend_job_id)
            poll = await self._poll(flight)
            if poll.phase is not Phase.LOST:
                log.info(
                    "adopted a running backend job",
                    extra={"action": "job.adopt", "backend_job_id": job.backend_job_id},
                )
                return poll
            self._untrack(flight)
        request = worker_input(job, self.settings, self.storage)
        backend_job_id = await self._with_backend(self.backend.submit, request)
        self._track(flight, backend_job_id)
        await self._db(self.queue.mark_running, job, backend_job_id)
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
        poll: Poll = await self._with_backend(self.backend.poll, flight.backend_job_id)
        return poll

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
        await self._db(self.queue.set_progress, flight.job, float(progress["fraction"]), note)

    async def _cancel(self, flight: InFlight) -> None:
        await self._cancel_backend_job(flight)
        await self._db(self.queue.finish_cancelled, flight.job)
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
        with contextlib.suppress(BackendUnavailable):
            await self._bounded(self.backend.cancel(flight.backend_job_id))

    async def _settle(self, flight: InFlight, poll: Poll) -> None:
        job = flight.job
        if poll.phase is Phase.COMPLETED and poll.output is not None:
            result = JobResult(images=poll.output.images, timings=poll.output.timings)
            await self._db(self.queue.complete, job, result)
            self.metrics.succeeded.inc()
            log.info("succeeded", extra={"action": "job.succeeded", "images": len(result.images)})
            return
        error = poll.error or ErrorInfo(
            type="unknown", message="the GPU job failed", retryable=True
        )
        outcome = await self._db(self.queue.fail, job, error)
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

    # -- leases ---------------------------------------------------------------------------

    async def _renew_forever(self) -> None:
        interval = self.settings.queue.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            if not self.in_flight:
                continue
            try:
                await self._renew_once()
            except DBAPIError:
                log.warning(
                    "could not renew leases; retrying", extra={"action": "lease.renew_error"}
                )
            except Exception:  # a renewer that dies would let every lease lapse unseen
                log.exception("renewing leases failed", extra={"action": "lease.renew_error"})

    async def _renew_once(self) -> None:
        # Judge only the flights this renewal asked about: a job claimed while it ran is
        # held but was not renewed, and cancelling it as lost would drop a live job.
        asked = dict(self.in_flight)
        status = await asyncio.to_thread(self.queue.renew, self.owner, list(asked))
        for job_id, flight in asked.items():
            if self.in_flight.get(job_id) is not flight:
                continue  # it ended meanwhile
            if job_id not in status.held and flight.task is not None:
                flight.task.cancel()  # someone else holds it now: write nothing
                self.metrics.lease_lost.inc()
            elif job_id in status.cancel_requested and not flight.cancel_requested:
                flight.cancel_requested = True
                flight.wake.set()

    async def _drain(self) -> None:
        """Give in-flight jobs the grace period, then hand the rest back."""
        tasks = [f.task for f in self.in_flight.values() if f.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.master.drain_grace_s)
        for flight in list(self.in_flight.values()):
            if flight.task is not None:
                flight.task.cancel()
            with contextlib.suppress(LeaseLost, DBAPIError):
                await asyncio.to_thread(self.queue.hand_back, flight.job)
                log.info(
                    "handed back",
                    extra={"action": "job.hand_back", "public_id": flight.job.public_id},
                )
            self._forget(flight)

    # -- plumbing -------------------------------------------------------------------------

    def _track(self, flight: InFlight, backend_job_id: str) -> None:
        flight.backend_job_id = backend_job_id
        self.by_backend_id[backend_job_id] = flight

    def _untrack(self, flight: InFlight) -> None:
        if flight.backend_job_id is not None:
            if self.by_backend_id.get(flight.backend_job_id) is flight:
                del self.by_backend_id[flight.backend_job_id]
            flight.backend_job_id = None

    def _ended(self, flight: InFlight, _task: asyncio.Task[None]) -> None:
        self._forget(flight)

    def _forget(self, flight: InFlight) -> None:
        """Stop holding the job (idempotent; never touches a newer flight of the same job)."""
        if self.in_flight.get(flight.job.id) is flight:
            del self.in_flight[flight.job.id]
        if flight.backend_job_id is not None and (
            self.by_backend_id.get(flight.backend_job_id) is flight
        ):
            del self.by_backend_id[flight.backend_job_id]
        self.metrics.in_flight.set(len(self.in_flight))
        self.capacity_freed.set()

    async def _db(self, operation: Callable[..., T], *args: Any) -> T:
        """A queue operation off the event loop, retried through a database outage for
        as long as a lease lasts: a job's outcome written after a short outage still
        counts, and past a lease the job is another holder's anyway."""
        delay = DB_RETRY_FIRST_S
        give_up = time.monotonic() + self.settings.queue.lease_s
        while True:
            try:
                return await asyncio.to_thread(operation, *args)
            except DBAPIError as exc:
                outage = is_outage(exc)
                if not outage or time.monotonic() + delay > give_up:
                    raise
                log.warning(
                    "database unavailable; retrying in %ss", delay, extra={"action": "db.retry"}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, DB_RETRY_MAX_S)

    async def _with_backend(self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A backend call, retried with backoff while the backend is unreachable or slow
        (the job's deadline ends the retries)."""
        delay = 0.5
        while True:
            try:
                return await self._bounded(call(*args))
            except BackendUnavailable as exc:
                log.warning("backend unavailable: %s", exc, extra={"action": "backend.retry"})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _bounded(self, call: Awaitable[T]) -> T:
        """One backend call within `backend_call_timeout_s`; past it, the backend counts
        as unreachable (a hung connection must not hold the job for ever)."""
        limit = self.master.backend_call_timeout_s
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError as exc:  # ours or the backend client's own
            raise BackendUnavailable(f"no answer within {limit}s") from exc
