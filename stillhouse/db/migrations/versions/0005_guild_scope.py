"""Fronts people can trust: bans and switches scoped to a guild (0 = everywhere), a row
per requester that admission locks, and the digest of an idempotent API request.

- `banned_users`, `switches`: `guild_id` joins the primary key; existing rows become
  deployment-wide (0), which is what they meant until now.
- `requesters`: admission locks the caller's row, so limits are counted and the job is
  inserted in one transaction (concurrent requests cannot all pass a count).
- `generation_queue.request_digest`: what an Idempotency-Key was first used with.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def _bans(name: str, scoped: bool) -> None:
    columns = [sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False)]
    op.create_table(
        name,
        *(columns if scoped else []),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("banned_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint(
            *(["guild_id", "user_id"] if scoped else ["user_id"]), name="pk_banned_users"
        ),
    )


def _switches(name: str, scoped: bool) -> None:
    columns = [sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False)]
    op.create_table(
        name,
        *(columns if scoped else []),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("updated_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint(
            *(["guild_id", "name"] if scoped else ["name"]), name="pk_switches"
        ),
    )


def _swap(table: str, copy: str) -> None:
    """Replace `table` by `<table>_next`, filled by `copy` (a primary key cannot change in
    place portably; these tables hold a handful of rows)."""
    op.execute(copy)
    op.drop_table(table)
    op.rename_table(f"{table}_next", table)


def upgrade() -> None:
    _bans("banned_users_next", scoped=True)
    _swap(
        "banned_users",
        "INSERT INTO banned_users_next (guild_id, user_id, reason, banned_by, created_at) "
        "SELECT 0, user_id, reason, banned_by, created_at FROM banned_users",
    )
    _switches("switches_next", scoped=True)
    _swap(
        "switches",
        "INSERT INTO switches_next (guild_id, name, enabled, note, updated_at) "
        "SELECT 0, name, enabled, note, updated_at FROM switches",
    )
    op.create_table(
        "requesters",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("first_seen_at", _when(), nullable=False),
        sa.Column("last_request_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_requesters"),
    )
    with op.batch_alter_table("generation_queue") as table:
        table.add_column(sa.Column("request_digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generation_queue") as table:
        table.drop_column("request_digest")
    op.drop_table("requesters")
    _switches("switches_next", scoped=False)
    _swap(
        "switches",
        "INSERT INTO switches_next (name, enabled, note, updated_at) "
        "SELECT name, enabled, note, updated_at FROM switches WHERE guild_id = 0",
    )
    _bans("banned_users_next", scoped=False)
    _swap(
        "banned_users",
        "INSERT INTO banned_users_next (user_id, reason, banned_by, created_at) "
        "SELECT user_id, reason, banned_by, created_at FROM banned_users WHERE guild_id = 0",
    )
