"""Progress reports to RunPod, sent from the worker's own event loop.

The SDK's `runpod.serverless.progress_update` starts a thread, an event loop and a new
HTTP session (a new connection) for every update; a job reports four or more (stages,
the first step count, then at most one a second), which on a busy 2-core worker cost
more than the rest of the handler's own overhead. `ProgressSender` posts the same body
to the same URL (the SDK's `send_result` with status IN_PROGRESS) over one kept-alive
session, as a task of the running loop: the handler never waits for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import runpod
from runpod.http_client import AsyncClientSession
from runpod.serverless.modules import rp_http


class ProgressSender:
    """`report(job, update)` for the handler, one session per worker process."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def __call__(self, job: dict[str, Any], update: dict[str, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not inside the worker's loop: the SDK's own way
            runpod.serverless.progress_update(job, update)
            return
        if self._session is None or self._session.closed:
            self._session = AsyncClientSession()
        body = {"status": "IN_PROGRESS", "output": update}
        task = loop.create_task(rp_http.send_result(self._session, body, job))
        self._sending.add(task)  # kept until sent: the loop holds tasks only weakly
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled():
            task.exception()  # progress is advisory: a lost update is no error
