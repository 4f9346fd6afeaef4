"""The worker's HTTP session, kept for as long as its event loop runs.

A job used to open a session of its own: a new connection to ComfyUI for each of its
calls, and boto3 on a thread for each upload. One session per loop now carries the calls
to ComfyUI and the uploads to the image store (signed URLs: stillhouse.storage.over_http),
and its connections stay open from one job to the next.

`async with sessions.kept():` around a loop's whole work keeps it (the runpod SDK's run:
worker.scaler); a job outside such a block (a test or a bench calling the handler on a
loop of its own) gets a session of its own, closed after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp

# One HTTP call; the job's deadline bounds all of them together as well.
CALL_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)


class Sessions:
    """The kept session of each loop that keeps one."""

    def __init__(self) -> None:
        self._kept: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Keep one session for this loop until the block ends."""
        loop = asyncio.get_running_loop()
        session = self._kept[loop] = aiohttp.ClientSession(timeout=CALL_TIMEOUT)
        try:
            yield
        finally:
            del self._kept[loop]
            await session.close()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[aiohttp.ClientSession]:
        """The loop's kept session, or one for this block only."""
        kept = self._kept.get(asyncio.get_running_loop())
        if kept is not None:
            yield kept
            return
        async with aiohttp.ClientSession(timeout=CALL_TIMEOUT) as own:
            yield own
