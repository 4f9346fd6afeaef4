"""`stillhouse workflows list | check | render | snapshot`: tools for contributors.

Every command sees what a running stillhouse would: the shipped workflows, with your own
folder (STILLHOUSE_WORKFLOWS__DIR) adding to them or replacing some by name.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import click

from stillhouse.commands.common import load_settings
from stillhouse.config import Settings
from stillhouse.errors import StillhouseError
from stillhouse.workflows.binder import ParameterError, bind
from stillhouse.workflows.checks import check_workflow
from stillhouse.workflows.loader import Origin, Workflow, WorkflowCatalog
from stillhouse.workflows.node_schemas import SNAPSHOT_FILE, NodeSchemas


@click.group()
def workflows() -> None:
    """List, check and render workflows; refresh the node schema snapshot."""


def _catalog(settings: Settings) -> WorkflowCatalog:
    return WorkflowCatalog.load(settings.workflows.dir)


def _shown_origin(workflow: Workflow) -> str:
    return "shipped" if workflow.origin is Origin.SHIPPED else "yours"


@workflows.command("list")
def list_workflows() -> None:
    """Every workflow: name, purpose, title, where it comes from and its parameters."""
    catalog = _catalog(load_settings())
    for name in catalog.names():
        workflow = catalog.workflows[name]
        manifest = workflow.manifest
        family = manifest.family.value if manifest.family else "any"
        purpose = f"{manifest.purpose.value} ({family})"
        click.echo(f"{workflow.name:<24} {purpose:<25} {manifest.title}")
        click.echo(f"{'':<50} from: {_shown_origin(workflow)} ({workflow.source})")
        click.echo(f"{'':<50} parameters: {', '.join(manifest.parameters)}")
        click.echo(f"{'':<50} presets: {', '.join(manifest.presets)}")
    click.echo(catalog.summary(), err=True)
    for problem in catalog.problems:
        click.echo(f"broken: {problem}", err=True)


@workflows.command("check")
@click.argument("name", required=False)
def check(name: str | None) -> None:
    """Check NAME (default: every workflow) against the node schemas; exit 1 on problems."""
    settings = load_settings()
    catalog = _catalog(settings)
    schemas = NodeSchemas.load(settings.workflows.node_schemas)
    chosen = [catalog.get(name)] if name else list(catalog.workflows.values())
    problems = [] if name else list(catalog.problems)
    for workflow in chosen:
        found = check_workflow(workflow, schemas)
        problems += found
        if not found:
            click.echo(f"ok      {workflow.name}")
    for problem in problems:
        click.echo(f"problem {problem}")
    if problems:
        sys.exit(1)


@workflows.command("render")
@click.argument("name")
@click.option("--set", "values", multiple=True, metavar="KEY=VALUE", help="a parameter value")
@click.option("--preset", help="fast, quality, or another preset of the workflow")
@click.option("--aspect", help="an aspect the workflow offers (square, portrait ...)")
def render(name: str, values: tuple[str, ...], preset: str | None, aspect: str | None) -> None:
    """Print the graph NAME binds to (canonical JSON); the values used go to stderr."""
    settings = load_settings()
    workflow = _catalog(settings).get(name)
    given: dict[str, object] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        given[key.strip()] = value
    try:
        bound = bind(workflow, given, preset=preset, aspect=aspect)
    except ParameterError as exc:
        raise StillhouseError("\n".join(exc.problems)) from None
    click.echo(bound.graph_json())
    click.echo(json.dumps(bound.params.root, sort_keys=True), err=True)


@workflows.command("snapshot")
@click.option("--comfy-url", required=True, help="a running ComfyUI, e.g. http://127.0.0.1:8188")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(__file__).resolve().parents[1] / "workflows" / SNAPSHOT_FILE,
    show_default="the snapshot shipped with stillhouse",
)
def snapshot(comfy_url: str, out: Path) -> None:
    """Refresh the node schema snapshot from a running ComfyUI's /object_info."""
    url = comfy_url.rstrip("/") + "/object_info"
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--comfy-url")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - checked above
            raw = json.load(response)
    except (OSError, ValueError) as exc:
        raise StillhouseError(f"could not read {url}: {exc}") from None
    schemas = NodeSchemas.from_object_info(raw)
    out.write_text(schemas.dump())
    click.echo(f"{len(schemas.root)} node types from {url} written to {out}")
