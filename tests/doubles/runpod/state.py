"""What the RunPod-compatible endpoint double remembers: jobs, workers, injected fates."""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


class Fate(StrEnum):
    """What the endpoint does to a job, whatever its worker does."""

    NORMAL = "normal"
    FAIL = "fail"  # FAILED when the worker reports back (as a crashed handler would be)
    TIME_OUT = "time_out"  # TIMED_OUT shortly after a worker takes it
    LOSE = "lose"  # accepted, then forgotten: status answers 404


@dataclass
class Job:
    """One request, as RunPod tracks it."""

    id: str
    input: dict[str, Any]
    fate: Fate
    webhook: str | None = None
    status: str = "IN_QUEUE"
    output: Any = None
    error: Any = None
    worker: str | None = None
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None

    def public(self) -> dict[str, Any]:
        """The /status answer."""
        now = time.monotonic()
        started = self.started or now
        answer: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "delayTime": int((started - self.created) * 1000),
        }
        if self.started is not None:
            answer["executionTime"] = int(((self.finished or now) - self.started) * 1000)
        if self.output is not None:
            answer["output"] = self.output
        if self.error is not None:
            answer["error"] = self.error
        return answer


@dataclass
class Worker:
    """A worker process polling the endpoint."""

    id: str
    last_seen: float = field(default_factory=time.monotonic)
    current: str | None = None
    taken: int = 0
    stop: set[str] = field(default_factory=set)


@dataclass
class EndpointState:
    """Everything, with the knobs tests turn."""

    cold_start_s: float = 0.0
    queue_delay_s: float = 0.0
    time_out_after_s: float = 0.3
    lose_after_s: float = 0.2
    worker_lost_after_s: float = 4.0
    jobs: dict[str, Job] = field(default_factory=dict)
    pending: deque[str] = field(default_factory=deque)
    workers: dict[str, Worker] = field(default_factory=dict)
    fates: deque[Fate] = field(default_factory=deque)
    forgotten: set[str] = field(default_factory=set)
    submissions: list[tuple[float, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"retried": 0})

    def add(self, body: dict[str, Any]) -> Job:
        """A new request from `/run`."""
        fate = self.fates.popleft() if self.fates else Fate.NORMAL
        job = Job(f"rp-{uuid.uuid4()}", body.get("input") or {}, fate, body.get("webhook"))
        self.jobs[job.id] = job
        self.pending.append(job.id)
        self.submissions.append((time.time(), str(job.input.get("job_id", ""))))
        return job

    def next_for(self, worker_id: str) -> Job | None:
        """The oldest runnable job, assigned to the worker."""
        worker = self.workers.setdefault(worker_id, Worker(worker_id))
        worker.last_seen = time.monotonic()
        if worker.current is not None and worker.current in self.jobs:
            orphan = self.jobs[worker.current]
            if orphan.status == "IN_PROGRESS":  # the worker restarted mid-job
                self.finish(orphan, "FAILED", error="worker restarted while running the job")
        while self.pending:
            job = self.jobs.get(self.pending[0])
            if job is None or job.status != "IN_QUEUE":
                self.pending.popleft()
                continue
            if time.monotonic() - job.created < self.queue_delay_s:
                return None
            self.pending.popleft()
            job.status, job.worker, job.started = "IN_PROGRESS", worker_id, time.monotonic()
            worker.current = job.id
            worker.taken += 1
            return job
        return None

    def finish(self, job: Job, status: str, *, output: Any = None, error: Any = None) -> None:
        """Move a job to a final state (once)."""
        if job.status in FINAL:
            return
        job.status, job.finished = status, time.monotonic()
        job.output, job.error = output, error
        worker = self.workers.get(job.worker or "")
        if worker is not None and worker.current == job.id:
            worker.current = None

    def health(self) -> dict[str, Any]:
        """The /health answer."""
        by_status: dict[str, int] = {}
        for job in self.jobs.values():
            by_status[job.status] = by_status.get(job.status, 0) + 1
        busy = sum(1 for w in self.workers.values() if w.current)
        return {
            "jobs": {
                "completed": by_status.get("COMPLETED", 0),
                "failed": by_status.get("FAILED", 0) + by_status.get("TIMED_OUT", 0),
                "inProgress": by_status.get("IN_PROGRESS", 0),
                "inQueue": by_status.get("IN_QUEUE", 0),
                "retried": self.counts["retried"],
            },
            "workers": {"idle": len(self.workers) - busy, "running": busy},
        }
