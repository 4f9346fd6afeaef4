"""Live progress: the process that answered a request edits its queued message while the
job runs. Only that process holds the interaction, so only it edits; if it restarts, the
answer still arrives (delivery needs no interaction object), only the bar stops moving.

The job's answer later replaces the same message (bot.routes), so no progress edit may
land after it: each round of edits first takes the jobs' message fences, which cannot be
taken once a job has ended, and an edit is abandoned well before its fence lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import discord
from sqlalchemy.exc import DBAPIError

from bot import messages
from bot.metrics import BotMetrics
from bot.pacing import pause
from stillhouse.services import Services

log = logging.getLogger(__name__)
TOKEN_LIFETIME_S = 15 * 60.0
FENCE_S = 10.0  # how long an edit may still land, as far as the answer is concerned
EDIT_TIMEOUT_S = 5.0  # an edit not answered by then is given up (well inside the fence)


@dataclass
class _Tracked:
    interaction: discord.Interaction
    until: float
    shown: str = ""
    prompt: str | None = None  # echoed while it waits, as the first answer did


class ProgressTracker:
    """Jobs whose queued message this process may edit."""

    def __init__(self, services: Services, metrics: BotMetrics | None = None) -> None:
        self._s = services
        self._tracked: dict[str, _Tracked] = {}
        self._interval = services.settings.bot.progress_interval_s
        self._metrics = metrics or BotMetrics()

    def track(
        self,
        public_id: str,
        interaction: discord.Interaction,
        shown: str = "",
        prompt: str | None = None,
    ) -> None:
        """Edit this interaction's response (now showing `shown`) as the job moves, until
        its token expires."""
        until = time.monotonic() + TOKEN_LIFETIME_S
        self._tracked[public_id] = _Tracked(interaction, until, shown, prompt)

    @property
    def tracked(self) -> int:
        """How many jobs this process is showing."""
        return len(self._tracked)

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll the tracked jobs every interval until `stopping` is set."""
        while not stopping.is_set():
            try:
                await self.update_once()
            except DBAPIError as exc:  # the database may be down: keep going, say so
                log.warning("progress update failed: %r", exc, extra={"action": "bot.progress"})
            except Exception:
                self._metrics.loop_errors.labels("progress").inc()
                log.exception("progress update failed", extra={"action": "loop.error"})
            await pause(stopping, self._interval)

    async def update_once(self) -> None:
        """Edit every tracked message whose job moved since it was last shown."""
        now = time.monotonic()
        for public_id in [k for k, t in self._tracked.items() if t.until < now]:
            del self._tracked[public_id]
        if not self._tracked:
            return
        window_s = self._s.settings.queue.estimate_window_s
        rows = await asyncio.to_thread(
            partial(self._s.insights.progress_of, list(self._tracked), window_s=window_s)
        )
        clock_now = self._s.clock()
        changed: dict[str, str] = {}
        for row in rows:
            if row.public_id not in self._tracked:
                continue
            if row.status.is_terminal:  # its answer replaces the message
                self._tracked.pop(row.public_id, None)
                continue
            text = messages.progress(
                row.public_id,
                row.status,
                row.progress,
                row.progress_note,
                ahead=row.ahead,
                wait_s=row.estimated_wait_s,
                sent_s=_since(row.dispatched_at, clock_now),
                typical_s=row.typical_s,
                prompt=self._tracked[row.public_id].prompt,
            )
            if text != self._tracked[row.public_id].shown:
                changed[row.public_id] = text
        if changed:
            await self._edit_round(changed)

    async def _edit_round(self, changed: dict[str, str]) -> None:
        """One fence for the round's edits, made side by side, released once all landed."""
        fence = self._s.fence
        until, held = await asyncio.to_thread(fence.take, list(changed), FENCE_S)
        for public_id in set(changed) - held:  # ended meanwhile: its answer's now
            self._tracked.pop(public_id, None)
        try:
            await asyncio.gather(*(self._edit(p, changed[p]) for p in held))
        finally:
            with contextlib.suppress(DBAPIError):
                await asyncio.to_thread(fence.release, list(held), until)

    async def _edit(self, public_id: str, text: str) -> None:
        tracked = self._tracked.get(public_id)
        if tracked is None:
            return
        try:
            async with asyncio.timeout(EDIT_TIMEOUT_S):
                await tracked.interaction.edit_original_response(content=text)
            tracked.shown = text
        except TimeoutError:
            log.info("progress edit too slow; skipped", extra={"action": "bot.progress"})
        except discord.HTTPException as exc:
            # A deleted message or a dead token: stop editing, the answer still arrives.
            log.info("progress edit refused: %s", exc, extra={"action": "bot.progress"})
            tracked.until = 0.0


def _since(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max(0.0, (now - moment).total_seconds())
