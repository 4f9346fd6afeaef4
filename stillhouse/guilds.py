"""Each Discord server's own settings, changed by its managers with /server and effective
at once on every shard: where /serve works, the defaults it uses, and the server's own
filter words and patterns on top of the operators' lists.

One row per server holding one JSON document, read with one primary-key lookup per
request (no cache to go stale between shard processes) and changed in one transaction
that locks the row, so two managers' edits cannot lose one another."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from stillhouse.db.models import GuildSettingsRow
from stillhouse.queue.timing import Clock, utcnow
from stillhouse.schemas.guilds import GuildConfig

ROWS = cast(Table, GuildSettingsRow.__table__)


class GuildSettings:
    """Servers' settings in the database."""

    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def get(self, guild_id: int | None) -> GuildConfig:
        """The server's settings (the defaults for a server that never set any, and for
        direct messages)."""
        if not guild_id:
            return GuildConfig()
        with self.engine.connect() as conn:
            found = conn.execute(
                select(ROWS.c.config).where(ROWS.c.guild_id == guild_id)
            ).scalar_one_or_none()
        return cast(GuildConfig, found) if found is not None else GuildConfig()

    def change(
        self, guild_id: int, by: int | None, edit: Callable[[GuildConfig], GuildConfig]
    ) -> GuildConfig:
        """Apply `edit` to the server's settings under the row's lock; the result is
        validated before it is stored (ValueError with the reason otherwise)."""
        now = self.clock()
        with self.engine.begin() as conn:
            self._ensure_row(conn, guild_id, now)
            current = conn.execute(
                select(ROWS.c.config).where(ROWS.c.guild_id == guild_id).with_for_update()
            ).scalar_one()
            changed = GuildConfig.model_validate(edit(cast(GuildConfig, current)).model_dump())
            conn.execute(
                update(ROWS)
                .where(ROWS.c.guild_id == guild_id)
                .values(config=changed, updated_by=by, updated_at=now)
            )
        return changed

    @staticmethod
    def _ensure_row(conn: Connection, guild_id: int, now: datetime) -> None:
        exists = conn.execute(select(ROWS.c.guild_id).where(ROWS.c.guild_id == guild_id)).first()
        if exists is not None:
            return
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(ROWS).values(
                        guild_id=guild_id, config=GuildConfig(), updated_by=None, updated_at=now
                    )
                )
        except IntegrityError:
            pass  # another manager's first change made it a moment ago
