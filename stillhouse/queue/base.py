"""What both queues are built from: an engine, the queue settings, a clock and a die."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy import Engine

from stillhouse.config import QueueSettings
from stillhouse.queue.timing import Clock, backoff_delay, utcnow


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
