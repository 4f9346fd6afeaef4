"""`stillhouse` command line: one entry point for every process and tool."""

from __future__ import annotations

import sys
from typing import Any

import click

from stillhouse.commands.config import config
from stillhouse.commands.db import db
from stillhouse.commands.plan import plan_command
from stillhouse.commands.up import up
from stillhouse.commands.workflows import workflows
from stillhouse.errors import SettingsError, StillhouseError

EXIT_BAD_SETTINGS = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """stillhouse: /serve on Discord -> ComfyUI on serverless GPUs, through MySQL queues."""


cli.add_command(db)
cli.add_command(config)
cli.add_command(workflows)
cli.add_command(up)
cli.add_command(plan_command)

# -- the processes ---------------------------------------------------------------------

_PASSTHROUGH: dict[str, Any] = {"ignore_unknown_options": True, "allow_extra_args": True}


@cli.command()
@click.option("--shard-ids", default="", help="comma-separated shards to run (default: all)")
@click.option("--shard-count", type=click.IntRange(min=1), default=None, help="total shards")
def bot(shard_ids: str, shard_count: int | None) -> None:
    """Discord bot shards (`--shard-ids 0,1 --shard-count 4`)."""
    from bot.main import main as run_bot
    from stillhouse.commands.common import load_settings

    try:
        ids = [int(i) for i in shard_ids.split(",") if i.strip()] or None
    except ValueError:
        raise click.BadParameter(f"expected numbers like 0,1 (got {shard_ids!r})") from None
    sys.exit(run_bot(load_settings(), ids, shard_count))


@cli.group()
def scale() -> None:
    """Change how much of each tier runs."""


@scale.command("workers")
@click.option("--min", "minimum", type=click.IntRange(min=0), required=True, help="workers kept")
@click.option("--max", "maximum", type=click.IntRange(min=0), required=True, help="workers at most")
def scale_workers(minimum: int, maximum: int) -> None:
    """The RunPod endpoint's worker counts (through RunPod's REST API)."""
    from master.scaling import main as set_counts
    from stillhouse.commands.common import load_settings

    sys.exit(set_counts(load_settings().runpod, minimum, maximum))


@cli.command()
def shards() -> None:
    """How many bot shards Discord recommends, and how to run that many."""
    from bot.shards import main as advise
    from stillhouse.commands.common import load_settings
    from stillhouse.config import env_name

    token = load_settings().bot.token
    if token is None:
        raise SettingsError([f"{env_name('bot', 'token')}: required to ask Discord"])
    sys.exit(advise(token.get_secret_value()))


@cli.command()
@click.option("--until-idle", is_flag=True, help="exit once the queue is empty (batch runs)")
def master(until_idle: bool) -> None:
    """Dispatcher: claims jobs, drives the GPU backend, writes outcomes."""
    from master.main import main as run_master
    from stillhouse.commands.common import load_settings

    sys.exit(run_master(load_settings(), until_idle=until_idle))


@cli.command(context_settings=_PASSTHROUGH)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """The GPU worker (RunPod handler); runpod flags such as --rp_serve_api pass through."""
    from stillhouse.commands.common import load_settings
    from worker.main import main as run_worker

    settings = load_settings()
    sys.argv = [sys.argv[0], *ctx.args]
    run_worker(settings)


@cli.command()
def api() -> None:
    """HTTP API and playground (STILLHOUSE_API__HOST / __PORT / __KEYS)."""
    from api.main import main as run_api
    from stillhouse.commands.common import load_settings

    sys.exit(run_api(load_settings()))


def main() -> None:
    """Entry point: turn configuration and database errors into one clear line each."""
    try:
        cli(standalone_mode=False)
    except SettingsError as exc:
        for problem in exc.problems:
            click.echo(f"stillhouse: bad setting: {problem}", err=True)
        sys.exit(EXIT_BAD_SETTINGS)
    except StillhouseError as exc:
        click.echo(f"stillhouse: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
