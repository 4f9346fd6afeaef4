"""A database connection that goes silent (a partition, a frozen server) fails a statement
after `STILLHOUSE_DATABASE__IO_TIMEOUT_S` instead of stalling its caller past its leases;
the next statement, once the network is back, works on a fresh connection."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from stillhouse.config import make_settings
from stillhouse.db.engine import is_outage, make_engine
from stillhouse.queue import GenerationQueue
from tests.doubles.silent_proxy import SilentProxy
from tests.support import new_job, wait_until

IO_TIMEOUT_S = 1.0


@pytest.fixture
def proxy(mariadb_url: str) -> Iterator[SilentProxy]:
    port = make_url(mariadb_url).port or 3306
    silent = SilentProxy(port).start()
    yield silent
    silent.stop()


def test_a_silent_connection_fails_within_the_io_timeout(
    mariadb_url: str, proxy: SilentProxy
) -> None:
    url = make_url(mariadb_url).set(host="127.0.0.1", port=proxy.port)
    settings = make_settings(
        database={"url": url.render_as_string(hide_password=False), "io_timeout_s": IO_TIMEOUT_S},
    )
    engine = make_engine(settings)
    queue = GenerationQueue(engine, settings.queue)
    try:
        job = queue.enqueue(new_job()).job
        proxy.freeze()
        began = time.monotonic()
        with pytest.raises(OperationalError) as failed:
            queue.get(job.public_id)
        waited = time.monotonic() - began
        assert waited < IO_TIMEOUT_S + 2, f"stalled {waited:.1f}s on a silent connection"
        assert is_outage(failed.value), "callers retry an outage; this one must read as one"
        proxy.thaw()
        assert wait_until(lambda: queue.get(job.public_id), 10, 0.2, what="the database back")
    finally:
        engine.dispose()
