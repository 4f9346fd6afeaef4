"""`GET /channels/{id}/messages`: a channel's history as Discord pages it.

Discord answers newest first whatever the anchor: `before` gives the `limit` messages just
older than it, `after` the `limit` messages just newer than it (still newest first, which
is why discord.py reverses them), `around` about half each side, the anchor included.
Every non-deleted, non-ephemeral message counts, whichever API made it. Without Read
Message History Discord answers 200 with no messages, as its docs say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tests.doubles.discord.state import Channel, Message, State
from tests.doubles.discord.wire import ApiError, form_error

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
ANCHORS = ("before", "after", "around")


@dataclass(frozen=True)
class Query:
    limit: int = DEFAULT_LIMIT
    before: int | None = None
    after: int | None = None
    around: int | None = None


def parse(query: Mapping[str, str]) -> Query:
    """The query string, checked as Discord checks it (400 50035 otherwise)."""
    limit = _number(query, "limit", DEFAULT_LIMIT)
    if limit < 1:
        raise form_error("limit", "NUMBER_TYPE_MIN", "int value should be at least 1.")
    if limit > MAX_LIMIT:
        raise form_error("limit", "NUMBER_TYPE_MAX", f"int value should be at most {MAX_LIMIT}.")
    given = [key for key in ANCHORS if key in query]
    if len(given) > 1:
        # Discord documents them as mutually exclusive; a loud 400 beats guessing which wins.
        problem = {"code": "EMULATOR_MUTUALLY_EXCLUSIVE", "message": f"Only one of {given}."}
        raise ApiError(400, 50035, "Invalid Form Body", {given[1]: {"_errors": [problem]}})
    anchors = {key: _number(query, key, 0) for key in given}
    return Query(limit, **anchors)


def _number(query: Mapping[str, str], key: str, default: int) -> int:
    raw = query.get(key)
    if raw is None:
        return default
    if not raw.isdigit():
        raise form_error(key, "NUMBER_TYPE_COERCE", f"Value {raw!r} is not int.")
    return int(raw)


def visible(state: State, channel_id: int) -> list[Message]:
    """What anyone reading the channel sees, oldest first (ids grow with time)."""
    found = [
        m
        for m in state.messages.values()
        if m.channel_id == channel_id and not m.deleted and not m.ephemeral
    ]
    return sorted(found, key=lambda m: m.id)


def select(state: State, ch: Channel, query: Query) -> list[Message]:
    """The page Discord answers, newest first (the caller holds the state lock)."""
    if not ch.history_readable:
        return []
    msgs = visible(state, ch.id)
    if query.around is not None:
        older = [m for m in msgs if m.id <= query.around]  # the anchor itself included
        newer = [m for m in msgs if m.id > query.around]
        half = query.limit // 2
        page = older[-(query.limit - half) :] + newer[:half]
    elif query.after is not None:
        page = [m for m in msgs if m.id > query.after][: query.limit]
    else:
        before = query.before
        page = [m for m in msgs if before is None or m.id < before][-query.limit :]
    return page[::-1]
