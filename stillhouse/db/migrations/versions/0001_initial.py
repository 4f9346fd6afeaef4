"""Initial schema: the generation queue and the send queue.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Self-contained on purpose: column types are spelled out here rather than imported from
the models, so later changes to the models cannot rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _pk() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def _json_text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")


def _state(*values: str) -> sa.Enum:
    return sa.Enum(*values, native_enum=False, create_constraint=False, length=16)


def _routing() -> list[sa.Column[object]]:
    return [
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
    ]


def _lease() -> list[sa.Column[object]]:
    return [
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", _when(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", _when(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "generation_queue",
        sa.Column("id", _pk(), autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("partition_id", sa.SmallInteger(), nullable=False),
        sa.Column(
            "status",
            _state("queued", "dispatched", "running", "succeeded", "failed", "cancelled"),
            nullable=False,
        ),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        *_routing(),
        sa.Column("shard_id", sa.SmallInteger(), nullable=True),
        sa.Column("interaction_id", sa.BigInteger(), nullable=True),
        sa.Column("interaction_token", sa.String(512), nullable=True),
        sa.Column("interaction_expires_at", _when(), nullable=True),
        sa.Column("workflow_name", sa.String(64), nullable=False),
        sa.Column("workflow_version", sa.String(32), nullable=False),
        sa.Column("params", _json_text(), nullable=False),
        sa.Column("graph", _json_text(), nullable=False),
        *_lease(),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("backend_job_id", sa.String(128), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("progress_note", sa.String(255), nullable=True),
        sa.Column("result", _json_text(), nullable=True),
        sa.Column("error", _json_text(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.Column("dispatched_at", _when(), nullable=True),
        sa.Column("started_at", _when(), nullable=True),
        sa.Column("finished_at", _when(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_generation_queue"),
        sa.UniqueConstraint("interaction_id", name="uq_generation_queue_interaction_id"),
        sa.UniqueConstraint("public_id", name="uq_generation_queue_public_id"),
    )
    op.create_index(
        "ix_generation_queue_claim",
        "generation_queue",
        ["status", "partition_id", "priority", "run_after", "id"],
    )
    op.create_index("ix_generation_queue_lease", "generation_queue", ["status", "lease_expires_at"])
    op.create_index("ix_generation_queue_finished", "generation_queue", ["finished_at"])
    op.create_index("ix_generation_queue_user", "generation_queue", ["user_id", "status"])

    op.create_table(
        "send_queue",
        sa.Column("id", _pk(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("job_public_id", sa.String(32), nullable=False),
        sa.Column("partition_id", sa.SmallInteger(), nullable=False),
        sa.Column("kind", _state("result", "failure", "progress", "notice"), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=True),
        sa.Column("status", _state("pending", "sending", "sent", "failed"), nullable=False),
        *_routing(),
        sa.Column("interaction_token", sa.String(512), nullable=True),
        sa.Column("interaction_expires_at", _when(), nullable=True),
        sa.Column("payload", _json_text(), nullable=False),
        *_lease(),
        sa.Column("discord_message_id", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.Column("sent_at", _when(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["generation_queue.id"], name="fk_send_queue_job_id_generation_queue"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_send_queue"),
        sa.UniqueConstraint("dedupe_key", name="uq_send_queue_dedupe_key"),
    )
    op.create_index(
        "ix_send_queue_claim", "send_queue", ["status", "partition_id", "run_after", "id"]
    )
    op.create_index("ix_send_queue_lease", "send_queue", ["status", "lease_expires_at"])
    op.create_index("ix_send_queue_job", "send_queue", ["job_id"])


def downgrade() -> None:
    op.drop_table("send_queue")
    op.drop_table("generation_queue")
