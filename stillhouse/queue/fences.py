"""The fence between progress edits and the final answer of a Discord request.

The answer replaces the request's message (an edit of the interaction's original
response: idempotent, so a sender killed after Discord took it can simply send it again).
A progress edit of the same message must then never land after the answer. A round of
progress edits first takes the fence of each job it edits — possible only while the job
is unfinished, and serialised with the job's final write by the row's lock — for as long
as the edits may take; an answer waits until its job's fence is released or lapses. No
fence can be taken once the job has ended, so a look at it after the end is final.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from stillhouse.queue.base import QueueTable
from stillhouse.queue.statements import JOBS
from stillhouse.schemas.states import ACTIVE_JOB_STATES, JobStatus

_C = JOBS.c
_UNFINISHED = or_(*(_C.status == s for s in (JobStatus.QUEUED, *ACTIVE_JOB_STATES)))


class MessageFence(QueueTable):
    """Who may write a request's Discord message, and until when."""

    def take(self, public_ids: Sequence[str], hold_s: float) -> tuple[datetime, frozenset[str]]:
        """Before a round of progress edits: the fence until `hold_s` from now, and the
        jobs it was taken for (those that have not ended: their messages are theirs)."""
        until = self._clock() + timedelta(seconds=hold_s)
        if not public_ids:
            return until, frozenset()
        wanted = _C.public_id.in_(list(public_ids))
        with self._engine.begin() as conn:
            conn.execute(update(JOBS).where(wanted, _UNFINISHED).values(message_edit_until=until))
            held = conn.execute(
                select(_C.public_id).where(wanted, _C.message_edit_until == until)
            ).scalars()
            return until, frozenset(held)

    def release(self, public_ids: Sequence[str], until: datetime) -> None:
        """After the edits landed (or failed): let the answers go at once."""
        if not public_ids:
            return
        with self._engine.begin() as conn:
            conn.execute(
                update(JOBS)
                .where(_C.public_id.in_(list(public_ids)), _C.message_edit_until == until)
                .values(message_edit_until=None)
            )

    def held_until(self, job_ids: Sequence[int]) -> dict[int, datetime]:
        """The jobs among these with a progress edit that may still land, and until when."""
        if not job_ids:
            return {}
        now = self._clock()
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_C.id, _C.message_edit_until).where(
                    _C.id.in_(list(job_ids)), _C.message_edit_until > now
                )
            ).all()
        return {job_id: until for job_id, until in rows}
