"""Run real discord.py clients in a thread with their own loop, so a synchronous test can
inject events and block on records (`ix.wait_response()`) while the bots keep running.

Several clients (replicas of one shard, say) must share one `ClientThread`: discord.py keeps
a process-wide webhook adapter with an `asyncio.Lock` per interaction token, and two loops
in two threads contending for one of those locks hang.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import discord

T = TypeVar("T")


class ClientThread:
    """`start()` logs in and waits for every client's `on_ready`; `call(coro)` runs on their
    loop; `stop()` closes them and re-raises whatever made a client fail."""

    def __init__(self, client: discord.Client, token: str, *others: discord.Client) -> None:
        self.client = client
        self.clients = [client, *others]
        self.token = token
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="discord-client")
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop = asyncio.Event()

    def start(self, timeout_s: float = 5.0) -> ClientThread:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise AssertionError(f"the clients were not ready after {timeout_s}s")
        if self._error is not None:
            raise self._error
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 5.0) -> T:
        """Await `coro` on the clients' loop (e.g. `channel.send(...)`) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> ClientThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced by start()/stop() in the test thread
            self._error = exc
            self._ready.set()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _main(self) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            for client in self.clients:
                # What `client.start` does, split so that we can wait for on_ready.
                await client.login(self.token)
                running.add(asyncio.create_task(client.connect()))
            ready: asyncio.Future[Any] = asyncio.gather(
                *(c.wait_until_ready() for c in self.clients)
            )
            await asyncio.wait({*running, ready}, return_when=asyncio.FIRST_COMPLETED)
            self._ready.set()
            stop: asyncio.Future[Any] = asyncio.create_task(self._stop.wait())
            await asyncio.wait({*running, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for client in self.clients:
                await client.close()
        for task in running:
            await task  # raises what made a client fail, if anything did
