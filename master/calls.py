"""How a master makes its calls: queue operations off the event loop, retried through a
database outage; backend calls bounded in time and retried while the backend is away;
and the pause that stops all dispatch while the backend refuses this deployment."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from master.backends.base import Backend, BackendRefused, BackendUnavailable
from master.metrics import MasterMetrics
from master.writes import GroupCommit
from stillhouse.config import Settings
from stillhouse.db.engine import is_conflict, is_outage

log = logging.getLogger(__name__)
T = TypeVar("T")
DB_RETRY_FIRST_S = 0.2
DB_RETRY_MAX_S = 5.0
BACKEND_RETRY_FIRST_S = 0.5
BACKEND_RETRY_MAX_S = 10.0
PROBE_FIRST_S = 2.0
PROBE_MAX_S = 60.0


class Paused:
    """Dispatch stopped because the backend refuses this deployment (bad key, unknown
    endpoint): no job is claimed or failed for it; a health probe ends it."""

    def __init__(self, metrics: MasterMetrics) -> None:
        self._metrics = metrics
        self.refusal: BackendRefused | None = None
        self.probe_in_s = PROBE_FIRST_S

    @property
    def active(self) -> bool:
        """True while dispatch is paused."""
        return self.refusal is not None

    def start(self, refusal: BackendRefused) -> None:
        """Pause (once: repeated refusals only keep it paused)."""
        if self.refusal is None:
            log.error(
                "dispatch paused: %s",
                refusal,
                extra={"action": "dispatch.paused", "cause": refusal.cause},
            )
            self._metrics.paused.labels(refusal.cause).set(1)
            self.probe_in_s = PROBE_FIRST_S
        self.refusal = refusal

    def end(self) -> None:
        """The backend answers again."""
        if self.refusal is not None:
            log.warning("dispatch resumed", extra={"action": "dispatch.resumed"})
            self._metrics.paused.labels(self.refusal.cause).set(0)
        self.refusal = None

    def problem(self) -> str | None:
        """What /healthz reports while paused."""
        return None if self.refusal is None else f"dispatch paused: {self.refusal}"


class Calls:
    """The database and the backend, as a master calls them."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        metrics: MasterMetrics,
        paused: Paused,
        group: GroupCommit | None = None,
    ) -> None:
        self._settings = settings
        self._group = group
        self._backend = backend
        self._paused = paused
        self._metrics = metrics

    async def db(self, operation: Callable[..., T], *args: Any) -> T:
        """A queue operation off the event loop, retried through a database outage (and
        after losing a deadlock or a lock wait) for as long as a lease lasts: a job's
        outcome written after a short outage still counts, and past a lease the job is
        another holder's anyway."""
        return await self._retried(asyncio.to_thread, operation, *args)

    async def write(self, operation: Callable[..., T], *args: Any) -> T:
        """A write to a held job, committed together with other jobs' writes (see
        master.writes), retried like `db`."""
        if self._group is None:
            return await self.db(operation, *args)
        return await self._retried(self._group.write, operation, *args)

    async def _retried(
        self,
        run: Callable[..., Awaitable[T]],
        operation: Callable[..., T],
        *args: Any,
    ) -> T:
        delay = DB_RETRY_FIRST_S
        give_up = time.monotonic() + self._settings.queue.lease_s
        while True:
            try:
                return await run(operation, *args)
            except DBAPIError as exc:
                conflict = is_conflict(exc)
                if not (conflict or is_outage(exc)) or time.monotonic() + delay > give_up:
                    raise
                why = "lost a lock conflict" if conflict else "database unavailable"
                log.warning("%s; retrying in %ss", why, delay, extra={"action": "db.retry"})
                await asyncio.sleep(delay)
                delay = min(delay * 2, DB_RETRY_MAX_S)

    async def backend(self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A backend call, retried with backoff while the backend is unreachable, slow or
        refusing (which pauses dispatch); the job's deadline ends the retries."""
        delay = BACKEND_RETRY_FIRST_S
        while True:
            try:
                return await self.bounded(call(*args))
            except BackendRefused as exc:
                self._paused.start(exc)
            except BackendUnavailable as exc:
                log.warning("backend unavailable: %s", exc, extra={"action": "backend.retry"})
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKEND_RETRY_MAX_S)

    async def bounded(self, call: Awaitable[T]) -> T:
        """One backend call within `backend_call_timeout_s`; past it, the backend counts
        as unreachable (a hung connection must not hold the job for ever)."""
        limit = self._settings.master.backend_call_timeout_s
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError as exc:  # ours or the backend client's own
            raise BackendUnavailable(f"no answer within {limit}s") from exc

    async def probe(self) -> None:
        """While paused: ask the backend's health; resume once it answers."""
        try:
            await self.bounded(self._backend.health())
        except BackendRefused as exc:
            self._paused.start(exc)
        except BackendUnavailable as exc:
            log.info("backend still unavailable: %s", exc, extra={"action": "dispatch.probe"})
        else:
            self._paused.end()
            return
        self._paused.probe_in_s = min(self._paused.probe_in_s * 2, PROBE_MAX_S)
