"""The double's state file: every job state change written before its HTTP answer, so a
double killed with SIGKILL and started again on the same file carries on like RunPod's
control plane (jobs accepted are never lost, jobs taken are never taken again).

Schema (stdlib sqlite3, WAL; readable by a test in another process):

    jobs(seq INTEGER PRIMARY KEY AUTOINCREMENT  -- creation order
         id TEXT UNIQUE        -- RunPod's job id ("rp-…")
         job_id TEXT           -- our public id (the input's "job_id")
         input TEXT            -- JSON
         fate TEXT             -- Fate value ("normal", "fail", "time_out", "lose")
         webhook TEXT
         status TEXT           -- IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT
         output TEXT, error TEXT  -- JSON, NULL when none
         worker TEXT           -- who took it ("simulated" for the pool), NULL if never taken
         created_wall REAL, started_wall REAL, finished_wall REAL  -- time.time(); NULL if not yet
         forgotten INTEGER)    -- 1: lost by a Fate.LOSE (/status answers 404)
    kills(job_id TEXT, runpod_id TEXT, pid INTEGER, at REAL)  -- kill-next-submitter hook

A job was executed iff started_wall IS NOT NULL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.doubles.runpod.state import Fate, Job

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    job_id TEXT NOT NULL,
    input TEXT NOT NULL,
    fate TEXT NOT NULL,
    webhook TEXT,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    worker TEXT,
    created_wall REAL NOT NULL,
    started_wall REAL,
    finished_wall REAL,
    forgotten INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS kills (job_id TEXT, runpod_id TEXT, pid INTEGER, at REAL);
"""

COLUMNS = (
    "id, job_id, input, fate, webhook, status, output, error, worker, "
    "created_wall, started_wall, finished_wall, forgotten"
)
NAMES = COLUMNS.split(", ")

UPSERT = (
    "INSERT INTO jobs (id, job_id, input, fate, webhook, status, output, error, worker, "
    "created_wall, started_wall, finished_wall, forgotten) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET status = excluded.status, output = excluded.output, "
    "error = excluded.error, worker = excluded.worker, started_wall = excluded.started_wall, "
    "finished_wall = excluded.finished_wall, forgotten = excluded.forgotten"
)

SELECT = (
    "SELECT id, job_id, input, fate, webhook, status, output, error, worker, "
    "created_wall, started_wall, finished_wall, forgotten FROM jobs ORDER BY seq"
)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _unjson(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _monotonic(wall: float | None) -> float | None:
    """A wall-clock time on this process's monotonic clock (for delayTime and the like)."""
    return None if wall is None else time.monotonic() - (time.time() - wall)


class JobStore:
    """One connection, used from the double's event loop thread only."""

    def __init__(self, path: Path | str) -> None:
        # autocommit: each statement is durable on its own (WAL survives a process kill;
        # synchronous=OFF gives up only on power loss, which tests never see)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(SCHEMA)

    def save(self, job: Job) -> None:
        self._db.execute(
            UPSERT,
            (
                job.id,
                job.public_id,
                json.dumps(job.input),
                job.fate.value,
                job.webhook,
                job.status,
                _json(job.output),
                _json(job.error),
                job.worker,
                job.created_wall,
                job.started_wall,
                job.finished_wall,
                int(job.forgotten),
            ),
        )

    def save_kill(self, kill: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO kills (job_id, runpod_id, pid, at) VALUES (?, ?, ?, ?)",
            (kill["job_id"], kill["runpod_id"], kill["pid"], kill["at"]),
        )

    def load(self) -> list[Job]:
        """Every job, oldest first."""
        rows = self._db.execute(SELECT)
        return [self._job(dict(zip(NAMES, row, strict=True))) for row in rows]

    def load_kills(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT job_id, runpod_id, pid, at FROM kills ORDER BY rowid")
        return [dict(zip(("job_id", "runpod_id", "pid", "at"), row, strict=True)) for row in rows]

    @staticmethod
    def _job(row: dict[str, Any]) -> Job:
        created = _monotonic(row["created_wall"])
        assert created is not None
        return Job(
            id=row["id"],
            input=json.loads(row["input"]),
            fate=Fate(row["fate"]),
            webhook=row["webhook"],
            status=row["status"],
            output=_unjson(row["output"]),
            error=_unjson(row["error"]),
            worker=row["worker"],
            created=created,
            started=_monotonic(row["started_wall"]),
            finished=_monotonic(row["finished_wall"]),
            created_wall=row["created_wall"],
            started_wall=row["started_wall"],
            finished_wall=row["finished_wall"],
            forgotten=bool(row["forgotten"]),
        )

    def close(self) -> None:
        self._db.close()
