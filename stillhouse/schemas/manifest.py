"""A workflow's manifest: what users may set, where each value binds, what it needs.

Contributors write it as TOML beside the ComfyUI graph (`workflows/<name>.toml`); these
models are the whole format, so a mistake is reported with the field that is wrong.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ParamValue = str | int | float | bool

SEED_MAX = 2**32 - 1
REQUIRED_PRESETS = ("fast", "quality")
_BINDING = re.compile(r"^(?P<node>[A-Za-z0-9_:-]+)\.(?P<input>[A-Za-z0-9_]+)$")


class ParamType(StrEnum):
    """What kind of value a parameter takes."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    CHOICE = "choice"
    SEED = "seed"  # an int; drawn at random and recorded when not given
    IMAGE = "image"  # a user's image: a URL or a storage key, fetched by the worker


class Purpose(StrEnum):
    """What the workflow is for: /serve offers `generate` (and `img2img` when a picture is
    attached); the buttons under a result pick the others from the result's family."""

    GENERATE = "generate"
    IMG2IMG = "img2img"  # a picture and a prompt: an attached image, Vary Subtle/Strong
    VARIATIONS = "variations"  # several new takes on a result (V1..V4)
    UPSCALE = "upscale"  # a model's 2x/4x enlargement (no diffusion; any family)
    CREATIVE_UPSCALE = "creative_upscale"  # enlarge, then a low-denoise img2img pass
    INPAINT = "inpaint"  # repaint where a mask is white (Vary Region)
    OUTPAINT = "outpaint"  # extend the canvas and fill it (Zoom Out, Pan)


# What /serve and the API run from a prompt (and a picture); the others serve the buttons.
SERVED = (Purpose.GENERATE, Purpose.IMG2IMG)


class Family(StrEnum):
    """The model family a diffusion workflow runs; buttons keep a result's family."""

    SD15 = "sd15"
    SDXL = "sdxl"
    FLUX = "flux"


class Binding(BaseModel):
    """One place a parameter's value goes: a node id and one of its inputs."""

    model_config = ConfigDict(frozen=True)

    node: str
    input: str

    def __str__(self) -> str:
        return f"{self.node}.{self.input}"


def _parse_binding(value: object) -> object:
    if isinstance(value, str):
        match = _BINDING.match(value)
        if not match:
            raise ValueError(f"binding {value!r} must look like '<node id>.<input name>'")
        return {"node": match["node"], "input": match["input"]}
    return value


class Parameter(BaseModel):
    """A value a user may set, with its bounds and where it binds in the graph."""

    model_config = ConfigDict(extra="forbid")

    type: ParamType
    title: str = ""
    help: str = Field(default="", max_length=100)
    required: bool = False
    default: ParamValue | None = None
    min: float | None = None
    max: float | None = None
    step: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=1)
    choices: list[str | int | float] | None = None
    offer: bool = Field(
        default=True,
        description="offered to Discord users (/serve, its More options, Remix); false: "
        "set by presets, buttons and the API only",
    )
    bind: list[Binding] = Field(min_length=1)

    def label(self, name: str) -> str:
        """What users read for this parameter: its title, else its name in words."""
        return self.title or name.replace("_", " ")

    @field_validator("bind", mode="before")
    @classmethod
    def _bindings(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        return [_parse_binding(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        numeric = self.type in (ParamType.INT, ParamType.FLOAT, ParamType.SEED)
        if not numeric and (self.min is not None or self.max is not None or self.step):
            raise ValueError(f"min/max/step only apply to numbers, not to {self.type}")
        if (self.type is ParamType.CHOICE) != bool(self.choices):
            raise ValueError("a choice parameter needs `choices`, and only it may have them")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.required and self.default is not None:
            raise ValueError("a required parameter has no default")
        if self.type is ParamType.IMAGE and self.default is not None:
            raise ValueError("an image parameter has no default")
        if self.type is ParamType.SEED and self.max is None:
            self.max = SEED_MAX
        if self.type is ParamType.SEED and self.min is None:
            self.min = 0
        return self


class ModelFile(BaseModel):
    """A model file the workflow loads, and where the worker image gets it."""

    model_config = ConfigDict(extra="forbid")

    folder: str = Field(pattern=r"^[a-z0-9_]+$")
    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    url: str | None = Field(default=None, pattern=r"^https://")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class LoraSocket(BaseModel):
    """Where LoRAs chain in: the node outputs that give the MODEL and the CLIP (for a
    checkpoint loader, `["4", 0]` and `["4", 1]`). The binder inserts LoraLoader nodes
    after them and rewires every input that read them; no `clip`: LoraLoaderModelOnly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: tuple[str, int]
    clip: tuple[str, int] | None = None
    max: int = Field(default=4, ge=1, le=4)


class Manifest(BaseModel):
    """Everything /serve needs to know about one ComfyUI graph."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=80)
    description: str = Field(default="", max_length=300)
    version: str = Field(default="1", max_length=32)
    purpose: Purpose = Purpose.GENERATE
    family: Family | None = Field(
        default=None, description="the model family it runs; none: any (e.g. ESRGAN upscale)"
    )
    checkpoint: str | None = Field(
        default=None,
        description="the parameter that names the checkpoint file (a choice among the "
        "catalog's models of this family); buttons carry it from the source",
    )
    loras: LoraSocket | None = Field(default=None, description="where LoRAs chain in")
    graph: str | None = Field(default=None, description="graph file; default <name>.json")
    outputs: list[str] = Field(min_length=1, description="node ids that produce the images")
    models: list[ModelFile] = Field(default_factory=list)
    parameters: dict[str, Parameter]
    presets: dict[str, dict[str, ParamValue]]
    default_preset: str | None = None
    aspects: dict[str, tuple[int, int]] = Field(default_factory=dict)

    @field_validator("parameters")
    @classmethod
    def _names(cls, value: dict[str, Parameter]) -> dict[str, Parameter]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
                raise ValueError(f"parameter name {name!r}: use lower_snake_case, max 32 chars")
        return value

    @model_validator(mode="after")
    def _presets_and_aspects(self) -> Manifest:
        missing = [p for p in REQUIRED_PRESETS if p not in self.presets]
        if missing:
            raise ValueError(
                f"presets {missing} are required (every workflow has fast and quality)"
            )
        for preset, values in self.presets.items():
            unknown = sorted(set(values) - set(self.parameters))
            if unknown:
                raise ValueError(f"preset {preset!r} sets unknown parameters {unknown}")
        if self.default_preset is not None and self.default_preset not in self.presets:
            raise ValueError(f"default_preset {self.default_preset!r} is not a preset")
        if self.aspects and not {"width", "height"} <= set(self.parameters):
            raise ValueError("aspects need `width` and `height` parameters")
        if self.checkpoint is not None and self.checkpoint not in self.parameters:
            raise ValueError(f"checkpoint {self.checkpoint!r} is not a parameter")
        if (
            self.purpose not in (Purpose.UPSCALE,)
            and self.family is None
            and (self.loras is not None or self.checkpoint is not None)
        ):
            raise ValueError("a workflow with a checkpoint or LoRAs names its `family`")
        return self

    def model_files(self) -> set[str]:
        """The file names this workflow may load."""
        return {m.file for m in self.models}

    def offered(self) -> dict[str, Parameter]:
        """The parameters Discord users may set, in the manifest's order."""
        return {n: p for n, p in self.parameters.items() if p.offer}

    def image_parameters(self) -> list[str]:
        """Parameters that take a user's image."""
        return [n for n, p in self.parameters.items() if p.type is ParamType.IMAGE]
