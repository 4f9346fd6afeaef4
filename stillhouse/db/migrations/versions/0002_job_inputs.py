"""Jobs carry the images the worker must fetch before running (img2img, upscale).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Existing rows get an empty list: they were queued before any workflow took an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json_text() -> sa.types.TypeEngine[Any]:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")


def upgrade() -> None:
    with op.batch_alter_table("generation_queue") as batch:
        batch.add_column(sa.Column("inputs", _json_text(), nullable=True))
    op.execute("UPDATE generation_queue SET inputs = '[]'")
    with op.batch_alter_table("generation_queue") as batch:
        batch.alter_column("inputs", existing_type=_json_text(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("generation_queue") as batch:
        batch.drop_column("inputs")
