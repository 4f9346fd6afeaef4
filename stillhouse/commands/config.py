"""`stillhouse config show | table`: what is set, and every variable there is."""

from __future__ import annotations

import json

import click

from stillhouse.config import make_settings, settings_table


@click.group()
def config() -> None:
    """Settings: what is set, and every variable there is."""


@config.command("show")
def config_show() -> None:
    """Print the effective settings as JSON, secrets masked."""
    settings = make_settings()
    click.echo(json.dumps(settings.model_dump(mode="json"), indent=2, default=str))


@config.command("table")
def config_table() -> None:
    """Print every variable as a Markdown table (README's settings table)."""
    click.echo(render_settings_table())


def render_settings_table() -> str:
    """| variable | default | meaning | rows for every setting."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, default, doc in settings_table():
        lines.append(f"| `{name}` | `{default}` | {doc} |")
    return "\n".join(lines)
