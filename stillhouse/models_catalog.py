"""The operators' catalog of checkpoints and LoRAs: what each model is, where the worker
image gets it, and who may use it.

STILLHOUSE_WORKFLOWS__MODELS_FILE names a TOML file (docs/workflows.md describes it):

    [checkpoints.dreamshaper]
    title = "DreamShaper 8"
    family = "sd15"
    file = "dreamshaper_8.safetensors"
    url = "https://huggingface.co/…/dreamshaper_8.safetensors"

    [loras.pixel-art]
    title = "Pixel Art"
    family = "sdxl"
    file = "pixel-art-xl.safetensors"
    url = "https://huggingface.co/…/pixel-art-xl.safetensors"
    trigger_words = ["pixel art"]
    default_weight = 0.8

    [loras.pixel-art.access]   # leave out (or leave the lists empty): everyone
    servers = [123456789012345678]
    roles = [234567890123456789]
    users = [345678901234567890]

A private model is usable by a user named in `users`, in a server named in `servers`, or
by a member with a role named in `roles`: any one is enough. Without a file the catalog
holds the checkpoints the workflows load by default (their `checkpoint` parameter's
default) and no LoRAs.

Users name a model by its name (the table's key), its title or its file, in any case,
with spaces, dashes, underscores and dots alike. What they are told never names a file
of a model they may not use, nor any id.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stillhouse.config import WorkflowSettings
from stillhouse.errors import StillhouseError
from stillhouse.schemas.manifest import Family, ModelFile, ParamValue, Purpose
from stillhouse.workflows.loader import Workflow, WorkflowCatalog, loose
from stillhouse.workflows.loras import LORA_FILE, LORAS_PARAM, LoraChoice, parse_loras

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HTTPS = r"^https://\S+$"
WEIGHT_MIN, WEIGHT_MAX = -2.0, 2.0
PROMPT = "prompt"
FAMILY_SAID = {Family.SD15: "SD 1.5", Family.SDXL: "SDXL", Family.FLUX: "FLUX"}
_QUOTED_MAX = 40  # characters of what a user typed that a sentence repeats


class ModelKind(StrEnum):
    """The two kinds of catalog entry, and the models folder each lives in."""

    CHECKPOINT = "checkpoint"
    LORA = "lora"

    @property
    def folder(self) -> str:
        """ComfyUI's models/<folder>."""
        return "checkpoints" if self is ModelKind.CHECKPOINT else "loras"

    @property
    def said(self) -> str:
        """How users read the kind."""
        return "model" if self is ModelKind.CHECKPOINT else "LoRA"


class ModelsFileError(StillhouseError):
    """The models file cannot be used; the message names the file, the field and why."""


class ModelRefused(StillhouseError):
    """A model a user may not use here: unknown, private, or of another family. The
    message is the sentence they read; `kind` as intake.Refusal's."""

    def __init__(self, message: str, kind: Literal["invalid", "forbidden"] = "invalid") -> None:
        super().__init__(message)
        self.kind: Literal["invalid", "forbidden"] = kind


@dataclass(frozen=True)
class Asker:
    """Who asks for a model and where: a user (None: nobody in particular), the server
    they ask in, and their roles there."""

    user_id: int | None = None
    guild_id: int | None = None
    role_ids: frozenset[int] = field(default_factory=frozenset)


class Access(BaseModel):
    """Who may use a model; all three lists empty (the default): everyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: list[int] = Field(default_factory=list, description="Discord role ids")
    users: list[int] = Field(default_factory=list, description="Discord user ids")
    servers: list[int] = Field(default_factory=list, description="Discord server (guild) ids")

    @property
    def public(self) -> bool:
        """Whether everyone may use it."""
        return not (self.roles or self.users or self.servers)

    def allows(self, asker: Asker | None) -> bool:
        """Whether `asker` may use it (None: only a public model)."""
        if self.public:
            return True
        if asker is None:
            return False
        return (
            (asker.user_id is not None and asker.user_id in self.users)
            or (asker.guild_id is not None and asker.guild_id in self.servers)
            or bool(asker.role_ids & set(self.roles))
        )

    def holders(self) -> str:
        """Who may use it, in words without ids."""
        who = [
            "some servers' members" if self.servers else "",
            "members with certain roles" if self.roles else "",
            "certain users" if self.users else "",
        ]
        return " or ".join(w for w in who if w)


class CatalogModel(BaseModel):
    """One model of the catalog: what users read, the file ComfyUI loads, where the
    worker image downloads it, and who may use it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", description="the table's key (set by the catalog)")
    title: str = Field(default="", max_length=80, description="what users read; default: name")
    family: Family
    file: str = Field(pattern=LORA_FILE.pattern, max_length=200)
    url: str | None = Field(default=None, pattern=HTTPS, description="where the image gets it")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    preview: str | None = Field(default=None, pattern=HTTPS, description="an example image")
    access: Access = Field(default_factory=Access)

    def label(self) -> str:
        """What users read: the title, else the name."""
        return self.title or self.name

    def spellings(self) -> set[str]:
        """What a user may type for it (loosely compared)."""
        return {loose(self.name), loose(self.label()), loose(self.file)}


