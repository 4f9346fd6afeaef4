"""The two queues as typed SQLAlchemy 2.0 models.

Indexes are shaped by the statements in stillhouse.queue: claiming walks
(status, partition_id, priority, run_after) from the front, so it costs the same however
long the queue grows; the reaper walks (status, lease_expires_at).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stillhouse.db.types import BigIntPK, PydanticJSON, UTCDateTime
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.guilds import GuildConfig
from stillhouse.schemas.jobs import DeliveryPayload, InputSource, JobParams, JobResult
from stillhouse.schemas.states import DeliveryKind, DeliveryStatus, JobStatus
from stillhouse.schemas.users import UserConfig
from stillhouse.schemas.worker_io import ErrorInfo

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (migrations refer to them)."""

    metadata = MetaData(naming_convention=NAMING)


def _state(enum: type[JobStatus] | type[DeliveryStatus] | type[DeliveryKind]) -> Enum:
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class GenerationJob(Base):
    """One request to make images."""

    __tablename__ = "generation_queue"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    partition_id: Mapped[int] = mapped_column(SmallInteger, default=0)
    status: Mapped[JobStatus] = mapped_column(_state(JobStatus))
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)

    source: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    shard_id: Mapped[int | None] = mapped_column(SmallInteger)
    interaction_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    interaction_token: Mapped[str | None] = mapped_column(String(512))
    interaction_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    visibility: Mapped[str] = mapped_column(String(8), server_default="public")

    # sha256 of what an API caller sent with an Idempotency-Key: a reuse with another
    # body is refused instead of silently answered with the first request.
    request_digest: Mapped[str | None] = mapped_column(String(64))
    workflow_name: Mapped[str] = mapped_column(String(64))
    workflow_version: Mapped[str] = mapped_column(String(32))
    params: Mapped[JobParams] = mapped_column(PydanticJSON(JobParams))
    graph: Mapped[ComfyGraph] = mapped_column(PydanticJSON(ComfyGraph))
    inputs: Mapped[list[InputSource]] = mapped_column(PydanticJSON(list[InputSource]))
    # sha256 of what decides the images (workflow, version, bound graph, stored inputs):
    # a later identical request reuses this job's images (stillhouse/queue/reuse.py).
    reuse_key: Mapped[str | None] = mapped_column(String(64))
    # Answered from storage: the public id of the job whose images these are.
    reused_from: Mapped[str | None] = mapped_column(String(32))

    # GPU tries (backend jobs started); `claims` is the lease's epoch, bumped per claim.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    backend_job_id: Mapped[str | None] = mapped_column(String(128))
    # Set just before a backend submit, cleared once its id is stored: a holder that
    # finds it set knows a submit's fate is unknown (counted in lost_submits).
    submitting_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lost_submits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A progress edit of the Discord message may land until then; the answer waits.
    message_edit_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress: Mapped[float | None] = mapped_column(Float)
    progress_note: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[JobResult | None] = mapped_column(PydanticJSON(JobResult))
    # ComfyUI's execution time of the succeeded try (the worker's timings), for usage.
    gpu_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[ErrorInfo | None] = mapped_column(PydanticJSON(ErrorInfo))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_generation_queue_claim", "status", "partition_id", "priority", "run_after", "id"),
        Index("ix_generation_queue_lease", "status", "lease_expires_at"),
        Index("ix_generation_queue_finished", "finished_at"),
        Index("ix_generation_queue_user", "user_id", "status"),
        Index("ix_generation_queue_user_created", "user_id", "created_at"),
        Index("ix_generation_queue_reuse", "reuse_key"),
    )


class Delivery(Base):
    """One thing to tell a user (result, failure, progress, notice)."""

    __tablename__ = "send_queue"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("generation_queue.id"))
    job_public_id: Mapped[str] = mapped_column(String(32))
    partition_id: Mapped[int] = mapped_column(SmallInteger, default=0)
    kind: Mapped[DeliveryKind] = mapped_column(_state(DeliveryKind))
    # "outcome:<job id>" makes a second result/failure row for a job impossible.
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[DeliveryStatus] = mapped_column(_state(DeliveryStatus))

    source: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    interaction_token: Mapped[str | None] = mapped_column(String(512))
    interaction_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    visibility: Mapped[str] = mapped_column(String(8), server_default="public")
    payload: Mapped[DeliveryPayload] = mapped_column(PydanticJSON(DeliveryPayload))

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    discord_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_send_queue_claim", "status", "partition_id", "run_after", "id"),
        Index("ix_send_queue_lease", "status", "lease_expires_at"),
        Index("ix_send_queue_job", "job_id"),
    )


class BannedUser(Base):
    """A user the fronts refuse: in one guild, or everywhere (`guild_id` 0)."""

    __tablename__ = "banned_users"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    reason: Mapped[str] = mapped_column(String(255))
    banned_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserQuota(Base):
    """A user's own daily job limit, overriding the default."""

    __tablename__ = "user_quotas"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    daily_jobs: Mapped[int] = mapped_column(Integer)
    set_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserTier(Base):
    """A user's tier, given by the operators (stillhouse.tiers)."""

    __tablename__ = "user_tiers"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tier: Mapped[str] = mapped_column(String(32))
    set_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Switch(Base):
    """A named on/off setting flipped at run time (e.g. `intake_paused`): for one guild,
    or for the whole deployment (`guild_id` 0)."""

    __tablename__ = "switches"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GuildSettingsRow(Base):
    """One Discord server's own settings (stillhouse.schemas.guilds.GuildConfig), set by its
    managers."""

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    config: Mapped[GuildConfig] = mapped_column(PydanticJSON(GuildConfig))
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserSettingsRow(Base):
    """One user's own defaults for /serve (stillhouse.schemas.users.UserConfig)."""

    __tablename__ = "user_settings"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    config: Mapped[UserConfig] = mapped_column(PydanticJSON(UserConfig))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Requester(Base):
    """One row per user who ever asked: admission locks it, so a user's limits (rate,
    unfinished requests, quota) are counted and the job inserted in one transaction."""

    __tablename__ = "requesters"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_request_at: Mapped[datetime] = mapped_column(UTCDateTime)
