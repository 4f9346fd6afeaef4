"""Discord's global limit is per bot token, not per process: every process counts its
bot-token requests in one shared counter (memcached) and waits when the window is full.

Interaction callbacks and follow-ups through the interaction token do not count against
the global limit, so only the scarce paths (channel messages, deletes) go through here.
Windows are 100 ms wide so no one-second span can hold more than the rate allows.
"""

from __future__ import annotations

import asyncio
import math

from stillhouse.locks import LockService

WINDOW_S = 0.1
KEY = "discord:global"


class GlobalLimiter:
    """Await `acquire()` before each bot-token request."""

    def __init__(self, locks: LockService, per_second: int) -> None:
        self._locks = locks
        # A one-second span touches at most 11 windows of 100 ms.
        self._per_window = max(1, math.floor(per_second / (1 / WINDOW_S + 1)))

    async def acquire(self) -> None:
        """Return once this process may send one more request."""
        while True:
            hit = await asyncio.to_thread(self._locks.hit, KEY, self._per_window, WINDOW_S)
            if hit.allowed:
                return
            await asyncio.sleep(max(0.005, hit.retry_after_s))
