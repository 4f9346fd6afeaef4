"""Server-sent events for one generation: a `progress` event whenever it moves (status,
progress, note, place in the queue), a comment every 15 s to keep proxies from closing an
idle stream, and `done` with the final view when it ends.

A stream looks at its job every `events_interval_s`, and sooner when a job ends: every
final state bumps the SENDS hint (stillhouse.hints), which wakes the streams at once, so
`done` follows the job's end by milliseconds rather than up to an interval. Any job's
end wakes every stream, so a stream reads its job at most every MIN_LOOK_S."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from sqlalchemy.exc import DBAPIError

from api.views import generation_view
from stillhouse import hints
from stillhouse.hints import SENDS
from stillhouse.services import Services

KEEPALIVE_S = 15.0
MIN_LOOK_S = 0.05


async def event_stream(generation_id: str, services: Services) -> AsyncIterator[str]:
    """The events of one generation until it ends (or the client goes away)."""
    interval = services.settings.api.events_interval_s
    last = ""
    quiet_since = time.monotonic()
    ended = services.hints.version(SENDS)
    while True:
        looked = time.monotonic()
        try:
            job = await asyncio.to_thread(services.queue.get, generation_id)
            if job is None:
                yield _event("gone", '{"detail": "the generation no longer exists"}')
                return
            view = await asyncio.to_thread(generation_view, job, services)
        except DBAPIError:
            yield ": the queue is unreachable, still trying\n\n"
            await asyncio.sleep(interval * 4)
            continue
        if view.status.is_terminal:
            yield _event("done", view.model_dump_json())
            return
        data = view.model_dump_json(
            include={"id", "status", "position", "progress", "progress_note"}
        )
        if data != last:
            last, quiet_since = data, time.monotonic()
            yield _event("progress", data)
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": still waiting\n\n"
        ended = await hints.changed(services.hints, SENDS, ended, interval)
        await asyncio.sleep(max(0.0, looked + MIN_LOOK_S - time.monotonic()))


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"
