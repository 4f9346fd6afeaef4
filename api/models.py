"""What the HTTP API takes and answers (its OpenAPI schema is built from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from stillhouse.schemas.manifest import SEED_MAX, ParamValue
from stillhouse.schemas.states import JobStatus


class GenerationIn(BaseModel):
    """A request, with the same options as /serve."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=6000, description="what to draw")
    negative_prompt: str | None = Field(default=None, max_length=6000)
    workflow: str | None = Field(
        default=None, max_length=64, description="default: the configured one"
    )
    aspect: Literal["square", "portrait", "landscape"] | None = None
    count: int | None = Field(default=None, ge=1, le=4, description="images per request")
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    mode: Literal["fast", "quality"] | None = Field(default=None, description="the preset")
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="any other parameter the workflow declares"
    )
    image_url: HttpUrl | None = Field(default=None, description="an https image (img2img)")


class ImageOut(BaseModel):
    """One image of a finished request."""

    key: str
    url: str = Field(description="a time-limited URL anyone holding it can GET")
    width: int
    height: int
    content_type: str


class ErrorOut(BaseModel):
    """Why a request ended without images."""

    type: str
    message: str


class GenerationOut(BaseModel):
    """Where a request stands."""

    id: str
    status: JobStatus
    workflow: str
    position: int | None = Field(default=None, description="requests ahead while queued")
    estimated_wait_s: float | None = None
    progress: float | None = None
    progress_note: str | None = None
    params: dict[str, ParamValue | None] = Field(default_factory=dict)
    images: list[ImageOut] = Field(default_factory=list)
    error: ErrorOut | None = None
    created_at: datetime
    finished_at: datetime | None = None


class WorkflowOut(BaseModel):
    """A workflow /v1/generations can run."""

    name: str
    title: str
    description: str
    parameters: list[str]
    presets: list[str]
    aspects: list[str]
    default: bool = Field(default=False, description="used when a request names none")


class Problem(BaseModel):
    """An error answer: what is wrong, in a sentence."""

    detail: str
