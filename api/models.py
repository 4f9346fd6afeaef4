"""What the HTTP API takes and answers (its OpenAPI schema is built from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from stillhouse.schemas.manifest import SEED_MAX, ParamValue
from stillhouse.schemas.states import JobStatus

TEXT_MAX = 6000
PARAMS_MAX = 32
DETAIL_MAX = 300


def _one_param_error(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    # One sentence for a bad value, not one per member of the union it failed.
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "param_value",
            f"must be a string of at most {TEXT_MAX} characters, a finite number, or a boolean",
        ) from None


ParamIn = Annotated[
    Annotated[str, StringConstraints(max_length=TEXT_MAX)] | int | float | bool,
    WrapValidator(_one_param_error),
]
ParamName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class LoraIn(BaseModel):
    """A LoRA of the models catalog, chained in the order given."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=100, description="its name or title")
    weight: float | None = Field(
        default=None, ge=-2, le=2, description="its strength; default: the catalog's"
    )


class GenerationIn(BaseModel):
    """A request, with the same options as /serve. Types are strict: `count: true`,
    `seed: "5"` or `seed: 5.0` are refused, not converted; numbers must be finite."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    prompt: str = Field(min_length=1, max_length=TEXT_MAX, description="what to draw")
    negative_prompt: str | None = Field(default=None, max_length=TEXT_MAX)
    workflow: str | None = Field(
        default=None, max_length=64, description="default: the configured one"
    )
    aspect: Literal["square", "portrait", "landscape"] | None = None
    count: int | None = Field(default=None, ge=1, le=4, description="images per request")
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    mode: Literal["fast", "quality"] | None = Field(default=None, description="the preset")
    params: dict[ParamName, ParamIn] = Field(
        default_factory=dict,
        max_length=PARAMS_MAX,
        description="any other parameter the workflow declares",
    )
    # Lax: FastAPI validates parsed JSON as Python, where a strict URL wants a Url object.
    image_url: HttpUrl | None = Field(
        default=None, strict=False, description="an https image (img2img)"
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="a checkpoint of the models catalog, by name or title; default: the "
        "workflow's own",
    )
    loras: list[LoraIn] = Field(
        default_factory=list, max_length=4, description="LoRAs of the models catalog"
    )


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
    reused_from: str | None = Field(
        default=None,
        description="answered without a GPU with the images of this earlier identical "
        "request (same workflow, settings, fixed seed and stored input images)",
    )
    created_at: datetime
    finished_at: datetime | None = None


class ParameterOut(BaseModel):
    """One parameter of a workflow, with what a form needs to offer it."""

    name: str
    type: str = Field(description="string, int, float, bool, choice, seed or image")
    title: str = ""
    help: str = ""
    required: bool = False
    default: ParamValue | None = None
    min: float | None = None
    max: float | None = None
    step: int | None = None
    max_length: int | None = None
    choices: list[str | int | float] | None = None


class WorkflowOut(BaseModel):
    """A workflow /v1/generations can run."""

    name: str
    title: str
    description: str
    purpose: str = Field(description="generate (a prompt) or img2img (a prompt and image_url)")
    family: str | None = Field(description="model family: sd15, sdxl, flux (for `model`, `loras`)")
    takes_loras: bool = Field(description="whether `loras` may be given")
    parameters: list[str]
    presets: list[str]
    aspects: list[str]
    default: bool = Field(default=False, description="used when a request names none")
    parameter_specs: list[ParameterOut] = Field(
        default_factory=list, description="each parameter in the manifest's order"
    )


class Problem(BaseModel):
    """Every refusal: where the problem is and what is wrong, in a sentence that never
    repeats what was sent."""

    detail: str = Field(max_length=DETAIL_MAX, examples=["seed: must be a whole number."])


class UploadOut(BaseModel):
    """An uploaded image: its `key` goes in a generation's `params.image`."""

    key: str = Field(description="usable as `params.image` by the uploader only")
    url: str = Field(description="a time-limited URL anyone holding it can GET")
    width: int
    height: int
    content_type: str


class ImageResultOut(BaseModel):
    """The first image of a finished one-call request (POST /v1/images)."""

    id: str = Field(description="the generation, readable at /v1/generations/{id}")
    file_key: str
    public_url: str = Field(description="a time-limited URL anyone holding it can GET")


class GenerationPage(BaseModel):
    """A caller's generations, newest first."""

    generations: list[GenerationOut]
    next_before: str | None = Field(
        default=None, description="pass as `before` for the next page; absent on the last"
    )
