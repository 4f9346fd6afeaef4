"""Settings people change at run time, one JSON document per key: each Discord server's
(its managers, /server: where /serve works, its defaults, its own filter words and
patterns) and each user's (/settings: their defaults).

Read with one primary-key lookup per request, so a change is in force at the next request
on every shard process (no cache to go stale between them); changed in one transaction
that locks the row, so two edits cannot lose one another."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import Column, Connection, Engine, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from stillhouse.db.models import GuildSettingsRow, UserSettingsRow
from stillhouse.queue.prepared import Prepared
from stillhouse.queue.timing import Clock, utcnow
from stillhouse.schemas.guilds import GuildConfig
from stillhouse.schemas.users import UserConfig

Config = TypeVar("Config", bound=BaseModel)


class Preferences(Generic[Config]):
    """One table of settings documents, keyed by an id."""

    def __init__(
        self, table: Table, key: str, model: type[Config], engine: Engine, clock: Clock = utcnow
    ) -> None:
        self.table = table
        self.key: Column[Any] = table.c[key]
        self.model = model
        self.engine = engine
        self.clock = clock

    def get(self, key: int | None) -> Config:
        """The settings under `key` (the defaults where none were set, or no key)."""
        if not key:
            return self.model()
        with self.engine.connect() as conn:
            found = conn.execute(
                select(self.table.c.config).where(self.key == key)
            ).scalar_one_or_none()
        return cast(Config, found) if found is not None else self.model()

    def change(self, key: int, by: int | None, edit: Callable[[Config], Config]) -> Config:
        """Apply `edit` under the row's lock; the result is validated before it is stored
        (pydantic's ValidationError otherwise)."""
        now = self.clock()
        with self.engine.begin() as conn:
            self._ensure_row(conn, key, now)
            current = conn.execute(
                select(self.table.c.config).where(self.key == key).with_for_update()
            ).scalar_one()
            changed = self.model.model_validate(edit(cast(Config, current)).model_dump())
            values: dict[str, Any] = {"config": changed, "updated_at": now}
            if "updated_by" in self.table.c:
                values["updated_by"] = by
            conn.execute(update(self.table).where(self.key == key).values(values))
        return changed

    def _ensure_row(self, conn: Connection, key: int, now: datetime) -> None:
        if conn.execute(select(self.key).where(self.key == key)).first() is not None:
            return
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(self.table).values(
                        {self.key.name: key, "config": self.model(), "updated_at": now}
                    )
                )
        except IntegrityError:
            pass  # another edit's first change made it a moment ago


def _both() -> Prepared:
    """A server's and a user's settings in one round trip (every /serve reads both)."""
    guilds = cast(Table, GuildSettingsRow.__table__)
    users = cast(Table, UserSettingsRow.__table__)
    guild = select(guilds.c.config).where(guilds.c.guild_id == bindparam("guild_id"))
    user = select(users.c.config).where(users.c.user_id == bindparam("user_id"))
    return Prepared(
        select(guild.scalar_subquery().label("guild"), user.scalar_subquery().label("user"))
    )


_BOTH = _both()


def server_and_user(
    engine: Engine, guild_id: int | None, user_id: int
) -> tuple[GuildConfig, UserConfig]:
    """The server's settings and the user's defaults (defaults where none were set)."""
    with engine.begin() as conn:  # where Prepared statements run
        [row] = _BOTH.mappings(conn, {"guild_id": guild_id or 0, "user_id": user_id})
    guild, user = row["guild"], row["user"]
    return (
        cast(GuildConfig, guild) if guild is not None else GuildConfig(),
        cast(UserConfig, user) if user is not None else UserConfig(),
    )


class GuildSettings(Preferences[GuildConfig]):
    """Servers' own settings."""

    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        table = cast(Table, GuildSettingsRow.__table__)
        super().__init__(table, "guild_id", GuildConfig, engine, clock)


class UserSettings(Preferences[UserConfig]):
    """Users' own defaults."""

    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        table = cast(Table, UserSettingsRow.__table__)
        super().__init__(table, "user_id", UserConfig, engine, clock)
