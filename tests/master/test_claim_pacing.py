"""How often a master asks the queue for work: at once again after a claim that got all
it asked for (more may be waiting), otherwise not until a hint or its idle interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine

from stillhouse import hints
from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue
from stillhouse.queue.records import JobRecord
from tests.master.cluster import enqueue
from tests.master.scripted import ScriptedBackend, make_dispatcher, scripted_settings


class CountedClaims(GenerationQueue):
    """Records how many jobs each claim returned."""

    def __init__(self, engine: Engine, settings: QueueSettings) -> None:
        super().__init__(engine, settings)
        self.claims: list[int] = []

    def claim(
        self,
        owner: str,
        limit: int = 1,
        partitions: Sequence[int] | None = None,
        *,
        backend_cap: int = 0,
    ) -> list[JobRecord]:
        jobs = super().claim(owner, limit, partitions, backend_cap=backend_cap)
        self.claims.append(len(jobs))
        return jobs


def test_a_master_claims_again_at_once_only_after_a_full_batch(
    tmp_path: Path, mariadb_url: str, mariadb_engine: Engine
) -> None:
    # A long idle interval: a claim that comes early was either at once or woken by a hint.
    settings = scripted_settings(
        tmp_path, mariadb_url, claim_batch=2, claim_interval_s=30, drain_grace_s=0.1
    )
    queue = CountedClaims(mariadb_engine, settings.queue)
    backend = ScriptedBackend()
    backend.held.update(enqueue(queue, 5))  # they keep running: no job ends and wakes it
    dispatcher = make_dispatcher(settings, queue, backend)

    async def holding(count: int) -> None:
        deadline = time.monotonic() + 20
        while len(dispatcher.in_flight) < count:
            assert time.monotonic() < deadline, f"{len(dispatcher.in_flight)} of {count} held"
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        run = asyncio.create_task(dispatcher.run())
        try:
            await holding(5)
            backend.held.update(enqueue(queue, 1))
            dispatcher.hints.bump(hints.JOBS)  # what a front does once it queued a job
            await holding(6)
        finally:
            backend.held.clear()
            dispatcher.stop()
            await asyncio.wait_for(run, 20)

    asyncio.run(scenario())
    # 2 and 2 filled the batch, 1 did not: no empty claim after it; the hint's claim got 1.
    assert queue.claims[:4] == [2, 2, 1, 1]
