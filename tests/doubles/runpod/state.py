"""What the RunPod-compatible endpoint double remembers: jobs, workers, injected fates,
the hosted-API requests it answered and the submitters it killed.

Every job state change goes through `add`, `take`, `finish` or `forget`, which call
`on_change` (the sqlite store, when the double has one) before the caller answers.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
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
    """One request, as RunPod tracks it. `created`/`started`/`finished` are monotonic
    (this process's clock, for durations); the `*_wall` twins are `time.time()`, what the
    state file keeps so a restarted double can carry on."""

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
    created_wall: float = field(default_factory=time.time)
    started_wall: float | None = None  # set iff a worker took it: an execution
    finished_wall: float | None = None
    forgotten: bool = False

    @property
    def public_id(self) -> str:
        """Our job's id, as the master put it in the input."""
        return str(self.input.get("job_id", ""))

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

    def listing(self) -> dict[str, Any]:
        """One row of `GET /_test/jobs`."""
        return {
            "id": self.id,
            "job_id": self.public_id,
            "status": self.status,
            "created_wall": self.created_wall,
            "started_wall": self.started_wall,
            "finished_wall": self.finished_wall,
            "worker": self.worker,
            "forgotten": self.forgotten,
        }


@dataclass
class Worker:
    """A worker process polling the endpoint."""

    id: str
    last_seen: float = field(default_factory=time.monotonic)
    current: set[str] = field(default_factory=set)  # the jobs it holds (its concurrency)
    taken: int = 0
    stop: set[str] = field(default_factory=set)


@dataclass
class HostedRequest:
    """One request to the hosted API: when it arrived (monotonic), which op, which RunPod
    job (the new one for a successful /run), and the status answered (0 until then)."""

    at: float
    op: str
    job_id: str | None
    status: int = 0

    def __iter__(self) -> Iterator[Any]:
        return iter((self.at, self.op, self.job_id, self.status))


def executions(jobs: Iterable[Job]) -> dict[str, int]:
    """Public job id -> how many RunPod jobs a worker took for it."""
    return dict(Counter(j.public_id for j in jobs if j.started_wall is not None))


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
    lost_jobs: dict[str, Job] = field(default_factory=dict)  # forgotten, kept for counting
    submissions: list[tuple[float, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"retried": 0})
    requests: list[HostedRequest] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    kill_armed: bool = False
    on_change: Callable[[Job], None] | None = None
    # The endpoint's settings that RunPod's REST API changes (PATCH /v1/endpoints/{id}).
    settings: dict[str, Any] = field(
        default_factory=lambda: {"workersMin": 0, "workersMax": 3, "idleTimeout": 5}
    )

    def changed(self, job: Job) -> None:
        if self.on_change is not None:
            self.on_change(job)

    def add(self, body: dict[str, Any]) -> Job:
        """A new request from `/run`."""
        fate = self.fates.popleft() if self.fates else Fate.NORMAL
        job = Job(f"rp-{uuid.uuid4()}", body.get("input") or {}, fate, body.get("webhook"))
        self.jobs[job.id] = job
        self.pending.append(job.id)
        self.submissions.append((time.time(), job.public_id))
        self.changed(job)
        return job

    def restore(self, job: Job) -> None:
        """A job read back from the state file, in creation order."""
        if job.forgotten:
            self.lost_jobs[job.id] = job
            self.forgotten.add(job.id)
            return
        self.jobs[job.id] = job
        self.submissions.append((job.created_wall, job.public_id))
        if job.status == "IN_QUEUE":
            self.pending.append(job.id)

    def take_next(self, worker_id: str) -> Job | None:
        """The oldest runnable job, taken by the worker (queue delay honoured)."""
        while self.pending:
            job = self.jobs.get(self.pending[0])
            if job is None or job.status != "IN_QUEUE":
                self.pending.popleft()
                continue
            if time.monotonic() - job.created < self.queue_delay_s:
                return None
            self.pending.popleft()
            self.take(job, worker_id)
            return job
        return None

    def take(self, job: Job, worker_id: str) -> None:
        """A worker started the job."""
        job.status, job.worker = "IN_PROGRESS", worker_id
        job.started, job.started_wall = time.monotonic(), time.time()
        self.changed(job)

    def next_for(self, worker_id: str, holding: bool = False) -> Job | None:
        """The oldest runnable job, assigned to the (real) worker. `holding`: the SDK's
        `job_in_progress=1`; a worker that says it holds nothing while RunPod thinks it
        does was restarted, and the jobs it held fail, as RunPod fails them."""
        worker = self.workers.setdefault(worker_id, Worker(worker_id))
        worker.last_seen = time.monotonic()
        if not holding:
            for orphan_id in sorted(worker.current):
                orphan = self.jobs.get(orphan_id)
                if orphan is not None and orphan.status == "IN_PROGRESS":
                    self.finish(orphan, "FAILED", error="worker restarted while running the job")
            worker.current.clear()
        job = self.take_next(worker_id)
        if job is not None:
            worker.current.add(job.id)
            worker.taken += 1
        return job

    def finish(self, job: Job, status: str, *, output: Any = None, error: Any = None) -> None:
        """Move a job to a final state (once)."""
        if job.status in FINAL:
            return
        job.status, job.finished, job.finished_wall = status, time.monotonic(), time.time()
        job.output, job.error = output, error
        worker = self.workers.get(job.worker or "")
        if worker is not None:
            worker.current.discard(job.id)
        self.changed(job)

    def forget(self, job_id: str) -> None:
        """RunPod loses the job: /status answers 404 from now on."""
        job = self.jobs.pop(job_id, None)
        self.forgotten.add(job_id)
        if job is not None:
            job.forgotten = True
            self.lost_jobs[job_id] = job
            self.changed(job)

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
