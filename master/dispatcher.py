"""The dispatcher: claim jobs in batches and follow each to an outcome (master.follower),
one asyncio task per job in flight; one task renews every lease this master holds; one
looks for users' cancels every `cancel_check_interval_s`; while the backend refuses this
deployment, dispatch pauses and a probe waits for it to answer.

A master that dies leaves leases that expire; the job goes back to the queue with its
backend job id, and the next master adopts that backend job instead of running it twice.

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
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError

from master.backends.base import (
    Backend,
)
from master.calls import Calls, Paused
from master.follower import BackendIds, InFlight, JobFollower
from master.metrics import MasterMetrics
from master.writes import GroupCommit
from stillhouse import hints
from stillhouse.config import Settings
from stillhouse.errors import LeaseLost
from stillhouse.queue import GenerationQueue
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.states import JobStatus
from stillhouse.storage import Storage

log = logging.getLogger(__name__)
LOOP_RESTART_S = 1.0


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
        wake: hints.Hints | None = None,
    ) -> None:
        self.settings = settings
        self.master = settings.master
        self.queue = queue
        self.backend = backend
        self.storage = storage
        self.metrics = metrics
        self.owner = owner
        self.paused = Paused(metrics)
        self.calls = Calls(settings, backend, metrics, self.paused, GroupCommit(queue))
        self.in_flight: dict[int, InFlight] = {}
        self.ids = BackendIds()
        self.follower = JobFollower(
            settings, queue, backend, storage, metrics, self.calls, self.paused, self.ids
        )
        backend.watch(self.notify)
        self.stopping = asyncio.Event()
        self.capacity_freed = asyncio.Event()
        self.hints = wake or hints.InProcessHints()
        self._jobs_seen: int | None = None

    # -- the loop -------------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False) -> None:
        """Claim and follow jobs until stop() (or, with until_idle, until nothing is left)."""
        helpers = [
            asyncio.create_task(self._forever("renew", self._renew_once, self._renew_every())),
            asyncio.create_task(
                self._forever(
                    "cancels", self._look_for_cancels, self.master.cancel_check_interval_s
                )
            ),
        ]
        try:
            pause = self.master.claim_interval_s
            # Jobs queued before this are found by the first claim; a later one moves it.
            self._jobs_seen = await asyncio.to_thread(self.hints.version, hints.JOBS)
            while not self.stopping.is_set():
                claimed = 0
                full = False  # as many as asked for: more may be waiting, look again now
                try:
                    if self.paused.active:
                        await self._probe_later()
                        continue
                    claimed, full = await self._claim()
                    drained = until_idle and not claimed and not self.in_flight
                    if drained and await self._drained():
                        return
                    pause = self.master.claim_interval_s
                except DBAPIError as exc:
                    # However long the database is away, this master waits for it.
                    pause = min(max(pause * 2, 0.2), 5.0)
                    log.warning(
                        "database unavailable; claiming again in %.1fs: %s",
                        pause,
                        type(exc.orig).__name__,
                        extra={"action": "db.claim_retry"},
                    )
                except Exception:  # a bug must not stop dispatch unseen
                    self.metrics.loop_errors.labels("claim").inc()
                    log.exception("claiming failed", extra={"action": "loop.error"})
                    pause = LOOP_RESTART_S
                if not full:  # a job queued meanwhile has moved the hint: no wake is lost
                    await self._idle(pause)
        finally:
            await self._drain()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def stop(self) -> None:
        """Stop claiming; run() then drains (SIGTERM)."""
        self.stopping.set()
        self.capacity_freed.set()

    def notify(self, backend_job_id: str) -> None:
        """A webhook said this backend job changed: look at it now."""
        flight = self.ids.flights.get(backend_job_id)
        if flight is not None:
            flight.wake.set()

    def problem(self) -> str | None:
        """Why this master is unhealthy, if it is."""
        return self.paused.problem()

    async def _claim(self) -> tuple[int, bool]:
        """Jobs claimed, and whether that was as many as asked for."""
        free = self.master.max_in_flight - len(self.in_flight)
        if self.backend.capacity is not None:
            free = min(free, self.backend.capacity - len(self.in_flight))
        if free <= 0:
            return 0, False
        limit = min(free, self.master.claim_batch)
        jobs = await self.calls.db(self._claim_up_to, limit)
        for job in jobs:
            flight = InFlight(job, cancel_requested=job.cancel_requested)
            self.in_flight[job.id] = flight
            flight.task = asyncio.create_task(
                self.follower.follow(flight), name=f"job-{job.public_id}"
            )
            # Forget the job however its task ends, even cancelled before its first step
            # (then no line of follow runs): a flight left behind keeps its lease renewed
            # for ever with no one following the job.
            flight.task.add_done_callback(functools.partial(self._ended, flight))
            self.metrics.claimed.inc()
            if job.dispatched_at is not None:
                self.metrics.queue_wait.observe(
                    (job.dispatched_at - job.created_at).total_seconds()
                )
        self.metrics.in_flight.set(len(self.in_flight))
        return len(jobs), len(jobs) == limit

    def _claim_up_to(self, limit: int) -> list[JobRecord]:
        """Claim at most `limit` jobs, fewer under the deployment's cap on jobs at the
        backend (counted in the claim's transaction)."""
        return self.queue.claim(
            self.owner,
            limit,
            self.master.partition_list(),
            backend_cap=self.master.backend_max_in_flight,
        )

    async def _probe_later(self) -> None:
        """While paused: wait (longer each time), then ask whether the backend answers."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), self.paused.probe_in_s)
        if not self.stopping.is_set():
            await self.calls.probe()

    async def _idle(self, seconds: float) -> None:
        """Wait `seconds`, or less: a job of ours ended, or a front queued a new job."""
        self.capacity_freed.clear()
        self._jobs_seen = await hints.changed_or_set(
            self.hints, hints.JOBS, self._jobs_seen, seconds, self.capacity_freed
        )

    async def _drained(self) -> bool:
        counts = await self.calls.db(self.queue.depth)
        return counts.get(JobStatus.QUEUED, 0) == 0

    # -- leases and cancels ---------------------------------------------------------------

    def _renew_every(self) -> float:
        return self.settings.queue.lease_s / 3

    async def _forever(self, name: str, step: Callable[[], Awaitable[None]], every: float) -> None:
        """Run `step` every `every` seconds while jobs are held; an exception is logged
        and counted, never the end of the loop (a dead renewer lets every lease lapse)."""
        while True:
            await asyncio.sleep(every)
            if not self.in_flight:
                continue
            try:
                await step()
            except DBAPIError:
                log.warning("database unavailable", extra={"action": f"{name}.db_error"})
            except Exception:
                self.metrics.loop_errors.labels(name).inc()
                log.exception("%s failed", name, extra={"action": "loop.error"})

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
            elif job_id in status.cancel_requested:
                self._cancel_requested(flight)

    async def _look_for_cancels(self) -> None:
        for job_id in await asyncio.to_thread(self.queue.cancels_for, self.owner):
            flight = self.in_flight.get(job_id)
            if flight is not None:
                self._cancel_requested(flight)

    def _cancel_requested(self, flight: InFlight) -> None:
        if not flight.cancel_requested:
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
                self.hints.bump(hints.JOBS)  # another master takes it now
                log.info(
                    "handed back",
                    extra={"action": "job.hand_back", "public_id": flight.job.public_id},
                )
            self._forget(flight)

    # -- plumbing -------------------------------------------------------------------------

    def _ended(self, flight: InFlight, _task: asyncio.Task[None]) -> None:
        self._forget(flight)

    def _forget(self, flight: InFlight) -> None:
        """Stop holding the job (idempotent; never touches a newer flight of the same job)."""
        if self.in_flight.get(flight.job.id) is flight:
            del self.in_flight[flight.job.id]
        self.ids.untrack(flight)
        self.metrics.in_flight.set(len(self.in_flight))
        self.capacity_freed.set()
