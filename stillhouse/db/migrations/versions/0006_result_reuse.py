"""A result cache: a request identical to an earlier one reuses its images.

- `generation_queue.reuse_key`: sha256 of what decides a job's images, indexed so
  admission finds an earlier success in one lookup.
- `generation_queue.reused_from`: the public id of the job whose images a reused job
  was answered with (the mark users and the API see).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generation_queue") as table:
        table.add_column(sa.Column("reuse_key", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("reused_from", sa.String(length=32), nullable=True))
        table.create_index("ix_generation_queue_reuse", ["reuse_key"])


def downgrade() -> None:
    with op.batch_alter_table("generation_queue") as table:
        table.drop_index("ix_generation_queue_reuse")
        table.drop_column("reused_from")
        table.drop_column("reuse_key")
