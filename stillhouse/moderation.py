"""What operators decide about users and intake: bans, per-user quotas, switches.

Kept in the database, not memcached: a ban or a pause must survive restarts and apply to
every front process at once. Reads are one primary-key lookup each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import Engine, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from stillhouse.db.models import BannedUser, Switch, UserQuota
from stillhouse.queue.timing import Clock, utcnow

BANS = cast(Table, BannedUser.__table__)
QUOTAS = cast(Table, UserQuota.__table__)
SWITCHES = cast(Table, Switch.__table__)

INTAKE_PAUSED = "intake_paused"


class Ban(BaseModel):
    """A banned user and why."""

    user_id: int
    reason: str
    banned_by: int | None
    created_at: datetime


class SwitchState(BaseModel):
    """A switch's value and the note left when it was flipped."""

    enabled: bool
    note: str | None = None


class Moderation:
    """Bans, quotas and switches; each call is one short transaction."""

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def ban(self, user_id: int, reason: str, banned_by: int | None) -> None:
        """Refuse this user from now on (a second ban replaces the reason)."""
        values = {"reason": reason[:255], "banned_by": banned_by, "created_at": self._clock()}
        self._upsert(BANS, BANS.c.user_id, user_id, values)

    def unban(self, user_id: int) -> bool:
        """Lift a ban; False if there was none."""
        with self._engine.begin() as conn:
            return conn.execute(delete(BANS).where(BANS.c.user_id == user_id)).rowcount == 1

    def ban_of(self, user_id: int) -> Ban | None:
        """The user's ban, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(select(BANS).where(BANS.c.user_id == user_id)).mappings().first()
        return None if row is None else Ban.model_validate(dict(row))

    def set_quota(self, user_id: int, daily_jobs: int, set_by: int | None) -> None:
        """This user's own jobs-per-24-hours limit."""
        if daily_jobs < 0:
            raise ValueError("a quota cannot be negative")
        values = {"daily_jobs": daily_jobs, "set_by": set_by, "updated_at": self._clock()}
        self._upsert(QUOTAS, QUOTAS.c.user_id, user_id, values)

    def clear_quota(self, user_id: int) -> bool:
        """Back to the default limit; False if the user had none of their own."""
        with self._engine.begin() as conn:
            return conn.execute(delete(QUOTAS).where(QUOTAS.c.user_id == user_id)).rowcount == 1

    def quota_of(self, user_id: int) -> int | None:
        """The user's own limit, or None for the default."""
        with self._engine.connect() as conn:
            found = conn.execute(
                select(QUOTAS.c.daily_jobs).where(QUOTAS.c.user_id == user_id)
            ).scalar_one_or_none()
        return None if found is None else int(found)

    def set_switch(self, name: str, enabled: bool, note: str | None = None) -> None:
        """Flip a switch (e.g. INTAKE_PAUSED)."""
        values = {"enabled": enabled, "note": note, "updated_at": self._clock()}
        self._upsert(SWITCHES, SWITCHES.c.name, name, values)

    def switch(self, name: str) -> SwitchState:
        """A switch's state; off when never set."""
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    select(SWITCHES.c.enabled, SWITCHES.c.note).where(SWITCHES.c.name == name)
                )
                .mappings()
                .first()
            )
        return SwitchState(enabled=False) if row is None else SwitchState.model_validate(dict(row))

    def _upsert(self, table: Table, key: Any, key_value: object, values: dict[str, Any]) -> None:
        # UPDATE, else INSERT; two operators racing on the same row end with one of their
        # values, which is all an upsert promises (and portable to SQLite).
        for _ in range(2):
            with self._engine.begin() as conn:
                if conn.execute(update(table).where(key == key_value).values(values)).rowcount:
                    return
                try:
                    conn.execute(insert(table).values({key.key: key_value, **values}))
                except IntegrityError:
                    continue
                return
