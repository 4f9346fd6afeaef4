"""Exactly once at every seam: a claim counter separate from GPU attempts, the submit
window made visible, and a fence between progress edits and the final answer.

- `claims`: how often the job was leased; the lease's epoch (was `attempts`).
- `attempts`: now GPU tries only (backend jobs started), so master deaths cost nothing.
- `submitting_since`: set just before a backend submit, cleared when its id is stored;
  found set by the next holder, it means a submit's fate is unknown.
- `lost_submits`: how many such submits the job has had (each may have run on a GPU).
- `message_edit_until`: a progress edit of the job's Discord message may still land until
  then; the final answer waits for it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    with op.batch_alter_table("generation_queue") as table:
        table.add_column(sa.Column("claims", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("submitting_since", _when(), nullable=True))
        table.add_column(
            sa.Column("lost_submits", sa.Integer(), nullable=False, server_default="0")
        )
        table.add_column(sa.Column("message_edit_until", _when(), nullable=True))
    # Until now every claim counted as an attempt: carry the epoch over.
    op.execute("UPDATE generation_queue SET claims = attempts")


def downgrade() -> None:
    op.execute("UPDATE generation_queue SET attempts = claims")
    with op.batch_alter_table("generation_queue") as table:
        table.drop_column("message_edit_until")
        table.drop_column("lost_submits")
        table.drop_column("submitting_since")
        table.drop_column("claims")
