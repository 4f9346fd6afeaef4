"""The migrations build exactly the schema the models describe, and step back cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from stillhouse.db.engine import make_engine
from stillhouse.db.migrate import current_revision, downgrade, head_revision, upgrade
from stillhouse.db.models import Base
from tests.conftest import create_mysql_database, mysql_test_url, settings_for


@pytest.fixture(params=["sqlite", "mariadb"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    else:
        url = mysql_test_url("stillhouse_test_migrations")
        create_mysql_database(url, fresh=True)
    engine = make_engine(settings_for(url), pool=False)
    yield engine
    engine.dispose()


def test_upgrade_to_head_matches_the_models(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    assert current_revision(fresh_engine) == head_revision(fresh_engine)
    with fresh_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_downgrade_to_base_and_back(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    downgrade(fresh_engine, "base")
    assert set(inspect(fresh_engine).get_table_names()) <= {"alembic_version"}
    upgrade(fresh_engine)
    assert {"generation_queue", "send_queue"} <= set(inspect(fresh_engine).get_table_names())


def test_claim_index_leads_with_the_claim_filter(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    indexes = {
        i["name"]: i["column_names"] for i in inspect(fresh_engine).get_indexes("generation_queue")
    }
    assert indexes["ix_generation_queue_claim"][:4] == [
        "status",
        "partition_id",
        "priority",
        "run_after",
    ]


def test_jobs_queued_before_0002_keep_working_with_no_inputs(fresh_engine: Engine) -> None:
    from sqlalchemy import text

    from stillhouse.config import QueueSettings
    from stillhouse.queue import GenerationQueue

    upgrade(fresh_engine, "0001")
    with fresh_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO generation_queue (public_id, partition_id, status, priority, source,"
                " workflow_name, workflow_version, params, graph, attempts, max_attempts,"
                " run_after, cancel_requested, created_at, updated_at) VALUES ('old-job', 0,"
                " 'queued', 0, 'discord', 'sd15-txt2img', '1', '{}', '{}', 0, 3,"
                " '2026-01-01 00:00:00', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    upgrade(fresh_engine)
    job = GenerationQueue(fresh_engine, QueueSettings()).get("old-job")
    assert job is not None and job.inputs == []
