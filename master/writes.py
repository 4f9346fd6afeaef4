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
two, 0.86 (5 rounds). Each job's own writes stay in order (its task awaits each before
the next); different jobs' rows are disjoint, so the groups do not block each other. A
group that fails as a whole (the database away, or one write's own error) is tried again
one write at a time, so each caller hears only its own write's fate.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from stillhouse.queue import GenerationQueue

T = TypeVar("T")
MAX_GROUP = 64  # writes per transaction: row locks are held until the group commits
WRITERS = 2  # groups committing at once (more only crowds a 2-core machine's database)


class GroupCommit:
    """Runs held-job writes of many tasks in shared transactions."""

    def __init__(
        self, queue: GenerationQueue, max_group: int = MAX_GROUP, writers: int = WRITERS
    ) -> None:
        self._queue = queue
        self._max_group = max_group
        self._pending: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._most_writers = writers

    async def write(self, operation: Callable[..., T], *args: Any) -> T:
        """`operation(*args)` committed, with its result; raises what it raised (a
        LeaseLost of its own, or the error that rolled its whole group back)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        # Each write keeps its caller's log context (the request's id) on the thread.
        call = functools.partial(contextvars.copy_context().run, operation, *args)
        self._pending.append((call, done))
        if len(self._writers) < self._most_writers:
            writer = asyncio.create_task(self._drain(), name="group-commit")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        result: T = await done
        return result

    async def _drain(self) -> None:
        while self._pending:
            group = self._pending[: self._max_group]
            del self._pending[: self._max_group]
            try:
                results = await asyncio.to_thread(self._queue.together, [op for op, _ in group])
            except BaseException as exc:  # the group rolled back: none of it happened
                if isinstance(exc, Exception) and len(group) > 1:
                    # One write's own failure must not fail the others: each alone.
                    results = [await self._alone(op) for op, _ in group]
                else:
                    _settle(group, [exc] * len(group))
                    if not isinstance(exc, Exception):
                        raise  # cancelled: the callers have heard, now stop
                    continue
            _settle(group, results)

    async def _alone(self, operation: Callable[[], Any]) -> Any:
        """One write in a transaction of its own: its result, or what it raised."""
        try:
            [result] = await asyncio.to_thread(self._queue.together, [operation])
        except Exception as exc:
            return exc
        return result


def _settle(group: list[tuple[Callable[[], Any], asyncio.Future[Any]]], results: list[Any]) -> None:
    """Each caller hears its own result, or the exception that ended its write."""
    for (_, done), result in zip(group, results, strict=True):
        if done.done():  # its caller was cancelled meanwhile
            continue
        if isinstance(result, BaseException):
            done.set_exception(result)
        else:
            done.set_result(result)
