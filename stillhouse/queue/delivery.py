"""send_queue: claim, renew, mark sent, retry, fail, reap.

Any bot process may deliver any row; the claim (FOR UPDATE SKIP LOCKED plus a lease) makes
it one process, and mark_sent is conditional on still holding the lease, so a row whose
sender died is sent again only after its lease expired.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from stillhouse.errors import LeaseLost
from stillhouse.queue.base import QueueTable
from stillhouse.queue.records import DeliveryRecord, LeaseStatus, ReapReport
from stillhouse.queue.statements import SENDS, lease_sends, pending_sends
from stillhouse.schemas.states import DeliveryStatus

_C = SENDS.c


class SendQueue(QueueTable):
    """Named operations on send_queue; each is one transaction."""

    def claim(
        self, owner: str, limit: int = 10, partitions: Sequence[int] | None = None
    ) -> list[DeliveryRecord]:
        """Lease up to `limit` pending rows whose time has come."""
        if limit < 1:
            raise ValueError(f"claim limit must be at least 1, got {limit}")
        now = self._clock()
        chosen = tuple(sorted(self._partitions(partitions)))
        expires = now + timedelta(seconds=self._settings.delivery_lease_s)
        with self._engine.begin() as conn:
            rows = pending_sends(limit, chosen).mappings(conn, {"now": now})
            if not rows:
                return []
            lease = {"owner": owner, "expires": expires, "now": now}
            lease.update({f"id_{n}": row["id"] for n, row in enumerate(rows)})
            lease_sends(len(rows)).execute(conn, lease)
        leased = {
            "status": DeliveryStatus.SENDING,
            "lease_owner": owner,
            "lease_expires_at": expires,
            "updated_at": now,
        }
        return [DeliveryRecord.from_row(r | leased | {"attempts": r["attempts"] + 1}) for r in rows]

    def get(self, delivery_id: int) -> DeliveryRecord | None:
        """One row by id."""
        with self._engine.connect() as conn:
            row = conn.execute(select(SENDS).where(_C.id == delivery_id)).mappings().first()
        return None if row is None else DeliveryRecord.from_row(row)

    def for_job(self, job_id: int) -> list[DeliveryRecord]:
        """Every row written for a job, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(SENDS).where(_C.job_id == job_id).order_by(_C.id)).mappings()
            return [DeliveryRecord.from_row(r) for r in rows]

    def renew(self, owner: str, delivery_ids: Iterable[int]) -> LeaseStatus:
        """Extend the leases `owner` still holds."""
        ids = list(delivery_ids)
        now = self._clock()
        mine = and_(_C.id.in_(ids), _C.lease_owner == owner, _C.status == DeliveryStatus.SENDING)
        with self._engine.begin() as conn:
            conn.execute(
                update(SENDS)
                .where(mine)
                .values(
                    lease_expires_at=now + timedelta(seconds=self._settings.delivery_lease_s),
                    updated_at=now,
                )
            )
            held = conn.execute(select(_C.id).where(mine)).scalars().all()
        return LeaseStatus(held=frozenset(held), cancel_requested=frozenset())

    def mark_sent(self, row: DeliveryRecord, discord_message_id: int | None = None) -> None:
        """The message reached the user."""
        now = self._clock()
        self._update_held(
            row,
            status=DeliveryStatus.SENT,
            discord_message_id=discord_message_id,
            sent_at=now,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    def retry(self, row: DeliveryRecord, error: str, delay_s: float | None = None) -> bool:
        """Try again later (Discord 5xx, 429's Retry-After); False when attempts are spent."""
        now = self._clock()
        with self._engine.begin() as conn:
            return self._settle(conn, row, error, now, _held(row), delay_s)

    def fail(self, row: DeliveryRecord, error: str) -> None:
        """Give up at once (a Discord 4xx that cannot succeed)."""
        now = self._clock()
        self._update_held(
            row,
            status=DeliveryStatus.FAILED,
            last_error=error[:2000],
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    def reap_expired(self, limit: int = 500) -> ReapReport:
        """Return rows whose sender vanished to pending, or fail them when spent."""
        now = self._clock()
        with self._engine.begin() as conn:
            rows = (
                conn.execute(
                    select(SENDS)
                    .where(_C.status == DeliveryStatus.SENDING, _C.lease_expires_at < now)
                    .order_by(_C.lease_expires_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            settled = Counter(
                self._settle(conn, r, "sender stopped responding", now, _C.id == r.id, None)
                for r in (DeliveryRecord.from_row(row) for row in rows)
            )
        return ReapReport(requeued=settled[True], failed=settled[False])

    def backlog(self) -> tuple[int, float]:
        """Rows waiting to be sent, and how long the oldest has waited in seconds (0 when
        none): what an operator alarms on when bots fall behind or Discord refuses."""
        now = self._clock()
        with self._engine.connect() as conn:
            count, oldest = conn.execute(
                select(func.count(), func.min(_C.created_at)).where(
                    _C.status == DeliveryStatus.PENDING
                )
            ).one()
        waited = (now - oldest).total_seconds() if oldest is not None else 0.0
        return int(count), max(0.0, waited)

    def counts(self) -> dict[DeliveryStatus, int]:
        """Rows per status (for stats and tests)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(_C.status, func.count()).group_by(_C.status)).all()
        return {DeliveryStatus(status): n for status, n in rows}

    def _settle(
        self,
        conn: Connection,
        row: DeliveryRecord,
        error: str,
        now: datetime,
        where: ColumnElement[bool],
        delay_s: float | None,
    ) -> bool:
        again = row.attempts < row.max_attempts
        values: dict[str, Any] = {
            "status": DeliveryStatus.PENDING if again else DeliveryStatus.FAILED,
            "last_error": error[:2000],
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if again:
            delay = (
                timedelta(seconds=delay_s) if delay_s is not None else self._backoff(row.attempts)
            )
            values["run_after"] = now + delay
        if conn.execute(update(SENDS).where(where).values(values)).rowcount != 1:
            raise LeaseLost(f"send row {row.id} is no longer held by {row.lease_owner}")
        return again

    def _update_held(self, row: DeliveryRecord, **values: Any) -> None:
        with self._engine.begin() as conn:
            if conn.execute(update(SENDS).where(_held(row)).values(**values)).rowcount != 1:
                raise LeaseLost(f"send row {row.id} is no longer held by {row.lease_owner}")


def _held(row: DeliveryRecord) -> ColumnElement[bool]:
    return and_(
        _C.id == row.id,
        _C.lease_owner == row.lease_owner,
        _C.attempts == row.attempts,
        _C.status == DeliveryStatus.SENDING,
    )
