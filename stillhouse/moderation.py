"""What operators and guild managers decide about users and intake: bans, per-user
quotas, switches.

Bans and switches have a scope: one guild (its managers decide there) or the whole
deployment (`EVERYWHERE`, the configured operators only). Kept in the database, not
memcached: a ban or a pause must survive restarts and apply to every front process at
once. Reads are one indexed lookup each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import (
    BindParameter,
    Engine,
    ScalarSelect,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from stillhouse.db.models import BannedUser, Switch, UserQuota, UserTier
from stillhouse.queue.prepared import Prepared
from stillhouse.queue.timing import Clock, utcnow

BANS = cast(Table, BannedUser.__table__)
QUOTAS = cast(Table, UserQuota.__table__)
TIERS = cast(Table, UserTier.__table__)
SWITCHES = cast(Table, Switch.__table__)
_SWITCH = select(SWITCHES.c.enabled, SWITCHES.c.note, SWITCHES.c.guild_id)

INTAKE_PAUSED = "intake_paused"
EVERYWHERE = 0  # the scope of deployment-wide bans and switches


def scopes(guild_id: int | None) -> tuple[int, ...]:
    """The scopes that apply to a request from this guild (none: direct messages, API)."""
    return (EVERYWHERE,) if not guild_id else (EVERYWHERE, guild_id)


def _standing() -> Prepared:
    """Pause, ban and quota in one statement (every acceptance asks: compiled once)."""
    where: tuple[BindParameter[Any], ...] = (bindparam("everywhere"), bindparam("guild"))
    pause = (
        SWITCHES.c.name == INTAKE_PAUSED,
        SWITCHES.c.enabled.is_(True),
        or_(*(SWITCHES.c.guild_id == scope for scope in where)),
    )

    def first_pause(column: ColumnElement[Any]) -> ScalarSelect[Any]:
        chosen = select(column).where(*pause).order_by(SWITCHES.c.guild_id).limit(1)
        return chosen.scalar_subquery()

    user: BindParameter[Any] = bindparam("user_id")
    banned = select(BANS.c.user_id).where(
        BANS.c.user_id == user, or_(*(BANS.c.guild_id == scope for scope in where))
    )
    quota = select(QUOTAS.c.daily_jobs).where(QUOTAS.c.user_id == user)
    tier = select(TIERS.c.tier).where(TIERS.c.user_id == user)
    return Prepared(
        select(
            first_pause(SWITCHES.c.guild_id).label("scope"),
            first_pause(SWITCHES.c.note).label("note"),
            exists(banned).label("banned"),
            quota.scalar_subquery().label("quota"),
            tier.scalar_subquery().label("tier"),
        )
    )


_STANDING = _standing()


class Ban(BaseModel):
    """A banned user, where (`guild_id`, EVERYWHERE for the whole deployment) and why."""

    guild_id: int
    user_id: int
    reason: str
    banned_by: int | None
    created_at: datetime


class SwitchState(BaseModel):
    """A switch's value, the note left when it was flipped, and its scope."""

    enabled: bool
    note: str | None = None
    guild_id: int = EVERYWHERE


class Standing(BaseModel):
    """What applies to one request: the pause that holds it back (the deployment-wide
    one first) or None, whether the user is banned there, their own daily quota."""

    paused: SwitchState | None
    banned: bool
    quota: int | None
    tier: str | None = None  # the one the operators gave the user


