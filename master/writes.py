"""Group commit for a master's per-job writes: the jobs this master follows mark their
submits, store backend ids and write outcomes through a few writers, each running
whatever is pending when it is free in one transaction (GenerationQueue.together).

One job alone waits for nothing: a write that finds a writer free starts it at once.
Under load the writes that arrive while groups are committing form the next groups, so a
master pays one commit and one thread hop per group instead of per write (measured with
bench/dispatch_overhead.py: it was 3 of each per job). WRITERS groups commit at once, on
connections of their own: with one, a master waited on the database's round trips one
statement after another (py-spy: the event loop idle, the writer thread reading replies)
and one master ran at 0.71 of the queue-only loop (median of 3 rounds, 2026-11-30); with
two, 0.86 (5 rounds). A group's submit marks (jobs about to go to the backend) go in one
statement, and so do its backend ids (GenerationQueue.begin_submits, .mark_runnings),
rather than one statement each. Each job's own writes stay in order (its task awaits each
before the next); different jobs' rows are disjoint, so the groups do not block each
other. A group that fails as a whole (the database away, or one write's own error) is
tried again one write at a time, so each caller hears only its own write's fate.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from stillhouse.queue import GenerationQueue

T = TypeVar("T")
MAX_GROUP = 64  # writes per transaction: row locks are held until the group commits
WRITERS = 2  # groups committing at once (more only crowds a 2-core machine's database)


@dataclass
class _Write:
    """One caller's write: the call (in the caller's log context) and who hears of it."""

    call: Callable[[], Any]
    done: asyncio.Future[Any]
    # A submit mark or a backend id (the job's own writes): the group's writes of that
    # kind run at once, as one statement, with these arguments.
    kind: str | None = None
    args: tuple[Any, ...] = ()


class GroupCommit:
    """Runs held-job writes of many tasks in shared transactions."""

    def __init__(
        self, queue: GenerationQueue, max_group: int = MAX_GROUP, writers: int = WRITERS
    ) -> None:
        self._queue = queue
        self._max_group = max_group
        self._pending: list[_Write] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._most_writers = writers
        self._at_once: dict[str, Callable[[list[tuple[Any, ...]]], list[Any]]] = {
            "submit": lambda calls: queue.begin_submits([job for (job,) in calls]),
            "running": lambda calls: queue.mark_runnings([(job, bid) for job, bid in calls]),
        }

    async def write(self, operation: Callable[..., T], *args: Any) -> T:
        """`operation(*args)` committed, with its result; raises what it raised (a
        LeaseLost of its own, or the error that rolled its whole group back)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        # Each write keeps its caller's log context (the request's id) on the thread.
        call = functools.partial(contextvars.copy_context().run, operation, *args)
        self._pending.append(_Write(call, done, self._kind(operation, args), args))
        if len(self._writers) < self._most_writers:
            writer = asyncio.create_task(self._drain(), name="group-commit")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        result: T = await done
        return result

    def _kind(self, operation: Callable[..., Any], args: tuple[Any, ...]) -> str | None:
        if operation == self._queue.begin_submit and len(args) == 1:
            return "submit"
        if operation == self._queue.mark_running and len(args) == 2 and args[1] is not None:
            return "running"
        return None

    async def _drain(self) -> None:
        while self._pending:
            group = self._pending[: self._max_group]
            del self._pending[: self._max_group]
            try:
                results = await asyncio.to_thread(self._together, group)
            except BaseException as exc:  # the group rolled back: none of it happened
                if isinstance(exc, Exception) and len(group) > 1:
                    # One write's own failure must not fail the others: each alone.
                    results = [await self._alone(write.call) for write in group]
                else:
                    _settle(group, [exc] * len(group))
                    if not isinstance(exc, Exception):
                        raise  # cancelled: the callers have heard, now stop
                    continue
            _settle(group, results)

    def _together(self, group: list[_Write]) -> list[Any]:
        """The group in one transaction (on a thread), the writes of one kind in one
        statement; each write's result, in the group's order."""
        parts: list[list[_Write]] = []  # each part: one call (a kind's writes at once)
        kinds: dict[str, list[_Write]] = {}
        for write in group:
            if write.kind is None:
                parts.append([write])
            else:
                kinds.setdefault(write.kind, []).append(write)
        calls: list[Callable[[], Any]] = [part[0].call for part in parts]
        for kind, writes in kinds.items():
            parts.append(writes)
            if len(writes) == 1:
                calls.append(writes[0].call)
            else:
                together = self._at_once[kind]
                calls.append(functools.partial(together, [w.args for w in writes]))
        results: dict[int, Any] = {}
        for part, outcome in zip(parts, self._queue.together(calls), strict=True):
            if len(part) == 1:
                results[id(part[0])] = outcome
            else:
                results.update(zip(map(id, part), outcome, strict=True))
        return [results[id(write)] for write in group]

    async def _alone(self, operation: Callable[[], Any]) -> Any:
        """One write in a transaction of its own: its result, or what it raised."""
        try:
            [result] = await asyncio.to_thread(self._queue.together, [operation])
        except Exception as exc:
            return exc
        return result


def _settle(group: list[_Write], results: list[Any]) -> None:
    """Each caller hears its own result, or the exception that ended its write."""
    for write, result in zip(group, results, strict=True):
        if write.done.done():  # its caller was cancelled meanwhile
            continue
        if isinstance(result, BaseException):
            write.done.set_exception(result)
        else:
            write.done.set_result(result)
