"""Find workflows in a folder: every `<name>.toml` manifest with its `<name>.json` graph.

A broken workflow never hides the others: loading returns the good ones and one
problem line per broken file, naming the file and what is wrong.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from stillhouse.errors import StillhouseError
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.manifest import Manifest, Purpose

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class UnknownWorkflow(StillhouseError):
    """No workflow by that name (the message suggests close names)."""


class Workflow(BaseModel):
    """A manifest and the graph template it describes."""

    model_config = ConfigDict(frozen=True)

    name: str
    manifest: Manifest
    graph: ComfyGraph
    source: Path


@dataclass
class WorkflowCatalog:
    """The workflows of one folder, by name; `problems` lists the files that failed."""

    folder: Path
    workflows: dict[str, Workflow] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path) -> WorkflowCatalog:
        """Read every manifest in `folder` (not recursive)."""
        catalog = cls(folder)
        if not folder.is_dir():
            catalog.problems.append(f"{folder}: workflows folder not found")
            return catalog
        for manifest_path in sorted(folder.glob("*.toml")):
            try:
                workflow = _load_one(manifest_path)
            except WorkflowFileError as exc:
                catalog.problems.append(str(exc))
            else:
                catalog.workflows[workflow.name] = workflow
        return catalog

    def names(self) -> list[str]:
        """Every loaded workflow name, sorted."""
        return sorted(self.workflows)

    def get(self, name: str) -> Workflow:
        """The workflow called `name`; UnknownWorkflow (with suggestions) if none."""
        try:
            return self.workflows[name]
        except KeyError:
            close = get_close_matches(name, self.workflows, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownWorkflow(f"no workflow named {name!r}{hint}") from None

    def for_purpose(self, purpose: Purpose) -> list[Workflow]:
        """Workflows serving one purpose (generate for /serve, upscale, variations)."""
        return [w for w in self.workflows.values() if w.manifest.purpose is purpose]


class WorkflowFileError(StillhouseError):
    """A manifest or graph file that cannot be used, with the file named."""


def _load_one(manifest_path: Path) -> Workflow:
    name = manifest_path.stem
    if not NAME.match(name):
        raise WorkflowFileError(
            f"{manifest_path}: name {name!r} must be lowercase letters, digits, '-', '_' or '.'"
        )
    try:
        manifest = Manifest.model_validate(tomllib.loads(manifest_path.read_text()))
    except tomllib.TOMLDecodeError as exc:
        raise WorkflowFileError(f"{manifest_path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise WorkflowFileError(f"{manifest_path}: {_first_lines(exc)}") from None
    graph_path = manifest_path.with_name(manifest.graph or f"{name}.json")
    try:
        graph = ComfyGraph.model_validate(json.loads(graph_path.read_text()))
    except FileNotFoundError:
        raise WorkflowFileError(
            f"{manifest_path}: graph file {graph_path.name} not found"
        ) from None
    except json.JSONDecodeError as exc:
        raise WorkflowFileError(f"{graph_path}: not valid JSON: {exc}") from None
    except ValidationError as exc:
        raise WorkflowFileError(
            f"{graph_path}: not a ComfyUI API-format graph (export it with 'Save (API)'): "
            f"{_first_lines(exc)}"
        ) from None
    return Workflow(name=name, manifest=manifest, graph=graph, source=manifest_path)


def _first_lines(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
