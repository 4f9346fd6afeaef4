"""The bot's memory of images it delivered: read once, kept within its size, oldest use
dropped first, nothing kept when set to 0."""

from __future__ import annotations

import asyncio

from bot.recent_images import RecentImages


def fetched_through(recent: RecentImages, keys: list[str], sizes: dict[str, int]) -> list[str]:
    """The keys `recent` fetched from storage while reading `keys` in order."""
    fetched: list[str] = []

    async def fetch(key: str) -> bytes:
        fetched.append(key)
        return bytes(sizes[key])

    async def reads() -> None:
        for key in keys:
            assert len(await recent.read(key, fetch)) == sizes[key]

    asyncio.run(reads())
    return fetched


def test_an_image_read_again_comes_from_memory() -> None:
    recent = RecentImages(1000)
    assert fetched_through(recent, ["a", "b", "a", "b"], {"a": 300, "b": 300}) == ["a", "b"]
    assert recent.kept_bytes == 600


def test_the_least_recently_read_image_goes_first_when_full() -> None:
    recent = RecentImages(1000)
    sizes = {"a": 400, "b": 400, "c": 400}
    # a, b kept; a read again (now newer than b); c pushes out b; b is fetched once more.
    assert fetched_through(recent, ["a", "b", "a", "c", "a", "b"], sizes) == ["a", "b", "c", "b"]
    assert recent.kept_bytes <= 1000


def test_an_image_larger_than_the_whole_memory_is_not_kept() -> None:
    recent = RecentImages(1000)
    assert fetched_through(recent, ["big", "big"], {"big": 1001}) == ["big", "big"]
    assert recent.kept_bytes == 0


def test_nothing_is_kept_when_turned_off() -> None:
    recent = RecentImages(0)
    assert fetched_through(recent, ["a", "a"], {"a": 10}) == ["a", "a"]
    assert recent.kept_bytes == 0