class Moderation:
    """Bans, quotas and switches; each call is one short transaction."""

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def ban(
        self, user_id: int, reason: str, banned_by: int | None, *, guild_id: int = EVERYWHERE
    ) -> None:
        """Refuse this user in `guild_id` (or everywhere) from now on; a second ban in the
        same scope replaces the reason."""
        values = {"reason": reason[:255], "banned_by": banned_by, "created_at": self._clock()}
        self._upsert(BANS, {"guild_id": guild_id, "user_id": user_id}, values)

    def unban(self, user_id: int, *, guild_id: int = EVERYWHERE) -> bool:
        """Lift a ban in that scope; False if there was none."""
        where = (BANS.c.guild_id == guild_id) & (BANS.c.user_id == user_id)
        with self._engine.begin() as conn:
            return conn.execute(delete(BANS).where(where)).rowcount == 1

    def ban_of(self, user_id: int, guild_id: int | None = None) -> Ban | None:
        """The ban that keeps this user out of `guild_id` (the deployment-wide one first),
        or None; without a guild only a deployment-wide ban counts."""
        where = (BANS.c.user_id == user_id) & BANS.c.guild_id.in_(scopes(guild_id))
        with self._engine.connect() as conn:
            rows = conn.execute(select(BANS).where(where)).mappings().all()
        found = sorted((Ban.model_validate(dict(row)) for row in rows), key=lambda b: b.guild_id)
        return found[0] if found else None

    def set_quota(self, user_id: int, daily_jobs: int, set_by: int | None) -> None:
        """This user's own jobs-per-24-hours limit."""
        if daily_jobs < 0:
            raise ValueError("a quota cannot be negative")
        values = {"daily_jobs": daily_jobs, "set_by": set_by, "updated_at": self._clock()}
        self._upsert(QUOTAS, {"user_id": user_id}, values)

    def clear_quota(self, user_id: int) -> bool:
        """Back to the default limit; False if the user had none of their own."""
        with self._engine.begin() as conn:
            return conn.execute(delete(QUOTAS).where(QUOTAS.c.user_id == user_id)).rowcount == 1

    def set_switch(
        self, name: str, enabled: bool, note: str | None = None, *, guild_id: int = EVERYWHERE
    ) -> None:
        """Flip a switch (e.g. INTAKE_PAUSED) in one guild or everywhere."""
        values = {"enabled": enabled, "note": note, "updated_at": self._clock()}
        self._upsert(SWITCHES, {"guild_id": guild_id, "name": name}, values)

    def switch(self, name: str, guild_id: int = EVERYWHERE) -> SwitchState:
        """A switch's state in exactly that scope; off when never set."""
        where = (SWITCHES.c.name == name) & (SWITCHES.c.guild_id == guild_id)
        with self._engine.connect() as conn:
            row = conn.execute(_SWITCH.where(where)).mappings().first()
        if row is None:
            return SwitchState(enabled=False, guild_id=guild_id)
        return SwitchState.model_validate(dict(row))

    def switch_for(self, name: str, guild_id: int | None) -> SwitchState:
        """The state that applies to a request from `guild_id`: on if it is on
        everywhere or in that guild (the deployment-wide note wins)."""
        where = (SWITCHES.c.name == name) & SWITCHES.c.guild_id.in_(scopes(guild_id))
        with self._engine.connect() as conn:
            rows = conn.execute(_SWITCH.where(where)).mappings().all()
        on = sorted(
            (s for s in map(SwitchState.model_validate, map(dict, rows)) if s.enabled),
            key=lambda s: s.guild_id,
        )
        return on[0] if on else SwitchState(enabled=False, guild_id=guild_id or EVERYWHERE)

    def standing(self, user_id: int, guild_id: int | None) -> Standing:
        """Pause, ban and quota for a request, read in one statement: every acceptance
        asks, and three round trips cost more than the three lookups."""
        params = {"user_id": user_id, "everywhere": EVERYWHERE, "guild": guild_id or EVERYWHERE}
        with self._engine.begin() as conn:
            [row] = _STANDING.mappings(conn, params)
        scope, note, is_banned, own = row["scope"], row["note"], row["banned"], row["quota"]
        paused = None if scope is None else SwitchState(enabled=True, note=note, guild_id=scope)
        return Standing(paused=paused, banned=bool(is_banned), quota=own, tier=row["tier"])

    def set_tier(self, user_id: int, tier: str, set_by: int | None) -> None:
        """The tier the operators give this user (stillhouse.tiers)."""
        values = {"tier": tier, "set_by": set_by, "updated_at": self._clock()}
        self._upsert(TIERS, {"user_id": user_id}, values)

    def clear_tier(self, user_id: int) -> bool:
        """Back to the default tier (and what roles give); False if none was given."""
        with self._engine.begin() as conn:
            return conn.execute(delete(TIERS).where(TIERS.c.user_id == user_id)).rowcount == 1

    def _upsert(self, table: Table, key: dict[str, Any], values: dict[str, Any]) -> None:
        # UPDATE, else INSERT; two operators racing on the same row end with one of their
        # values, which is all an upsert promises (and portable to SQLite).
        where = and_(*(table.c[name] == value for name, value in key.items()))
        for _ in range(2):
            with self._engine.begin() as conn:
                if conn.execute(update(table).where(where).values(values)).rowcount:
                    return
                try:
                    conn.execute(insert(table).values({**key, **values}))
                except IntegrityError:
                    continue
                return
