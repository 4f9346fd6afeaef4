"""Images this bot process delivered lately, kept in memory up to a size.

A request identical to an earlier one is answered with the earlier job's images
(stillhouse.queue.reuse): the same storage keys, usually delivered by the same shard (the
guild's), so its answer needs no second read from storage. A stored image never changes
under its key once its job's outcome is written, and a user's deletion clears the reuse
key before the files go (no later answer points at them), so a kept copy is never stale
for a row that may show it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cachetools import LRUCache


class RecentImages:
    """Reads through a least-recently-used store of at most `limit_bytes` of images."""

    def __init__(self, limit_bytes: int) -> None:
        self._kept: LRUCache[str, bytes] | None = (
            LRUCache(maxsize=limit_bytes, getsizeof=len) if limit_bytes > 0 else None
        )

    async def read(self, key: str, fetch: Callable[[str], Awaitable[bytes]]) -> bytes:
        """The image under `key`: kept, or fetched and kept."""
        if self._kept is None:
            return await fetch(key)
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        data = await fetch(key)
        if len(data) <= self._kept.maxsize:  # one larger than the whole store is not kept
            self._kept[key] = data
        return data

    @property
    def kept_bytes(self) -> int:
        return 0 if self._kept is None else int(self._kept.currsize)
