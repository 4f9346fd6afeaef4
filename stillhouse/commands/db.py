"""`stillhouse db upgrade | current`: the schema, through Alembic."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from stillhouse.commands.common import load_settings
from stillhouse.config import Settings, safe_database_url
from stillhouse.errors import StillhouseError


@click.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: the newest)."""
    from stillhouse.db.engine import check_database, make_engine
    from stillhouse.db.migrate import current_revision, upgrade

    settings = load_settings()
    engine = make_engine(settings, pool=False)
    with _reaching(settings):
        version = check_database(engine)
        upgrade(engine, revision)
    click.echo(
        f"{safe_database_url(settings.database_url())} ({version}) "
        f"is at revision {current_revision(engine)}"
    )


@db.command("current")
def db_current() -> None:
    """Show the database's revision and whether it is the newest; exit 1 when behind."""
    from stillhouse.db.engine import make_engine
    from stillhouse.db.migrate import current_revision, head_revision

    settings = load_settings()
    engine = make_engine(settings, pool=False)
    with _reaching(settings):
        current, head = current_revision(engine), head_revision(engine)
    state = "up to date" if current == head else f"behind: run `stillhouse db upgrade` ({head})"
    click.echo(f"{safe_database_url(settings.database_url())}: {current or 'empty'} — {state}")
    if current != head:
        sys.exit(1)


@contextmanager
def _reaching(settings: Settings) -> Iterator[None]:
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except OperationalError as exc:
        where = safe_database_url(settings.database_url())
        raise StillhouseError(f"cannot reach the database at {where}: {exc.orig}") from None