class Checkpoint(CatalogModel):
    """A checkpoint a workflow of its family may load."""


class Lora(CatalogModel):
    """A LoRA, chained into workflows of its family."""

    trigger_words: list[str] = Field(default_factory=list, max_length=20)
    default_weight: float = Field(default=1.0, ge=WEIGHT_MIN, le=WEIGHT_MAX)

    @field_validator("trigger_words")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        for word in value:
            if not word.strip() or len(word) > 100 or "," in word:
                raise ValueError("each trigger word is 1 to 100 characters, without commas")
        return [w.strip() for w in value]


_Model = TypeVar("_Model", bound=CatalogModel)


class ModelsFile(BaseModel):
    """The file's whole format: `[checkpoints.<name>]` and `[loras.<name>]` tables."""

    model_config = ConfigDict(extra="forbid")

    checkpoints: dict[str, Checkpoint] = Field(default_factory=dict)
    loras: dict[str, Lora] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_names_inside(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        for kind in ("checkpoints", "loras"):
            for key, entry in (data.get(kind) or {}).items():
                if isinstance(entry, dict) and "name" in entry:
                    raise ValueError(f"{kind}.{key}: `name` is the table's key; leave it out")
        return data

    @model_validator(mode="after")
    def _names(self) -> ModelsFile:
        for kind, entries in (("checkpoints", self.checkpoints), ("loras", self.loras)):
            for key in entries:
                if not NAME.match(key):
                    raise ValueError(
                        f"{kind}.{key}: a name is letters, digits, '-', '_' or '.' "
                        "(at most 64, starting with a letter or digit)"
                    )
            _distinct(kind, entries)
        return self


def _distinct(kind: str, entries: dict[str, Checkpoint] | dict[str, Lora]) -> None:
    """No two entries a user could not tell apart by name or title."""
    seen: dict[str, str] = {}
    for key, entry in entries.items():
        for said in {loose(key), loose(entry.title or key)}:
            other = seen.setdefault(said, key)
            if other != key:
                raise ValueError(
                    f"{kind}.{key}: its name or title reads the same as {kind}.{other}'s"
                )


@dataclass(frozen=True)
class ModelCatalog:
    """The checkpoints and LoRAs users may choose from, by name."""

    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    loras: dict[str, Lora] = field(default_factory=dict)
    source: str = "built-in"  # the file, for messages

    # -- building -------------------------------------------------------------------------

    @classmethod
    def load(cls, settings: WorkflowSettings, workflows: WorkflowCatalog) -> ModelCatalog:
        """The operators' file (STILLHOUSE_WORKFLOWS__MODELS_FILE), else the built-in one."""
        if settings.models_file is None:
            return cls.builtin(workflows)
        return cls.from_file(settings.models_file)

    @classmethod
    def from_file(cls, path: Path) -> ModelCatalog:
        """The catalog a TOML file describes; ModelsFileError naming the field if not."""
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ModelsFileError(f"models file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ModelsFileError(f"models file {path}: not valid TOML: {exc}") from None
        return cls.from_data(data, str(path))

    @classmethod
    def from_data(cls, data: object, source: str = "models file") -> ModelCatalog:
        """The catalog parsed TOML describes; ModelsFileError naming the field if not."""
        try:
            parsed = ModelsFile.model_validate(data)
        except ValidationError as exc:
            raise ModelsFileError(f"{source}: {_problems(exc)}") from None
        return cls(
            checkpoints={
                k: v.model_copy(update={"name": k}) for k, v in parsed.checkpoints.items()
            },
            loras={k: v.model_copy(update={"name": k}) for k, v in parsed.loras.items()},
            source=source,
        )

    @classmethod
    def builtin(cls, workflows: WorkflowCatalog) -> ModelCatalog:
        """The checkpoints the workflows load by default, public, named by file stem;
        titled after the plainest workflow that loads them (text to image first)."""
        checkpoints: dict[str, Checkpoint] = {}
        ordered = sorted(workflows.workflows.values(), key=_plainest)
        for workflow in ordered:
            manifest = workflow.manifest
            if manifest.checkpoint is None or manifest.family is None:
                continue
            default = manifest.parameters[manifest.checkpoint].default
            if not isinstance(default, str) or not LORA_FILE.match(default):
                continue
            name = _stem(default)
            if name in checkpoints or not NAME.match(name):
                continue
            declared = next((m for m in manifest.models if m.file == default), None)
            checkpoints[name] = Checkpoint(
                name=name,
                title=manifest.title,
                family=manifest.family,
                file=default,
                url=declared.url if declared else None,
                sha256=declared.sha256 if declared else None,
            )
        return cls(checkpoints=checkpoints)

    # -- reading --------------------------------------------------------------------------

    def entries(self, kind: ModelKind) -> dict[str, Checkpoint] | dict[str, Lora]:
        """Every model of one kind, by name."""
        return self.checkpoints if kind is ModelKind.CHECKPOINT else self.loras

    def usable(
        self, kind: ModelKind, asker: Asker | None, family: Family | None = None
    ) -> list[CatalogModel]:
        """The models of `kind` that `asker` may use (of `family`, when given), by title."""
        return _usable(self.entries(kind).values(), asker, family)

    def usable_checkpoints(
        self, asker: Asker | None, family: Family | None = None
    ) -> list[Checkpoint]:
        """The checkpoints `asker` may use (of `family`, when given), by title."""
        return _usable(self.checkpoints.values(), asker, family)

    def usable_loras(self, asker: Asker | None, family: Family | None = None) -> list[Lora]:
        """The LoRAs `asker` may use (of `family`, when given), by title."""
        return _usable(self.loras.values(), asker, family)

    def find(self, kind: ModelKind, typed: str) -> CatalogModel | None:
        """The model a user means: by name, title or file, loosely; None if none."""
        entries = self.entries(kind)
        if typed in entries:
            return entries[typed]
        wanted = loose(typed)
        if not wanted:
            return None
        return next((m for m in entries.values() if wanted in m.spellings()), None)

    def resolve(
        self,
        kind: ModelKind,
        typed: str,
        asker: Asker | None,
        family: Family | None = None,
        *,
        workflow_title: str | None = None,
    ) -> CatalogModel:
        """The model a user means, if they may use it for a workflow of `family`;
        ModelRefused with the sentence they read if not."""
        found = self.find(kind, typed)
        if found is None:
            raise ModelRefused(self.unknown_sentence(kind, typed, asker, family))
        if not found.access.allows(asker):
            raise ModelRefused(private_sentence(found), "forbidden")
        if family is not None and found.family is not family:
            runs = f"{workflow_title} runs" if workflow_title else "this workflow runs"
            raise ModelRefused(
                f"“{found.label()}” is a {FAMILY_SAID[found.family]} {kind.said} and {runs} "
                f"{FAMILY_SAID[family]} models; pick another {kind.said} or workflow."
            )
        return found

    def unknown_sentence(
        self, kind: ModelKind, typed: str, asker: Asker | None, family: Family | None = None
    ) -> str:
        """No such model, with close names among those `asker` may use."""
        shown = typed.strip()
        shown = shown if len(shown) <= _QUOTED_MAX else shown[: _QUOTED_MAX - 1] + "…"
        offered = {loose(m.label()): m.label() for m in self.usable(kind, asker, family)}
        offered |= {loose(m.name): m.label() for m in self.usable(kind, asker, family)}
        close = list(
            dict.fromkeys(offered[c] for c in get_close_matches(loose(typed), offered, n=3))
        )
        hint = f" Did you mean {', '.join(f'“{c}”' for c in close)}?" if close else ""
        said = kind.said
        return f"There is no {said} “{shown}” you can use here.{hint} See the list of {said}s."

    def downloads(self) -> list[ModelFile]:
        """What the worker image fetches: every model with a URL, once each."""
        seen: dict[tuple[str, str], ModelFile] = {}
        for kind in ModelKind:
            for model in self.entries(kind).values():
                if model.url is not None:
                    wanted = ModelFile(
                        folder=kind.folder, file=model.file, url=model.url, sha256=model.sha256
                    )
                    seen.setdefault((kind.folder, model.file), wanted)
        return list(seen.values())

    def files(self, kind: ModelKind | None = None) -> set[str]:
        """The file names of the catalog's models (of one kind, when given)."""
        kinds = [kind] if kind is not None else list(ModelKind)
        return {m.file for k in kinds for m in self.entries(k).values()}


def _usable(models: Iterable[_Model], asker: Asker | None, family: Family | None) -> list[_Model]:
    found = [m for m in models if m.access.allows(asker) and (family is None or m.family is family)]
    return sorted(found, key=lambda m: loose(m.label()))


def private_sentence(model: CatalogModel) -> str:
    """Why a user may not use a private model: its title and who may, never ids."""
    return f"“{model.label()}” is private to {model.access.holders()}; you cannot use it here."


class LoraRequest(BaseModel):
    """A LoRA a user asks for: a catalog name (or title) and, optionally, its weight."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    weight: float | None = Field(default=None, ge=WEIGHT_MIN, le=WEIGHT_MAX, allow_inf_nan=False)


def choose(
    catalog: ModelCatalog,
    workflow: Workflow,
    values: dict[str, ParamValue],
    asker: Asker | None,
    *,
    model: str | None = None,
    loras: Sequence[LoraRequest] = (),
) -> list[LoraChoice]:
    """Resolve a request's checkpoint and LoRAs through the catalog, for `asker`.

    In `values` (changed in place): the checkpoint parameter gets the chosen model's file
    (`model`, else a file or name a parameter gave, as Reroll carries it; the workflow's
    own default needs no catalog entry), the recorded LoRAs are taken out (they come back
    as the returned choices), and the prompt gets the chosen LoRAs' trigger words it lacks.
    ModelRefused with the user's sentence for a model they may not use here."""
    manifest = workflow.manifest
    _checkpoint(catalog, workflow, values, asker, model)
    recorded = None if LORAS_PARAM in manifest.parameters else values.pop(LORAS_PARAM, None)
    wanted: list[tuple[str, float | None, float | None]] = [(r.name, r.weight, None) for r in loras]
    if not wanted and recorded not in (None, ""):
        try:
            wanted = [(c.file, c.strength_model, c.strength_clip) for c in parse_loras(recorded)]
        except ValueError as exc:
            raise ModelRefused(f"{exc}.") from None
    if not wanted:
        return []
    socket = manifest.loras
    if socket is None:
        raise ModelRefused(f"{manifest.title} takes no LoRAs; pick another workflow for them.")
    if len(wanted) > socket.max:
        raise ModelRefused(f"{manifest.title} takes at most {socket.max} LoRAs.")
    chosen: list[LoraChoice] = []
    picked: list[Lora] = []
    for typed, weight, clip in wanted:
        lora = catalog.resolve(
            ModelKind.LORA, typed, asker, manifest.family, workflow_title=manifest.title
        )
        assert isinstance(lora, Lora)
        if lora in picked:
            raise ModelRefused(f"“{lora.label()}” is chosen twice; name each LoRA once.")
        strength = lora.default_weight if weight is None else weight
        chosen.append(LoraChoice(lora.file, strength, strength if clip is None else clip))
        picked.append(lora)
    _trigger_words(values, picked)
    return chosen


def _checkpoint(
    catalog: ModelCatalog,
    workflow: Workflow,
    values: dict[str, ParamValue],
    asker: Asker | None,
    model: str | None,
) -> None:
    manifest = workflow.manifest
    parameter = manifest.checkpoint
    if parameter is None:
        if model:
            raise ModelRefused(f"{manifest.title} does not let you choose a model.")
        return
    typed = model or values.get(parameter)
    if typed is None or typed == "":
        values.pop(parameter, None)  # left empty: the workflow's own
        return
    if typed == manifest.parameters[parameter].default:
        values[parameter] = typed  # the workflow's own model
        return
    found = catalog.resolve(
        ModelKind.CHECKPOINT, str(typed), asker, manifest.family, workflow_title=manifest.title
    )
    values[parameter] = found.file


def _trigger_words(values: dict[str, ParamValue], loras: Iterable[Lora]) -> None:
    prompt = values.get(PROMPT)
    if not isinstance(prompt, str):
        return
    missing: list[str] = []
    for lora in loras:
        for word in lora.trigger_words:
            if word.casefold() not in prompt.casefold() and word not in missing:
                missing.append(word)
    if missing:
        values[PROMPT] = (
            ", ".join([prompt.rstrip().rstrip(","), *missing])
            if prompt.strip()
            else ", ".join(missing)
        )


def _plainest(workflow: Workflow) -> tuple[bool, bool, str]:
    manifest = workflow.manifest
    needs_image = any(manifest.parameters[n].required for n in manifest.image_parameters())
    return manifest.purpose is not Purpose.GENERATE, needs_image, workflow.name


def _stem(file: str) -> str:
    name = file.rsplit("/", 1)[-1]
    return (
        name.rsplit(".", 1)[0] if name.endswith((".safetensors", ".ckpt", ".pt", ".pth")) else name
    )


def _problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
