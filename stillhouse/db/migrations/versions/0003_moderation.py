"""Moderation for the fronts: banned users, per-user quotas, switches such as paused
intake; and an index that counts a user's recent jobs without scanning the queue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    op.create_table(
        "banned_users",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("banned_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_banned_users"),
    )
    op.create_table(
        "user_quotas",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("daily_jobs", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_quotas"),
    )
    op.create_table(
        "switches",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("updated_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_switches"),
    )
    op.create_index(
        "ix_generation_queue_user_created", "generation_queue", ["user_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_generation_queue_user_created", table_name="generation_queue")
    op.drop_table("switches")
    op.drop_table("user_quotas")
    op.drop_table("banned_users")
