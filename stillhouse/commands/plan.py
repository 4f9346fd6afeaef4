"""`stillhouse plan`: GPUs, masters, shards, databases, storage, egress and monthly cost
for the load you expect (stillhouse.planning)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stillhouse.planning import DEFAULT_TABLE, Load, load_table, parse_mix, plan, report


@click.command("plan")
@click.option("--daily-users", type=float, required=True, help="people using it each day")
@click.option(
    "--requests", "requests_per_user", type=float, required=True, help="requests a user makes a day"
)
@click.option(
    "--images",
    "images_per_request",
    type=int,
    default=1,
    show_default=True,
    help="images a request makes",
)
@click.option(
    "--peak-factor",
    type=float,
    default=3.0,
    show_default=True,
    help="peak rate over the day's average",
)
@click.option("--mix", default="sd15-512:20:1", show_default=True, help="model:steps:share,…")
@click.option("--gpu", default="H100 PRO", show_default=True, help="a GPU of the table")
@click.option(
    "--utilisation", type=float, default=0.8, show_default=True, help="target GPU utilisation"
)
@click.option(
    "--guilds", type=int, default=1, show_default=True, help="Discord servers the bot is in"
)
@click.option(
    "--retention-days", type=int, default=30, show_default=True, help="how long images are kept"
)
@click.option(
    "--gpu-table",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML: [models.*] and [gpus.*] instead of the built-in table",
)
@click.option("--json", "as_json", is_flag=True, help="the plan as JSON")
def plan_command(
    daily_users: float,
    requests_per_user: float,
    images_per_request: int,
    peak_factor: float,
    mix: str,
    gpu: str,
    utilisation: float,
    guilds: int,
    retention_days: int,
    gpu_table: Path | None,
    as_json: bool,
) -> None:
    """Capacity and monthly cost for a load (figures: docs/sizing.md)."""
    try:
        table = load_table(gpu_table) if gpu_table else DEFAULT_TABLE
        load = Load(
            daily_users=daily_users,
            requests_per_user=requests_per_user,
            images_per_request=images_per_request,
            peak_factor=peak_factor,
            mix=parse_mix(mix),
            gpu=gpu,
            utilisation=utilisation,
            guilds=guilds,
            retention_days=retention_days,
        )
        result = plan(load, table)
    except ValueError as exc:  # pydantic's ValidationError is one
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"load": load.model_dump(), "plan": result.model_dump()}, indent=2))
    else:
        click.echo(report(load, result))
