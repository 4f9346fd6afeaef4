"""What both queues are built from: an engine, the queue settings, a clock and a die."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from stillhouse.config import QueueSettings
from stillhouse.errors import LeaseLost
from stillhouse.queue.timing import Clock, backoff_delay, utcnow


@dataclass
class _SharedTransaction:
    """The transaction a group of operations shares (see QueueTable.together)."""

    conn: Connection
    after_commit: list[Callable[[], None]] = field(default_factory=list)


class _ThisThread(threading.local):
    # A thread, not a context variable: grouped operations may each run in their
    # caller's context (for its log fields) on the thread that holds the transaction.
    shared: _SharedTransaction | None = None


_THREAD = _ThisThread()


class QueueTable:
    """Shared plumbing of GenerationQueue and SendQueue."""

    def __init__(
        self,
        engine: Engine,
        settings: QueueSettings,
        *,
        clock: Clock = utcnow,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._rand = rand

    def together(self, operations: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run `operations` in one transaction (a group commit: one commit and one
        connection for many jobs' writes) and return each one's result, or the LeaseLost
        it raised: such an operation has written nothing, and the others still commit.
        Any other error rolls the whole group back and is raised to the caller, for whom
        none of the operations happened. Only operations that raise LeaseLost before
        their first write may be grouped (the held-job writes are: each checks its lease
        in its first statement)."""
        if _THREAD.shared is not None:
            raise RuntimeError("together() cannot be nested")
        shared: _SharedTransaction | None = None
        results: list[Any] = []
        with self._engine.begin() as conn:
            shared = _SharedTransaction(conn)
            _THREAD.shared = shared
            try:
                for operation in operations:
                    try:
                        results.append(operation())
                    except LeaseLost as lost:
                        results.append(lost)
            finally:
                _THREAD.shared = None
        for callback in shared.after_commit:
            callback()
        return results

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction of its own, or the group's when called inside `together`."""
        shared = _THREAD.shared
        if shared is not None:
            yield shared.conn
            return
        with self._engine.begin() as conn:
            yield conn

    def _after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once what was just written is committed."""
        shared = _THREAD.shared
        if shared is not None:
            shared.after_commit.append(callback)
        else:
            callback()

    def _backoff(self, attempt: int) -> timedelta:
        settings = self._settings
        return backoff_delay(attempt, settings.backoff_base_s, settings.backoff_max_s, self._rand)

    def _partitions(self, partitions: Sequence[int] | None) -> list[int]:
        """The partitions to claim from, starting at a random one to spread claimers."""
        chosen = (
            list(partitions) if partitions is not None else list(range(self._settings.partitions))
        )
        if len(chosen) <= 1:
            return chosen
        start = int(self._rand() * len(chosen))
        return chosen[start:] + chosen[:start]
