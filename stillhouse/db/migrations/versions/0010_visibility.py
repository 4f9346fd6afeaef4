"""Who sees an answer: `visibility` on both queues (public, spoiler, private), copied from
the request to its send rows; rows made before are public.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for name in ("generation_queue", "send_queue"):
        with op.batch_alter_table(name) as table:
            table.add_column(
                sa.Column(
                    "visibility", sa.String(length=8), nullable=False, server_default="public"
                )
            )


def downgrade() -> None:
    for name in ("send_queue", "generation_queue"):
        with op.batch_alter_table(name) as table:
            table.drop_column("visibility")
