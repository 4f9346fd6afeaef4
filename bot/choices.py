"""What /serve offers in its `workflow` option, straight from the workflows folder.

Discord shows at most 25 choices, so this is the body of the option's autocomplete:
the workflows /serve runs (text to image, and image to image for an attached picture)
whose name or title contains what the user typed.
"""

from __future__ import annotations

from discord import app_commands

from stillhouse.intake import Refusal
from stillhouse.workflows.loader import WorkflowCatalog

MAX_CHOICES = 25  # Discord's limit for choices and autocomplete results


def workflow_choices(catalog: WorkflowCatalog, typed: str = "") -> list[app_commands.Choice[str]]:
    """Choices for /serve's workflow option (name shown: title; value: workflow name)."""
    needle = typed.strip().lower()
    offered = [
        app_commands.Choice(name=w.manifest.title[:100], value=w.name)
        for w in catalog.served()
        if needle in w.name.lower() or needle in w.manifest.title.lower()
    ]
    return offered[:MAX_CHOICES]


def default_workflow(catalog: WorkflowCatalog, name: str) -> str:
    """A workflow /serve can run from a prompt alone (a server's or a user's default), or
    Refusal saying why not."""
    known = {w.name: w for w in catalog.served()}
    if name not in known:
        raise Refusal(f"There is no workflow “{name}” for /serve. See /workflows.")
    manifest = known[name].manifest
    if any(manifest.parameters[p].required for p in manifest.image_parameters()):
        raise Refusal(f"{manifest.title} needs an image, so it cannot be a default.")
    return name
