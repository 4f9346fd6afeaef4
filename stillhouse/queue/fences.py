"""The fence between progress edits and the final answer of a Discord request.

The answer replaces the request's message (an edit of the interaction's original
response: idempotent, so a sender killed after Discord took it can simply send it again).
A progress edit of the same message must then never land after the answer. Each progress
edit first takes the fence — possible only while the job is unfinished, and serialised
with the job's final write by the row's lock — for as long as the edit may take; the
answer waits until the fence is released or lapses.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from stillhouse.queue.base import QueueTable
from stillhouse.queue.statements import JOBS
from stillhouse.schemas.states import ACTIVE_JOB_STATES, JobStatus

_C = JOBS.c
_UNFINISHED = or_(*(_C.status == s for s in (JobStatus.QUEUED, *ACTIVE_JOB_STATES)))


class MessageFence(QueueTable):
    """Who may write a request's Discord message, and until when."""

    def take(self, public_id: str, hold_s: float) -> datetime | None:
        """Before a progress edit: the fence until `hold_s` from now, or None once the
        job has ended (its answer owns the message from then on)."""
        until = self._clock() + timedelta(seconds=hold_s)
        with self._engine.begin() as conn:
            taken = conn.execute(
                update(JOBS)
                .where(_C.public_id == public_id, _UNFINISHED)
                .values(message_edit_until=until)
            ).rowcount
        return until if taken == 1 else None

    def release(self, public_id: str, until: datetime) -> None:
        """After the edit landed (or failed): let the answer go at once."""
        with self._engine.begin() as conn:
            conn.execute(
                update(JOBS)
                .where(_C.public_id == public_id, _C.message_edit_until == until)
                .values(message_edit_until=None)
            )

    def held_until(self, job_id: int) -> datetime | None:
        """When the last progress edit's fence lapses (None: nothing in flight)."""
        with self._engine.connect() as conn:
            until = conn.execute(
                select(_C.message_edit_until).where(_C.id == job_id)
            ).scalar_one_or_none()
        return None if until is None or until <= self._clock() else until
