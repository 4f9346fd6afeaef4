"""The worker's HTTP session: kept for every job while the runpod SDK's loop runs,
one of its own for a job outside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from runpod.serverless.modules import rp_scale

from worker.scaler import SteadyScaler
from worker.sessions import Sessions


def test_jobs_inside_the_kept_block_share_one_open_session_closed_at_its_end() -> None:
    sessions = Sessions()

    async def jobs() -> tuple[list[aiohttp.ClientSession], aiohttp.ClientSession]:
        seen = []

        async def job() -> None:
            async with sessions.session() as session:
                assert not session.closed
                seen.append(session)

        async with sessions.kept():
            await asyncio.gather(job(), job())
            await job()
            kept = seen[0]
            assert not kept.closed, "still open between jobs"
        return seen, kept

    seen, kept = asyncio.run(jobs())
    assert seen == [kept] * 3
    assert kept.closed


def test_a_job_outside_any_kept_block_gets_its_own_session_closed_after_it() -> None:
    sessions = Sessions()

    async def job() -> aiohttp.ClientSession:
        async with sessions.session() as session:
            assert not session.closed
            return session

    first, second = asyncio.run(job()), asyncio.run(job())
    assert first is not second
    assert first.closed and second.closed


def test_the_sdks_run_happens_inside_what_the_worker_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def kept() -> AsyncIterator[None]:
        events.append("opened")
        yield
        events.append("closed")

    async def sdk_run(_self: rp_scale.JobScaler) -> None:
        events.append("run")

    sdk_scaler = SteadyScaler.__bases__[0]  # the SDK's JobScaler, even after install()
    assert sdk_scaler.__module__ == rp_scale.__name__
    monkeypatch.setattr(sdk_scaler, "run", sdk_run)
    config = {"handler": lambda job: job, "concurrency": 2, "kept_while_running": kept}
    scaler = SteadyScaler(config)
    asyncio.run(scaler.run())
    assert events == ["opened", "run", "closed"]
