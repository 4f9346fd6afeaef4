"""Live progress: the process that answered a request edits its queued message while the
job runs, and once more when it ends. Only that process holds the interaction, so only it
edits; if it restarts, the result still arrives (delivery needs no interaction object),
only the progress bar stops moving."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import discord

from bot import messages
from bot.pacing import pause
from stillhouse.services import Services

log = logging.getLogger(__name__)
TOKEN_LIFETIME_S = 15 * 60.0


@dataclass
class _Tracked:
    interaction: discord.Interaction
    until: float
    shown: str = ""


class ProgressTracker:
    """Jobs whose queued message this process may edit."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._tracked: dict[str, _Tracked] = {}
        self._interval = services.settings.bot.progress_interval_s

    def track(self, public_id: str, interaction: discord.Interaction) -> None:
        """Edit this interaction's response as the job moves (until its token expires)."""
        self._tracked[public_id] = _Tracked(interaction, time.monotonic() + TOKEN_LIFETIME_S)

    @property
    def tracked(self) -> int:
        """How many jobs this process is showing."""
        return len(self._tracked)

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll the tracked jobs every interval until `stopping` is set."""
        while not stopping.is_set():
            try:
                await self.update_once()
            except Exception as exc:  # the database may be down: keep going, say so
                log.warning("progress update failed: %r", exc, extra={"action": "bot.progress"})
            await pause(stopping, self._interval)

    async def update_once(self) -> None:
        """Edit every tracked message whose job moved since it was last shown."""
        now = time.monotonic()
        for public_id in [k for k, t in self._tracked.items() if t.until < now]:
            del self._tracked[public_id]
        if not self._tracked:
            return
        rows = await asyncio.to_thread(self._s.insights.progress_of, list(self._tracked))
        for row in rows:
            tracked = self._tracked.get(row.public_id)
            if tracked is None:
                continue
            text = messages.progress(row.public_id, row.status, row.progress, row.progress_note)
            ended = row.status.is_terminal
            if text != tracked.shown:
                await self._edit(tracked, text, ended=ended)
            if ended:
                self._tracked.pop(row.public_id, None)

    async def _edit(self, tracked: _Tracked, text: str, *, ended: bool) -> None:
        try:
            if ended:  # the Cancel button has nothing left to cancel
                await tracked.interaction.edit_original_response(content=text, view=None)
            else:
                await tracked.interaction.edit_original_response(content=text)
            tracked.shown = text
        except discord.HTTPException as exc:
            # A deleted message or a dead token: stop editing, the result still arrives.
            log.info("progress edit refused: %s", exc, extra={"action": "bot.progress"})
            tracked.until = 0.0
