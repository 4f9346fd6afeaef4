"""A master's loops survive what nobody planned for: an unexpected error while claiming,
renewing leases or looking for cancels is logged and counted, and every job still ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine

from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue
from stillhouse.queue.records import JobRecord, LeaseStatus
from stillhouse.schemas.states import JobStatus
from tests.master.cluster import enqueue
from tests.master.scripted import (
    ScriptedBackend,
    make_dispatcher,
    run_until_idle,
    scripted_settings,
)


class Buggy(GenerationQueue):
    """Each of claim, renew and cancels_for hits a bug once."""

    def __init__(self, engine: Engine, settings: QueueSettings) -> None:
        super().__init__(engine, settings)
        self.bugs = {"claim", "renew", "cancels_for"}

    def _bug(self, name: str) -> None:
        if name in self.bugs:
            self.bugs.discard(name)
            raise RuntimeError(f"a bug in {name}")

    def claim(
        self,
        owner: str,
        limit: int = 1,
        partitions: Sequence[int] | None = None,
        *,
        backend_cap: int = 0,
    ) -> list[JobRecord]:
        self._bug("claim")
        return super().claim(owner, limit, partitions, backend_cap=backend_cap)

    def renew(self, owner: str, job_ids: Iterable[int]) -> LeaseStatus:
        self._bug("renew")
        return super().renew(owner, job_ids)

    def cancels_for(self, owner: str) -> frozenset[int]:
        self._bug("cancels_for")
        return super().cancels_for(owner)


def test_unexpected_errors_in_every_loop_are_counted_and_survived(
    tmp_path: Path, mariadb_url: str, mariadb_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    settings = scripted_settings(tmp_path, mariadb_url, cancel_check_interval_s=0.05)
    queue = Buggy(mariadb_engine, settings.queue)
    backend = ScriptedBackend()
    ids = enqueue(queue, 4)
    backend.held.update(ids)  # running until released: the side loops get their turns
    dispatcher = make_dispatcher(settings, queue, backend)

    async def release_once_every_loop_hit() -> None:
        while queue.bugs:
            await asyncio.sleep(0.05)
        backend.held.clear()

    asyncio.run(run_until_idle(dispatcher, 30, release_once_every_loop_hit))
    assert all((job := queue.get(i)) and job.status is JobStatus.SUCCEEDED for i in ids)
    registry = dispatcher.metrics.registry
    for loop in ("claim", "renew", "cancels"):
        count = registry.get_sample_value("stillhouse_loop_errors_total", {"loop": loop})
        assert count == 1, loop
    assert sum("a bug in" in str(r.exc_info and r.exc_info[1]) for r in caplog.records) == 3
