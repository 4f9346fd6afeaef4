"""Find workflows: every `<name>.toml` manifest with its `<name>.json` graph.

The shipped workflows are package data (`stillhouse/workflows/shipped/`, read through
importlib.resources so they come along wherever stillhouse is installed); an operator's
own folder (STILLHOUSE_WORKFLOWS__DIR) adds workflows or replaces shipped ones by name.
A broken workflow never hides the others: loading returns the good ones and one
problem line per broken file, naming the file and what is wrong.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from difflib import get_close_matches
from enum import StrEnum
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from stillhouse.errors import StillhouseError
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.manifest import SERVED, Manifest, Purpose

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
SHIPPED_FOLDER = "shipped"  # inside this package


class Origin(StrEnum):
    """Where a workflow came from."""

    SHIPPED = "shipped"
    FOLDER = "folder"  # the operator's own (STILLHOUSE_WORKFLOWS__DIR)


class UnknownWorkflow(StillhouseError):
    """No workflow by that name (the message suggests close names)."""


class Workflow(BaseModel):
    """A manifest and the graph template it describes."""

    model_config = ConfigDict(frozen=True)

    name: str
    manifest: Manifest
    graph: ComfyGraph
    source: str  # the manifest file, for messages
    origin: Origin


def shipped_workflows() -> Traversable:
    """The folder of workflows that come with stillhouse (a real folder when installed
    normally; read it through the Traversable API all the same)."""
    return resources.files(__package__).joinpath(SHIPPED_FOLDER)


@dataclass
class WorkflowCatalog:
    """Workflows by name; `problems` lists the files that failed, one line each."""

    folder: Path | None = None  # the operator's own folder, if one is set
    workflows: dict[str, Workflow] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # shipped names `folder` overrides

    @classmethod
    def load(cls, folder: Path | None = None) -> WorkflowCatalog:
        """The shipped workflows, then those in `folder` (not recursive): each of those
        adds a workflow or replaces the shipped one of the same name."""
        catalog = cls(folder)
        catalog._read(shipped_workflows(), Origin.SHIPPED)
        if folder is None:
            return catalog
        if not folder.is_dir():
            catalog.problems.append(f"{folder}: workflows folder not found")
            return catalog
        catalog._read(folder, Origin.FOLDER)
        return catalog

    def _read(self, folder: Traversable, origin: Origin) -> None:
        manifests = sorted(
            (f for f in folder.iterdir() if f.name.endswith(".toml") and f.is_file()),
            key=lambda f: f.name,
        )
        for manifest in manifests:
            try:
                workflow = _load_one(folder, manifest, origin)
            except WorkflowFileError as exc:
                stem = manifest.name.removesuffix(".toml")
                kept = self.workflows.get(stem)
                shipped = kept is not None and kept.origin is Origin.SHIPPED
                self.problems.append(f"{exc} (the shipped {stem} stays)" if shipped else str(exc))
            else:
                if workflow.name in self.workflows:
                    self.replaced.append(workflow.name)
                self.workflows[workflow.name] = workflow

    def names(self) -> list[str]:
        """Every loaded workflow name, sorted."""
        return sorted(self.workflows)

    def count(self, origin: Origin) -> int:
        """How many loaded workflows came from `origin`."""
        return sum(1 for w in self.workflows.values() if w.origin is origin)

    def summary(self) -> str:
        """One line: how many loaded and from where, e.g. for a start-up banner."""
        shipped, own = self.count(Origin.SHIPPED), self.count(Origin.FOLDER)
        parts = [f"{shipped} shipped"]
        if self.folder is not None:
            parts.append(f"{own} from {self.folder}")
        if self.replaced:
            parts.append(f"replacing the shipped {', '.join(sorted(self.replaced))}")
        return f"{len(self.workflows)} loaded: {', '.join(parts)}"

    def get(self, name: str) -> Workflow:
        """The workflow called `name`; UnknownWorkflow (with suggestions) if none."""
        try:
            return self.workflows[name]
        except KeyError:
            close = get_close_matches(name, self.workflows, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownWorkflow(f"no workflow named {name!r}{hint}") from None

    def find(self, typed: str, purpose: Purpose | None = None) -> Workflow:
        """The workflow a user means: its name or its title, in any case, with spaces,
        dashes and underscores alike; or a family or name prefix ("sdxl", "sd 1.5") that
        leaves one workflow for `purpose`. UnknownWorkflow (with suggestions) if none."""
        if typed in self.workflows:
            return self.workflows[typed]
        wanted = loose(typed)
        fitting = [
            w for w in self.workflows.values() if purpose is None or w.manifest.purpose is purpose
        ]
        for workflow in fitting:
            if wanted in (loose(workflow.name), loose(workflow.manifest.title)):
                return workflow
        by_prefix = [
            w
            for w in fitting
            if loose(w.name).startswith(wanted)
            or (w.manifest.family is not None and loose(w.manifest.family) == wanted)
        ]
        # "sd15" means the plain text-to-image one, not one that needs a picture too.
        plain = [w for w in by_prefix if not _needs_image(w)]
        for group in (by_prefix, plain):
            if len(group) == 1:
                return group[0]
        names = {loose(w.manifest.title): w.name for w in fitting} | {
            w.name: w.name for w in fitting
        }
        close = [names[c] for c in get_close_matches(wanted, names, n=3)]
        close = list(dict.fromkeys(close)) or [w.name for w in by_prefix][:3]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownWorkflow(f"no workflow named {typed!r}{hint}")

    def served(self) -> list[Workflow]:
        """What /serve and the API run from a prompt (text to image), or a prompt and a
        picture (image to image), by name; the other purposes serve the buttons."""
        return sorted((w for w in self.workflows.values() if w.manifest.purpose in SERVED),
                      key=lambda w: w.name)  # fmt: skip

    def for_purpose(self, purpose: Purpose) -> list[Workflow]:
        """Workflows serving one purpose (generate for /serve, upscale, variations)."""
        return [w for w in self.workflows.values() if w.manifest.purpose is purpose]


def loose(text: str) -> str:
    """A name as typed, made comparable (workflows, models, options): case folded, without
    spaces, dashes, underscores or dots ("SD 1.5", "sd-15" and "sd15" are all "sd15")."""
    return re.sub(r"[\s_.\-]+", "", text.casefold())


def _needs_image(workflow: Workflow) -> bool:
    parameters = workflow.manifest.parameters
    return any(parameters[n].required for n in workflow.manifest.image_parameters())


class WorkflowFileError(StillhouseError):
    """A manifest or graph file that cannot be used, with the file named."""


def _load_one(folder: Traversable, manifest_file: Traversable, origin: Origin) -> Workflow:
    manifest_path = str(manifest_file)
    name = manifest_file.name.removesuffix(".toml")
    if not NAME.match(name):
        raise WorkflowFileError(
            f"{manifest_path}: name {name!r} must be lowercase letters, digits, '-', '_' or '.'"
        )
    try:
        manifest = Manifest.model_validate(tomllib.loads(manifest_file.read_text()))
    except tomllib.TOMLDecodeError as exc:
        raise WorkflowFileError(f"{manifest_path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise WorkflowFileError(f"{manifest_path}: {_first_lines(exc)}") from None
    graph_name = manifest.graph or f"{name}.json"
    if "/" in graph_name or "\\" in graph_name:
        raise WorkflowFileError(f"{manifest_path}: graph {graph_name!r} must lie beside it")
    graph_file = folder.joinpath(graph_name)
    try:
        graph = ComfyGraph.model_validate(json.loads(graph_file.read_text()))
    except FileNotFoundError:
        raise WorkflowFileError(f"{manifest_path}: graph file {graph_name} not found") from None
    except json.JSONDecodeError as exc:
        raise WorkflowFileError(f"{graph_file}: not valid JSON: {exc}") from None
    except ValidationError as exc:
        raise WorkflowFileError(
            f"{graph_file}: not a ComfyUI API-format graph (export it with 'Save (API)'): "
            f"{_first_lines(exc)}"
        ) from None
    return Workflow(name=name, manifest=manifest, graph=graph, source=manifest_path, origin=origin)


def _first_lines(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
