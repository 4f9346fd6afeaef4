"""What the users of a run would see: each job's final state and its send-queue rows."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Engine, select

from stillhouse.db.models import Delivery, GenerationJob
from stillhouse.schemas.states import DeliveryKind, JobStatus

TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


def outcomes(engine: Engine) -> tuple[dict[str, JobStatus], dict[str, list[DeliveryKind]]]:
    """(public id -> status, public id -> kinds of its send rows)."""
    with engine.connect() as conn:
        jobs = {
            row.public_id: JobStatus(row.status)
            for row in conn.execute(select(GenerationJob.public_id, GenerationJob.status))
        }
        rows: dict[str, list[DeliveryKind]] = defaultdict(list)
        for row in conn.execute(select(Delivery.job_public_id, Delivery.kind)):
            rows[row.job_public_id].append(DeliveryKind(row.kind))
    return jobs, rows


def unfinished(engine: Engine) -> int:
    """Jobs not yet at an outcome."""
    jobs, _ = outcomes(engine)
    return sum(1 for status in jobs.values() if status not in TERMINAL)


def assert_exactly_one_visible_outcome(
    engine: Engine, expected_ids: list[str]
) -> dict[str, JobStatus]:
    """Every job ended; each has exactly one row for its user, matching its end."""
    jobs, rows = outcomes(engine)
    assert set(jobs) == set(expected_ids), "jobs appeared or vanished"
    lost = [pid for pid, status in jobs.items() if status not in TERMINAL]
    assert not lost, f"{len(lost)} jobs never ended: {lost[:5]}"
    twice = {pid: kinds for pid, kinds in rows.items() if len(kinds) != 1}
    assert not twice, f"jobs with other than one outcome row: {list(twice.items())[:5]}"
    expected_kind = {
        JobStatus.SUCCEEDED: DeliveryKind.RESULT,
        JobStatus.FAILED: DeliveryKind.FAILURE,
        JobStatus.CANCELLED: DeliveryKind.NOTICE,
    }
    for pid, status in jobs.items():
        assert rows[pid] == [expected_kind[status]], (pid, status, rows[pid])
    return jobs
