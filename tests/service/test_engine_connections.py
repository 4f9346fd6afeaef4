"""The MariaDB engine's connections: enough pooled connections for the threads that use
them at once (none opened per use), and no TLS handshake work on loopback."""

from __future__ import annotations

import os
import threading
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from stillhouse.db.engine import _tls_args, make_engine
from tests.conftest import make_settings

THREADS = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default thread pool


def test_the_threads_of_a_process_share_pooled_connections(mariadb_url: str) -> None:
    engine = make_engine(make_settings(database={"url": mariadb_url}))
    opened: list[Any] = []
    closed: list[Any] = []
    event.listen(engine, "connect", lambda conn, _record: opened.append(conn))
    event.listen(engine.pool, "close", lambda conn, _record: closed.append(conn))
    barrier = threading.Barrier(THREADS)

    def use() -> None:
        for _ in range(20):
            with engine.connect() as conn:
                barrier.wait(timeout=10)  # every thread holds a connection at once
                conn.execute(text("select 1"))

    threads = [threading.Thread(target=use) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(opened) == THREADS, "one connection per thread, kept for the next use"
    assert closed == [], "none closed on its way back to the pool (and opened anew)"
    engine.dispose()


def test_loopback_servers_skip_tls_unless_the_url_or_settings_ask() -> None:
    local = make_url("mysql+pymysql://u:p@127.0.0.1:3306/db")
    remote = make_url("mysql+pymysql://u:p@db.internal:3306/db")
    with_ca = make_url("mysql+pymysql://u:p@127.0.0.1:3306/db?ssl_ca=/etc/ca.pem")
    assert _tls_args(local, "auto") == {"ssl_disabled": True}
    assert _tls_args(make_url("mysql+pymysql://u@localhost/db"), "auto") == {"ssl_disabled": True}
    assert _tls_args(remote, "auto") == {}, "PyMySQL's preferred TLS over a network"
    assert _tls_args(remote, "off") == {"ssl_disabled": True}
    assert _tls_args(local, "preferred") == {}
    assert _tls_args(with_ca, "off") == {}, "the URL's own TLS settings win"
