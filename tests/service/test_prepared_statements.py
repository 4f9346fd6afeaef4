"""Prepared statements (the queues' hot path) behave as Connection.execute would:
same rows, same types, SQLAlchemy's exceptions, a lost connection replaced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue
from stillhouse.queue.statements import INSERT_JOB, JOBS, runnable_jobs
from stillhouse.queue.timing import utcnow
from tests.support import new_job


def test_claim_select_returns_the_rows_sqlalchemy_would(engine: Engine) -> None:
    queue = GenerationQueue(engine, QueueSettings())
    for _ in range(3):
        queue.enqueue(new_job())
    wanted = {"partition": 0, "now": utcnow() + timedelta(seconds=1)}
    with engine.begin() as conn:
        prepared = runnable_jobs(2).mappings(conn, wanted)
    query = select(JOBS).order_by(JOBS.c.priority, JOBS.c.run_after, JOBS.c.id).limit(2)
    with engine.connect() as conn:
        expected = [dict(row) for row in conn.execute(query).mappings()]
    assert prepared == expected
    assert [type(v) for v in prepared[0].values()] == [type(v) for v in expected[0].values()]


def test_a_driver_error_becomes_sqlalchemys_without_the_parameters(engine: Engine) -> None:
    GenerationQueue(engine, QueueSettings()).enqueue(new_job(token="secret-interaction-token"))
    with engine.connect() as conn:
        stored = dict(conn.execute(select(JOBS)).mappings().one())
    with pytest.raises(IntegrityError) as raised, engine.begin() as conn:
        INSERT_JOB.execute(conn, stored)  # the same public id again
    assert "public_id" in str(raised.value.orig)
    assert "secret-interaction-token" not in str(raised.value)


def test_a_prepared_statement_refuses_to_run_outside_a_transaction(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(RuntimeError, match=r"engine\.begin"):
        runnable_jobs(1).mappings(conn, {"partition": 0, "now": utcnow()})


def test_a_lost_connection_is_invalidated_and_the_next_call_reconnects(
    mariadb_engine: Engine,
) -> None:
    queue = GenerationQueue(mariadb_engine, QueueSettings())
    queue.enqueue(new_job())
    with mariadb_engine.connect() as killer, mariadb_engine.connect() as conn:
        conn.begin()
        own_id = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        killer.execute(text(f"KILL {int(own_id)}"))
        with pytest.raises(DBAPIError) as raised:
            runnable_jobs(1).mappings(conn, {"partition": 0, "now": utcnow()})
        assert raised.value.connection_invalidated
        assert conn.invalidated  # the pool will not hand this one out again
    claimed = queue.claim("owner-after-reconnect", limit=1)
    assert len(claimed) == 1
