"""Master <-> worker contract: the RunPod job `input` and `output`."""

from __future__ import annotations

from pydantic import BaseModel, Field, HttpUrl

from stillhouse.schemas.graph import ComfyGraph

SAFE_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class InputImage(BaseModel):
    """An image the worker fetches into ComfyUI's input folder before running."""

    name: str = Field(pattern=SAFE_FILE_NAME)
    url: HttpUrl


class OutputTarget(BaseModel):
    """Where the worker uploads what ComfyUI produced."""

    bucket: str = Field(min_length=1)
    prefix: str


class WorkerInput(BaseModel):
    """RunPod job `input`."""

    job_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    workflow: ComfyGraph
    inputs: list[InputImage] = Field(default_factory=list)
    output: OutputTarget
    timeout_s: float = Field(default=600.0, gt=0)
    workflow_name: str | None = Field(default=None, description="for logs and previews")


class ImageRef(BaseModel):
    """A pointer to one uploaded image."""

    key: str
    bucket: str
    content_type: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    node_id: str


class Timings(BaseModel):
    """Where the worker's time went, in milliseconds."""

    comfy_start_ms: float = 0.0
    queue_ms: float = 0.0
    execute_ms: float = 0.0
    upload_ms: float = 0.0


class ComfyInfo(BaseModel):
    """Which ComfyUI ran the graph."""

    prompt_id: str
    version: str | None = None


class WorkerOutput(BaseModel):
    """RunPod job `output` on success."""

    images: list[ImageRef] = Field(min_length=1)
    timings: Timings = Field(default_factory=Timings)
    comfy: ComfyInfo


class ErrorInfo(BaseModel):
    """What went wrong, structured enough to decide on a retry and to tell the user."""

    type: str
    message: str
    node_id: str | None = None
    node_type: str | None = None
    retryable: bool = False


class WorkerError(BaseModel):
    """RunPod job result on failure: `{"error": ErrorInfo}`.

    RunPod's APIs carry `error` as a string, so the worker sends ErrorInfo as JSON text;
    `parse_error` reads that, a plain dict, or any other string RunPod itself puts there.
    """

    error: ErrorInfo


def parse_error(value: object) -> ErrorInfo:
    """The ErrorInfo inside a RunPod `error` field (JSON text, a dict, or RunPod's prose)."""
    if isinstance(value, dict):
        return ErrorInfo.model_validate(value)
    text = str(value)
    try:
        return ErrorInfo.model_validate_json(text)
    except ValueError:
        return ErrorInfo(type="backend_error", message=text[:1000] or "unknown", retryable=True)
