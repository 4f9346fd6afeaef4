"""generation_queue: enqueue, claim, lease, progress, complete, fail, cancel, reap."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from stillhouse.config import QueueSettings
from stillhouse.errors import JobNotFound, LeaseLost
from stillhouse.ids import new_public_id, partition_of
from stillhouse.queue import outcomes, reuse
from stillhouse.queue.admission import (
    Limits,
    add_requester,
    check_limits,
    lock_requester,
    look,
    same_request,
)
from stillhouse.queue.base import QueueTable
from stillhouse.queue.estimates import PaceCache
from stillhouse.queue.prepared import Prepared
from stillhouse.queue.records import (
    CancelOutcome,
    Enqueued,
    FailOutcome,
    JobRecord,
    LeaseStatus,
    QueuePosition,
    ReapReport,
)
from stillhouse.queue.statements import (
    BEGIN_SUBMIT_HELD,
    HELD,
    INSERT_JOB,
    JOBS,
    RUNNING_HELD,
    SUCCEED_HELD,
    SUCCEED_HELD_UNCANCELLED,
    ahead_of,
    begin_submits_held,
    held_among,
    held_params,
    held_params_by_position,
    lease_jobs,
    runnable_jobs,
    running_held,
)
from stillhouse.queue.timing import Clock, utcnow
from stillhouse.schemas.jobs import JobResult, NewJob
from stillhouse.schemas.states import ACTIVE_JOB_STATES, TERMINAL_JOB_STATES, JobStatus
from stillhouse.schemas.worker_io import ErrorInfo

_C = JOBS.c


class GenerationQueue(QueueTable):
    """Named operations on generation_queue; each is one transaction."""

    def __init__(
        self,
        engine: Engine,
        settings: QueueSettings,
        *,
        clock: Clock = utcnow,
        rand: Callable[[], float] = random.random,
        told: Callable[[], None] | None = None,
    ) -> None:
        """`told` runs after every committed transaction that wrote a job's outcome row
        (a wake-up hint for the processes that deliver them)."""
        super().__init__(engine, settings, clock=clock, rand=rand)
        self._pace = PaceCache()
        self._told = told or _nobody

    # -- fronts ---------------------------------------------------------------------------

    def enqueue(
        self,
        job: NewJob,
        *,
        limits: Limits | None = None,
        digest: str | None = None,
        reuse_within_s: int = 0,
        queued: Callable[[], None] = lambda: None,
    ) -> Enqueued:
        """Queue a request; the same interaction id twice yields the first job (or
        IdempotencyConflict when `digest`, what the request was, differs). With `limits`,
        the user's limits are checked and the job inserted in one transaction, with the
        user's row locked: LimitReached if one more would go past a limit. With
        `reuse_within_s`, a job whose `reuse_key` matches a success that finished that
        recently is inserted already succeeded, with those images (stillhouse.queue.reuse).
        `queued` runs right after the commit that queued a new job, before its record is
        built (a wake-up hint: the masters claim it meanwhile)."""
        now = self._clock()
        values = self._new_row(job, now) | {"request_digest": digest}
        try:
            if limits is None:
                with self._engine.begin() as conn:
                    values = self._insert(conn, values, reuse_within_s)
            else:
                admitted = self._admit(job, values, limits, digest, reuse_within_s, now)
                if isinstance(admitted, Enqueued):
                    return admitted
                values = admitted
        except IntegrityError as exc:
            if job.interaction_id is None or "interaction_id" not in str(exc.orig):
                raise
            existing = self._one(_C.interaction_id == job.interaction_id)
            if existing is None:  # pragma: no cover - the winner's row cannot vanish
                raise
            return same_request(existing, digest)
        if values["reused_from"] is not None:
            self._told()  # its outcome row is written: the bots deliver it now
        elif values["status"] == JobStatus.QUEUED:
            queued()
        return Enqueued(job=JobRecord.from_row(values), created=True)

    def _admit(
        self,
        job: NewJob,
        values: dict[str, Any],
        limits: Limits,
        digest: str | None,
        reuse_within_s: int,
        now: datetime,
    ) -> dict[str, Any] | Enqueued:
        """Insert within the user's limits, their row locked; the new row's values, or the
        job this request id already made."""
        user_id = job.routing.user_id or 0
        for _ in range(2):
            with self._engine.begin() as conn:
                if lock_requester(conn, user_id, now):
                    looked = look(conn, user_id, job.interaction_id, now)
                    # Under the lock: a retry of an admitted request must not count itself.
                    if looked["earlier_id"] is not None:
                        return same_request(self._by_id(conn, looked["earlier_id"]), digest)
                    check_limits(looked, limits, now)
                    return self._insert(conn, values, reuse_within_s)
            add_requester(self._engine, user_id, now)  # a first request: then lock it
        raise LeaseLost(f"no requester row for user {user_id}")  # pragma: no cover

    def _insert(
        self, conn: Connection, values: dict[str, Any], reuse_within_s: int
    ) -> dict[str, Any]:
        """Insert the job queued; or, when an identical request succeeded recently enough,
        succeeded with its images, and its outcome row with it. The values written."""
        key, now = values["reuse_key"], values["created_at"]
        earlier = None
        if key is not None and reuse_within_s > 0:
            earlier = reuse.earlier_result(conn, key, reuse.window_start(now, reuse_within_s))
        if earlier is None:
            inserted = INSERT_JOB.execute(conn, values).lastrowid
            assert inserted is not None, "an autoincrement insert has an id"
            return values | {"id": inserted}
        original, result = earlier
        values = values | reuse.reused_values(original, result, now)
        (new_id,) = conn.execute(insert(JOBS).values(values)).inserted_primary_key or (None,)
        assert new_id is not None, "an autoincrement insert has an id"
        values["id"] = new_id
        job = JobRecord.from_row(values)
        outcomes.result(conn, job, result, now, self._settings, reused_from=original)
        return values

    def _new_row(self, job: NewJob, now: datetime) -> dict[str, Any]:
        public_id = new_public_id()
        routing = job.routing
        token = routing.interaction_token
        return _blank_row() | {
            "public_id": public_id,
            "partition_id": partition_of(public_id, self._settings.partitions),
            "status": JobStatus.QUEUED,
            "priority": job.priority,
            **routing.model_dump(exclude={"interaction_token"}),
            "interaction_token": token.get_secret_value() if token else None,
            "interaction_id": job.interaction_id,
            "workflow_name": job.workflow_name,
            "workflow_version": job.workflow_version,
            "params": job.params,
            "graph": job.graph,
            "inputs": job.inputs,
            "reuse_key": job.reuse_key,
            "reused_from": None,
            "attempts": 0,
            "claims": 0,
            "lost_submits": 0,
            "max_attempts": job.max_attempts or self._settings.max_attempts,
            # A tier's lane: queued as if it came earlier (stillhouse.tiers).
            "run_after": now - timedelta(seconds=job.head_start_s),
            "cancel_requested": False,
            "created_at": now,
            "updated_at": now,
        }

    @staticmethod
    def _by_id(conn: Connection, job_id: int) -> JobRecord:
        row = conn.execute(select(JOBS).where(_C.id == job_id)).mappings().one()
        return JobRecord.from_row(row)

    def get(self, public_id: str) -> JobRecord | None:
        """The job with this public id, or None."""
        return self._one(_C.public_id == public_id)

    def reused_by(self, source: str, user_id: int, original: str) -> bool:
        """Whether this user was answered with the images of job `original`."""
        with self._engine.connect() as conn:
            return reuse.reused_by(conn, source, user_id, original)

    def release_images(self, job: JobRecord) -> bool:
        """The user deleted this job's images: they are never reused from it again. True
        when no other job shares them, so their files may be deleted."""
        with self._engine.begin() as conn:
            return reuse.release(conn, job.public_id, job.reused_from or job.public_id)

    def get_by_interaction(self, interaction_id: int) -> JobRecord | None:
        """The job a Discord interaction created, or None."""
        return self._one(_C.interaction_id == interaction_id)

    def of_user(
        self, source: str, user_id: int, limit: int, before: JobRecord | None = None
    ) -> list[JobRecord]:
        """A user's jobs, newest first, `limit` of them from just after `before` (a page
        cursor); walks ix_generation_queue_user_created."""
        where = [_C.user_id == user_id, _C.source == source]
        if before is not None:
            where.append(
                or_(
                    _C.created_at < before.created_at,
                    and_(_C.created_at == before.created_at, _C.id < before.id),
                )
            )
        query = select(JOBS).where(*where).order_by(_C.created_at.desc(), _C.id.desc())
        with self._engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [JobRecord.from_row(row) for row in rows]

    def counts(self) -> dict[JobStatus, int]:
        """Jobs per status, finished ones included: reads the whole table (tests, tools)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(_C.status, func.count()).group_by(_C.status)).all()
        return {JobStatus(status): n for status, n in rows}

    def depth(self) -> dict[JobStatus, int]:
        """Queued and in-flight jobs per status: walks only the unfinished front of the
        status index, however many finished jobs the table keeps (metrics, health)."""
        unfinished = (JobStatus.QUEUED, *ACTIVE_JOB_STATES)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_C.status, func.count())
                .where(or_(*(_C.status == s for s in unfinished)))
                .group_by(_C.status)
            ).all()
        found = {JobStatus(status): n for status, n in rows}
        return {status: found.get(status, 0) for status in unfinished}

    def position(self, public_id: str) -> QueuePosition:
        """How many jobs are ahead of this one and a wait estimate from recent jobs."""
        job = self.get(public_id)
        if job is None:
            raise JobNotFound(public_id)
        return self.position_of(job)

    def position_of(self, job: JobRecord) -> QueuePosition:
        """Where a job just read or just queued stands (no second read of its row)."""
        if job.status is not JobStatus.QUEUED:
            return QueuePosition(status=job.status, ahead=None, estimated_wait_s=None)
        with self._engine.connect() as conn:
            ahead = conn.execute(
                select(func.count())
                .select_from(JOBS)
                .where(_C.status == JobStatus.QUEUED, ahead_of(job))
            ).scalar_one()
            pace = self._pace.pace(
                conn, now=self._clock(), window_s=self._settings.estimate_window_s
            )
        wait = None if pace is None else pace.wait_s(ahead)
        return QueuePosition(status=job.status, ahead=ahead, estimated_wait_s=wait)

    def cancel(self, public_id: str) -> CancelOutcome:
        """Cancel a queued job now; ask the holder of a running one to cancel it."""
        outcome = self._cancel(public_id)
        if outcome is CancelOutcome.CANCELLED:
            self._told()
        return outcome

    def _cancel(self, public_id: str) -> CancelOutcome:
        now = self._clock()
        with self._engine.begin() as conn:
            row = (
                conn.execute(select(JOBS).where(_C.public_id == public_id).with_for_update())
                .mappings()
                .first()
            )
            if row is None:
                return CancelOutcome.NOT_FOUND
            job = JobRecord.from_row(row)
            if job.status in TERMINAL_JOB_STATES:
                return CancelOutcome.ALREADY_FINISHED
            if job.status in ACTIVE_JOB_STATES:
                conn.execute(
                    update(JOBS)
                    .where(_C.id == job.id)
                    .values(cancel_requested=True, updated_at=now)
                )
                return CancelOutcome.REQUESTED
            self._finish(conn, job, JobStatus.CANCELLED, now)
            outcomes.cancelled(conn, job, now, self._settings)
            return CancelOutcome.CANCELLED

    # -- masters --------------------------------------------------------------------------

    def claim(
        self,
        owner: str,
        limit: int = 1,
        partitions: Sequence[int] | None = None,
        *,
        backend_cap: int = 0,
    ) -> list[JobRecord]:
        """Lease up to `limit` runnable jobs to `owner` (FOR UPDATE SKIP LOCKED). With
        `backend_cap`, fewer: as many as keep the jobs dispatched or running, across every
        master, at most that many (counted in the claim's own transaction)."""
        if limit < 1:
            raise ValueError(f"claim limit must be at least 1, got {limit}")
        now = self._clock()
        rows: list[dict[str, Any]] = []
        with self._engine.begin() as conn:
            if backend_cap:
                limit = min(limit, backend_cap - _active(conn))
                if limit <= 0:
                    return []
            for partition in self._partitions(partitions):
                wanted = {"partition": partition, "now": now}
                rows.extend(runnable_jobs(limit - len(rows)).mappings(conn, wanted))
                if len(rows) >= limit:
                    break
            if not rows:
                return []
            expires = now + self._lease()
            lease = {"owner": owner, "expires": expires, "now": now}
            lease.update({f"id_{n}": row["id"] for n, row in enumerate(rows)})
            lease_jobs(len(rows)).execute(conn, lease)
        leased = {
            "status": JobStatus.DISPATCHED,
            "lease_owner": owner,
            "lease_expires_at": expires,
            "dispatched_at": now,
            "updated_at": now,
        }
        return [JobRecord.from_row(r | leased | {"claims": r["claims"] + 1}) for r in rows]

    def renew(self, owner: str, job_ids: Iterable[int]) -> LeaseStatus:
        """Extend the leases `owner` still holds; report which it lost or must cancel."""
        ids = list(job_ids)
        if not ids:
            return LeaseStatus(held=frozenset(), cancel_requested=frozenset())
        now = self._clock()
        mine = and_(_C.id.in_(ids), _C.lease_owner == owner, _C.status.in_(ACTIVE_JOB_STATES))
        with self._engine.begin() as conn:
            conn.execute(
                update(JOBS)
                .where(mine)
                .values(lease_expires_at=now + self._lease(), updated_at=now)
            )
            held = conn.execute(select(_C.id, _C.cancel_requested).where(mine)).all()
        return LeaseStatus(
            held=frozenset(r.id for r in held),
            cancel_requested=frozenset(r.id for r in held if r.cancel_requested),
        )

    def cancels_for(self, owner: str) -> frozenset[int]:
        """Jobs `owner` holds whose user asked to cancel them (a cheap, frequent look)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_C.id).where(
                    or_(*(_C.status == s for s in ACTIVE_JOB_STATES)),
                    _C.lease_owner == owner,
                    _C.cancel_requested.is_(True),
                )
            )
            return frozenset(rows.scalars())

    def begin_submit(self, job: JobRecord) -> None:
        """About to hand the job to the backend. Until its id is stored, nobody else can
        know whether the backend took it: a holder that finds this mark left over by an
        earlier submit counts that submit as lost (it may have run on a GPU too)."""
        params = {**held_params(job), "now": self._clock()}
        with self._begin() as conn:
            if BEGIN_SUBMIT_HELD.execute(conn, params).rowcount != 1:
                raise LeaseLost(f"job {job.public_id} is no longer held by {job.lease_owner}")

    def begin_submits(self, jobs: Sequence[JobRecord]) -> list[LeaseLost | None]:
        """begin_submit for many jobs in one statement (a master's group of writes); for
        each job None, or the LeaseLost it would have raised (such a job is untouched)."""
        held = list(jobs)
        params = {**held_params_by_position(held), "now": self._clock()}
        return self._held_at_once(begin_submits_held(len(held)), held, params)

    def mark_runnings(self, accepted: Sequence[tuple[JobRecord, str]]) -> list[LeaseLost | None]:
        """mark_running for many jobs the backend accepted (job, its backend id), in one
        statement; for each None, or the LeaseLost it would have raised."""
        held = [job for job, _ in accepted]
        params = {**held_params_by_position(held), "now": self._clock()}
        params.update({f"backend_job_id_{n}": backend for n, (_, backend) in enumerate(accepted)})
        return self._held_at_once(running_held(len(held)), held, params)

    def _held_at_once(
        self, statement: Prepared, held: list[JobRecord], params: dict[str, Any]
    ) -> list[LeaseLost | None]:
        """Run a write over several held jobs; who among them was no longer held."""
        with self._begin() as conn:
            if statement.execute(conn, params).rowcount == len(held):
                return [None] * len(held)
            # Some lease was lost: the statement changed only the rows still held (and
            # none of the columns that say so), so they are the ones that still match.
            still = {row["id"] for row in held_among(len(held)).mappings(conn, params)}
        return [
            None
            if job.id in still
            else LeaseLost(f"job {job.public_id} is no longer held by {job.lease_owner}")
            for job in held
        ]

    def abort_submit(self, job: JobRecord) -> None:
        """The submit never reached the backend (refused connection, a 4xx): no job there."""
        self._update_held(job, submitting_since=None, updated_at=self._clock())

    def mark_running(
        self, job: JobRecord, backend_job_id: str | None = None, *, adopted: bool = False
    ) -> None:
        """The backend accepted the job (a new GPU try), or this holder adopted the
        backend job an earlier holder left (no new try)."""
        now = self._clock()
        if not adopted:
            params = {**held_params(job), "now": now, "backend_job_id": backend_job_id}
            with self._begin() as conn:
                if RUNNING_HELD.execute(conn, params).rowcount != 1:
                    raise LeaseLost(f"job {job.public_id} is no longer held by {job.lease_owner}")
            return
        self._update_held(
            job,
            status=JobStatus.RUNNING,
            started_at=func.coalesce(_C.started_at, now),
            updated_at=now,
        )

    def set_progress(self, job: JobRecord, value: float, note: str | None = None) -> None:
        """Record how far the job is (0..1); callers throttle."""
        self._update_held(
            job, progress=min(1.0, max(0.0, value)), progress_note=note, updated_at=self._clock()
        )

    def complete(self, job: JobRecord, result: JobResult) -> None:
        """Succeed the job and queue its result row, in one transaction. A cancel asked
        for meanwhile lost the race: the user is told the images came first."""
        now = self._clock()
        timings = result.timings
        gpu_ms = None if timings is None else round(timings.execute_ms)
        params = {**held_params(job), "done": result, "gpu_ms": gpu_ms, "now": now}
        with self._begin() as conn:
            too_late = SUCCEED_HELD_UNCANCELLED.execute(conn, params).rowcount != 1
            if too_late and SUCCEED_HELD.execute(conn, params).rowcount != 1:
                raise LeaseLost(f"job {job.public_id} is no longer held by {job.lease_owner}")
            outcomes.result(conn, job, result, now, self._settings, cancel_too_late=too_late)
        self._after_commit(self._told)

    def fail(self, job: JobRecord, error: ErrorInfo) -> FailOutcome:
        """Retry with backoff if the error allows and attempts remain; else fail for good."""
        now = self._clock()
        with self._begin() as conn:
            current = self._lock_held(conn, job)
            settled = self._settle(conn, current, error, now)
        if settled is not FailOutcome.RETRYING:
            self._after_commit(self._told)
        return settled

    def hand_back(self, job: JobRecord) -> None:
        """Return a held job to the queue now (a draining master, a paused backend); its
        backend job id stays so the next holder can adopt the running job."""
        now = self._clock()
        self._update_held(
            job,
            status=JobStatus.QUEUED,  # its run_after has passed: it keeps its place in line
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    def active_count(self) -> int:
        """Jobs dispatched or running, across every master (for backend limits)."""
        with self._engine.connect() as conn:
            return _active(conn)

    def finish_cancelled(self, job: JobRecord) -> None:
        """The holder stopped a job the user cancelled."""
        now = self._clock()
        with self._begin() as conn:
            self._finish(conn, job, JobStatus.CANCELLED, now, held=True)
            outcomes.cancelled(conn, job, now, self._settings)
        self._after_commit(self._told)

    def reap_expired(self, limit: int = 500) -> ReapReport:
        """Return jobs whose holder vanished to the queue, keeping their place in line.

        A holder's death is not a GPU try: nothing is failed here while the backend may
        hold the job (a stored backend id, or a submit whose fate is unknown) — the next
        holder asks the backend. Only a job that was never submitted and has been claimed
        `max_claims` times (a job that stops every master that takes it) fails here.
        """
        now = self._clock()
        with self._engine.begin() as conn:
            rows = (
                conn.execute(
                    select(JOBS)
                    .where(_C.status.in_(ACTIVE_JOB_STATES), _C.lease_expires_at < now)
                    .order_by(_C.lease_expires_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            settled = Counter(self._return(conn, JobRecord.from_row(r), now) for r in rows)
        if settled[FailOutcome.FAILED] or settled[FailOutcome.CANCELLED]:
            self._told()
        return ReapReport(
            requeued=settled[FailOutcome.RETRYING],
            failed=settled[FailOutcome.FAILED],
            cancelled=settled[FailOutcome.CANCELLED],
        )

    # -- helpers --------------------------------------------------------------------------

    def _settle(
        self, conn: Connection, job: JobRecord, error: ErrorInfo, now: datetime
    ) -> FailOutcome:
        """The try ended without images: retry, or fail for good. A try that never got
        a backend job (a submit that never answered by the deadline) counts here; one
        that did was counted when it started."""
        if job.cancel_requested:
            self._finish(conn, job, JobStatus.CANCELLED, now, error=error)
            outcomes.cancelled(conn, job, now, self._settings)
            return FailOutcome.CANCELLED
        if job.backend_job_id is None:
            job = job.model_copy(update={"attempts": job.attempts + 1})
        again = job.attempts < job.max_attempts and job.claims < self._settings.max_claims
        if error.retryable and again:
            delay = self._backoff(max(1, job.claims))  # the n-th retry waits ~base * 2^(n-1)
            conn.execute(
                update(JOBS)
                .where(_C.id == job.id)
                .values(
                    status=JobStatus.QUEUED,
                    attempts=job.attempts,
                    run_after=now + delay,
                    lease_owner=None,
                    lease_expires_at=None,
                    backend_job_id=None,  # that backend job is over
                    progress=None,
                    progress_note=None,
                    error=error,
                    updated_at=now,
                )
            )
            return FailOutcome.RETRYING
        self._finish(conn, job, JobStatus.FAILED, now, error=error, attempts=job.attempts)
        outcomes.failure(conn, job, error, now, self._settings)
        return FailOutcome.FAILED

    def _return(self, conn: Connection, job: JobRecord, now: datetime) -> FailOutcome:
        """A job whose holder vanished: back in line, or (see reap_expired) ended."""
        at_backend = job.backend_job_id is not None or job.submitting_since is not None
        if job.cancel_requested and not at_backend:
            self._finish(conn, job, JobStatus.CANCELLED, now)
            outcomes.cancelled(conn, job, now, self._settings)
            return FailOutcome.CANCELLED
        if not at_backend and job.claims >= self._settings.max_claims:
            error = ErrorInfo(
                type="lease_expired",
                message="every dispatcher that took this request stopped responding",
                retryable=True,
            )
            self._finish(conn, job, JobStatus.FAILED, now, error=error)
            outcomes.failure(conn, job, error, now, self._settings)
            return FailOutcome.FAILED
        conn.execute(
            update(JOBS)
            .where(_C.id == job.id)
            .values(
                status=JobStatus.QUEUED, lease_owner=None, lease_expires_at=None, updated_at=now
            )
        )
        return FailOutcome.RETRYING

    def _finish(
        self,
        conn: Connection,
        job: JobRecord,
        status: JobStatus,
        now: datetime,
        *,
        held: bool = False,
        **values: Any,
    ) -> None:
        where = HELD if held else _C.id == job.id
        changed = conn.execute(
            update(JOBS)
            .where(where)
            .values(
                status=status,
                lease_owner=None,
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
                **values,
            ),
            held_params(job) if held else {},
        ).rowcount
        if changed != 1:
            raise LeaseLost(f"job {job.public_id} is no longer held by {job.lease_owner}")

    def _update_held(self, job: JobRecord, **values: Any) -> None:
        with self._begin() as conn:
            changed = conn.execute(update(JOBS).where(HELD).values(**values), held_params(job))
            if changed.rowcount != 1:
                raise LeaseLost(f"job {job.public_id} is no longer held by {job.lease_owner}")

    def _lock_held(self, conn: Connection, job: JobRecord) -> JobRecord:
        row = (
            conn.execute(select(JOBS).where(HELD).with_for_update(), held_params(job))
            .mappings()
            .first()
        )
        if row is None:
            raise LeaseLost(f"job {job.public_id} is no longer held by {job.lease_owner}")
        return JobRecord.from_row(row)

    def _one(self, where: ColumnElement[bool]) -> JobRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(JOBS).where(where)).mappings().first()
        return None if row is None else JobRecord.from_row(row)

    def _lease(self) -> timedelta:
        return timedelta(seconds=self._settings.lease_s)


def _nobody() -> None:
    return None


def _blank_row() -> dict[str, Any]:
    return {
        "lease_owner": None,
        "lease_expires_at": None,
        "backend_job_id": None,
        "submitting_since": None,
        "message_edit_until": None,
        "progress": None,
        "progress_note": None,
        "result": None,
        "gpu_ms": None,
        "error": None,
        "dispatched_at": None,
        "started_at": None,
        "finished_at": None,
    }


def _active(conn: Connection) -> int:
    """Jobs dispatched or running, across every master."""
    count = select(func.count()).select_from(JOBS).where(_C.status.in_(ACTIVE_JOB_STATES))
    return int(conn.execute(count).scalar_one())
