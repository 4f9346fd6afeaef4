"""Users' own defaults and GPU time per job.

- `user_settings`: one JSON document a user (/settings: default workflow, mode, aspect).
- `generation_queue.gpu_ms`: ComfyUI's execution time of the try that succeeded (the
  worker's timings), summed for /info and usage.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_settings",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("config", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_settings")),
    )
    with op.batch_alter_table("generation_queue") as table:
        table.add_column(sa.Column("gpu_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generation_queue") as table:
        table.drop_column("gpu_ms")
    op.drop_table("user_settings")
