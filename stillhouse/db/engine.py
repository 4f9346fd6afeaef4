"""Engine factory: the same queue code on MariaDB/MySQL and SQLite."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.pool import NullPool

from stillhouse.config import Settings
from stillhouse.errors import UnsupportedDatabase

IDLE_PING_AFTER_S = 1.0
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def make_engine(settings: Settings, *, pool: bool = True) -> Engine:
    """An engine for the configured database, tuned for queue work."""
    url = make_url(settings.database_url())
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url.database)
    pooling: dict[str, Any] = (
        {
            "pool_size": pool_size(settings),
            "max_overflow": pool_size(settings),
            "pool_recycle": 3600,
            # Every use goes through a context manager that commits or rolls back, so the
            # pool's own ROLLBACK on return would be one more round trip for nothing.
            "pool_reset_on_return": None,
        }
        if pool
        else {"poolclass": NullPool}
    )
    engine = create_engine(
        url,
        # READ COMMITTED: SKIP LOCKED claims take no gap locks and release the rows the
        # WHERE clause rejects, so claimers and enqueuers do not block one another.
        isolation_level="READ COMMITTED",
        # Bound values include interaction tokens: errors must not print them.
        hide_parameters=True,
        connect_args={
            "connect_timeout": max(1, int(settings.database.connect_timeout_s)),
            "read_timeout": max(1, int(settings.database.io_timeout_s)),
            "write_timeout": max(1, int(settings.database.io_timeout_s)),
            "charset": "utf8mb4",
            **_tls_args(url, settings.database.tls),
        },
        **pooling,
    )
    if pool:
        _ping_when_idle(engine)
    return engine


def pool_size(settings: Settings) -> int:
    """The configured size, or one connection per thread that may hold one at once:
    asyncio's default pool (`min(32, CPUs + 4)`), the event loop's own, and the few
    threads a process keeps for its own loops (a bot's delivery: 3)."""
    configured = settings.database.pool_size
    return configured if configured is not None else min(32, (os.cpu_count() or 1) + 4) + 4


def _tls_args(url: URL, tls: str) -> dict[str, Any]:
    """PyMySQL >= 1.2 prefers TLS: each connection builds a certificate context (77 ms
    of CPU measured here) even when the server offers no TLS. Not for loopback, where
    there is no wire to protect, unless the URL asks for TLS itself."""
    asked = any(key.startswith("ssl") for key in url.query)
    local = (url.host or "localhost") in LOOPBACK
    if asked or tls == "preferred" or (tls == "auto" and not local):
        return {}
    return {"ssl_disabled": True}


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping only connections that sat idle: a busy queue pays no extra round trip,
    and a connection that idled through a database restart is replaced, not failed."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < IDLE_PING_AFTER_S:
            return
        try:
            dbapi_connection.ping(reconnect=False)
        except Exception as exc:
            raise DisconnectionError(f"stale connection: {exc}") from exc


def _sqlite_engine(database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{database or ''}", connect_args={"timeout": 30}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # SQLite has no row locks: take the write lock up front so a claim's SELECT and
        # UPDATE see the same queue, and two claimers serialise instead of deadlocking.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def check_database(engine: Engine) -> str:
    """The server version; raises UnsupportedDatabase when SKIP LOCKED is missing."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return "SQLite " + str(conn.execute(text("select sqlite_version()")).scalar_one())
        version = str(conn.execute(text("select version()")).scalar_one())
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    needed = (10, 6) if "mariadb" in version.lower() else (8, 0)
    if numbers < needed:
        raise UnsupportedDatabase(
            f"database server {version} lacks FOR UPDATE SKIP LOCKED; "
            "use MariaDB >= 10.6 or MySQL >= 8.0"
        )
    return version


# MySQL/MariaDB: the transaction was chosen as a deadlock's victim, or waited too long for
# a row lock. Either rolled back; running it again is the documented remedy.
CONFLICT_CODES = frozenset({1205, 1213})


def is_conflict(exc: DBAPIError) -> bool:
    """The statement lost a lock conflict (deadlock, lock wait timeout): retry it."""
    args: tuple[Any, ...] = tuple(getattr(exc.orig, "args", ()))
    return bool(args) and args[0] in CONFLICT_CODES


def is_outage(exc: DBAPIError) -> bool:
    """The database went away (refused, lost, shut down), as opposed to a bad statement:
    worth retrying once it is back."""
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    words = ("connect", "gone away", "lost connection", "refused", "shutdown", "timed out")
    return any(word in text for word in words)
