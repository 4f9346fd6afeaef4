"""What fronts put on the generation queue and what the send queue carries back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, HttpUrl, RootModel, SecretStr, model_validator

from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.worker_io import SAFE_FILE_NAME, ErrorInfo, ImageRef, Timings

ParamValue = str | int | float | bool | None


class JobParams(RootModel[dict[str, ParamValue]]):
    """The typed values a workflow was bound with (prompt, seed, steps ...)."""


# Who sees an answer: everyone, everyone behind a spoiler, or only the requester.
Visibility = Literal["public", "spoiler", "private"]


class Routing(BaseModel):
    """Who asked and where the answer goes."""

    source: Literal["discord", "api"] = "discord"
    user_id: int | None = None
    guild_id: int | None = None
    channel_id: int | None = None
    shard_id: int | None = Field(default=None, ge=0)
    interaction_token: SecretStr | None = None
    interaction_expires_at: datetime | None = None
    # Who sees the answer: everyone, everyone behind a spoiler, or the requester alone
    # (through the interaction only: never posted to the channel).
    visibility: Visibility = "public"


class InputSource(BaseModel):
    """An image the worker places in ComfyUI's input folder under `name` before running:
    from a URL (a Discord attachment) or from our own storage (an earlier result)."""

    name: str = Field(pattern=SAFE_FILE_NAME)
    url: HttpUrl | None = None
    storage_key: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputSource:
        if (self.url is None) == (self.storage_key is None):
            raise ValueError("an input image comes from exactly one of url or storage_key")
        return self


class NewJob(BaseModel):
    """A request accepted by a front, ready to queue."""

    routing: Routing = Field(default_factory=Routing)
    interaction_id: int | None = None
    workflow_name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    workflow_version: str = Field(default="1", max_length=32)
    params: JobParams = Field(default_factory=lambda: JobParams({}))
    graph: ComfyGraph
    inputs: list[InputSource] = Field(default_factory=list)
    priority: int = Field(default=0, ge=-100, le=100, description="lower runs sooner")
    head_start_s: float = Field(
        default=0.0, ge=0, le=86_400, description="queued as if it came this much earlier"
    )
    max_attempts: int | None = Field(default=None, ge=1, le=50)
    reuse_key: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="what decides the images; an earlier success with it is reused",
    )


class JobResult(BaseModel):
    """What a succeeded job produced."""

    images: list[ImageRef] = Field(min_length=1)
    timings: Timings | None = None


class ResultPayload(BaseModel):
    """Send-queue row: the images for the user."""

    kind: Literal["result"] = "result"
    images: list[ImageRef]
    workflow_name: str
    params: JobParams
    cancel_too_late: bool = False  # the user asked to cancel, but the images came first
    reused_from: str | None = None  # the earlier job whose images answer this request


class FailurePayload(BaseModel):
    """Send-queue row: a clear failure message for the user."""

    kind: Literal["failure"] = "failure"
    error: ErrorInfo
    attempts: int


class ProgressPayload(BaseModel):
    """Send-queue row: how far a running job is."""

    kind: Literal["progress"] = "progress"
    value: float = Field(ge=0.0, le=1.0)
    note: str | None = None


class NoticePayload(BaseModel):
    """Send-queue row: any other message (cancelled, queue paused ...)."""

    kind: Literal["notice"] = "notice"
    text: str = Field(min_length=1, max_length=2000)


DeliveryPayload = Annotated[
    ResultPayload | FailurePayload | ProgressPayload | NoticePayload,
    Field(discriminator="kind"),
]
