"""Write hooks for chaos tests: run test code at the instant a write has landed.

`DiscordEmulator.after_write(hook)` registers `hook(event)`; the emulator calls it on its own
thread after it applied a message create or edit (and sent the gateway event) and before
it answers the HTTP request. A test can then, say, kill the bot process that sent the
request, which sees its write land on Discord but never hears back: the case a
crash-safe bot must handle. A hook that raises is logged and does not break the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from tests.doubles.discord.state import Interaction, Message, State

log = logging.getLogger(__name__)

WriteKind = Literal["callback", "followup", "webhook_edit", "channel_post", "channel_edit"]


@dataclass(frozen=True)
class WriteEvent:
    """A message create or edit the emulator just applied.

    `kind`: "callback" (interaction callback types 4, 5, 7), "followup" (webhook POST,
    including the one that replaces a deferral's "thinking" message), "webhook_edit"
    (webhook PATCH, @original included), "channel_post", "channel_edit".
    """

    kind: WriteKind
    interaction: Interaction | None
    message: Message
    token: str | None
    request_headers: dict[str, str]


WriteHookFn = Callable[[WriteEvent], None]


class WriteHook:
    """A registered hook; `remove()` unregisters it (again: a no-op)."""

    def __init__(self, state: State, fn: WriteHookFn) -> None:
        self._state = state
        self.fn = fn

    def remove(self) -> None:
        with self._state.lock:
            # By identity: the same function registered twice is two hooks.
            self._state.write_hooks[:] = [h for h in self._state.write_hooks if h is not self]


def register(state: State, fn: WriteHookFn) -> WriteHook:
    hook = WriteHook(state, fn)
    with state.lock:
        state.write_hooks.append(hook)
    return hook


def fire(
    state: State,
    kind: WriteKind,
    request: web.Request,
    message: Message,
    interaction: Interaction | None = None,
) -> None:
    """Call the hooks in registration order, outside the lock (a hook may read records)."""
    with state.lock:
        hooks = list(state.write_hooks)
    if not hooks:
        return
    event = WriteEvent(
        kind,
        interaction,
        message,
        interaction.token if interaction is not None else None,
        {str(key): value for key, value in request.headers.items()},
    )
    for hook in hooks:
        try:
            hook.fn(event)
        except Exception:
            # A broken hook is the test's problem; Discord still answers.
            log.exception("emulator: write hook %r failed on %s", hook.fn, kind)
