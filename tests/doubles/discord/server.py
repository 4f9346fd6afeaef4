"""`DiscordEmulator`: Discord's HTTP API and gateway on 127.0.0.1, in a thread of the tests.

The real discord.py runs against it once `patched()` points `Route.BASE` and
`DiscordWebSocket.DEFAULT_GATEWAY` here. Tests inject slash commands, autocomplete and
clicks (thread-safe; each returns its `Interaction` record at once), read what the bot did
from the records, plan faults with `fail_next`, and move the emulator clock with `advance`.
Chaos tests register `after_write` hooks, called when a message write has landed but is
not yet answered.

For fast tests, give the client a small `guild_ready_timeout` (it otherwise waits 2 s
before `on_ready`) and, when sharded, override `before_identify_hook`: discord.py sleeps 5 s
between shards' IDENTIFYs by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.doubles.discord import hooks
from tests.doubles.discord.gateway import Gateway
from tests.doubles.discord.injection import Injector
from tests.doubles.discord.rest import Rest
from tests.doubles.discord.state import (
    Fault,
    GuildSpec,
    Interaction,
    Message,
    RequestRecord,
    Session,
    State,
)
from tests.doubles.discord.webhooks import Webhooks
from tests.doubles.discord.wire import AUTHORIZED, ApiError, fault_response, json_response

log = logging.getLogger(__name__)
API = "/api/v10"
DEFAULT_APP_ID = 1_100_000_000_000_000_001


class DiscordEmulator(Injector):
    """Start with `start()` (or `with`); `patched()` points discord.py here. Injecting
    interactions (`slash_command`, `autocomplete`, `click`, `select`): see `Injector`."""

    def __init__(
        self,
        guilds: list[GuildSpec] | None = None,
        app_id: int = DEFAULT_APP_ID,
        bot_id: int | None = None,
        token: str = "stillhouse-emulator-bot-token",
    ) -> None:
        # Since 2020 a bot user's id is its application's id.
        self.state = State(app_id, bot_id if bot_id is not None else app_id, token)
        for spec in guilds if guilds is not None else [GuildSpec()]:
            self.state.add_guild(spec)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._gateway: Gateway | None = None
        self._rest: Rest | None = None

    # -- addresses and identities ----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What `discord.http.Route.BASE` must be."""
        return f"{self.url}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def token(self) -> str:
        return self.state.token

    @property
    def app_id(self) -> int:
        return self.state.app_id

    @property
    def bot_id(self) -> int:
        return self.state.bot_id

    @property
    def guilds(self) -> list[GuildSpec]:
        return [g.spec for g in self.state.guilds.values()]

    @contextlib.contextmanager
    def patched(self) -> Iterator[DiscordEmulator]:
        """Point discord.py (this process) at the emulator; restore on exit."""
        import discord.gateway
        import discord.http
        import yarl

        route, ws = discord.http.Route, discord.gateway.DiscordWebSocket
        saved = route.BASE, ws.DEFAULT_GATEWAY
        route.BASE, ws.DEFAULT_GATEWAY = self.api_base, yarl.URL(self.gateway_url)
        try:
            yield self
        finally:
            route.BASE, ws.DEFAULT_GATEWAY = saved

    # -- records ---------------------------------------------------------------------------

    @property
    def sessions(self) -> list[Session]:
        with self.state.lock:
            return list(self.state.sessions)

    @property
    def requests(self) -> list[RequestRecord]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def commands(self) -> dict[int | None, list[dict[str, Any]]]:
        """Synced commands by scope: None for global, else the guild id."""
        with self.state.lock:
            return {scope: list(cmds) for scope, cmds in self.state.commands.items()}

    @property
    def interactions(self) -> list[Interaction]:
        with self.state.lock:
            return list(self.state.interactions.values())

    def message(self, message_id: int) -> Message:
        with self.state.lock:
            return self.state.messages[message_id]

    def channel_messages(
        self, channel_id: int, *, include_deleted: bool = False, via: tuple[str, ...] = ("channel",)
    ) -> list[Message]:
        """Messages posted in a channel, oldest first (by default only POST /channels/…)."""
        with self.state.lock:
            return [
                m
                for m in self.state.messages.values()
                if m.channel_id == channel_id
                and m.via in via
                and (include_deleted or not m.deleted)
            ]

    def register_commands(
        self, commands: list[dict[str, Any]], guild_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Store commands as a bulk overwrite would (for a bot under test that never syncs)."""
        assert self._rest is not None, "start() the emulator first"
        return self._rest.overwrite_commands(guild_id, commands)

    def wait_ready(self, sessions: int = 1, timeout_s: float = 5.0) -> list[Session]:
        """Block until `sessions` live sessions have had their READY and GUILD_CREATEs."""

        def live() -> list[Session]:
            return [s for s in self.state.sessions if s.guilds_sent and not s.closed]

        with self.state.cond:
            if not self.state.cond.wait_for(lambda: len(live()) >= sessions, timeout_s):
                raise AssertionError(f"{len(live())} of {sessions} gateway sessions ready")
            return live()

    # -- faults, clock, gateway control ----------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """Answer the next `times` requests whose path matches (re.search) with an error.
        `method` may be "*". 429s carry `Via` so discord.py retries them after `retry_after`."""
        fault = Fault(method, re.compile(path_regex), status, times, retry_after, code, message)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def delay_next(self, method: str, path_regex: str, seconds: float, times: int = 1) -> Fault:
        """Hold the next `times` matching requests `seconds` before handling them (the
        others are served meanwhile): a request that lands late."""
        fault = Fault(method, re.compile(path_regex), 0, times, None, None, None, delay_s=seconds)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def after_write(self, hook: hooks.WriteHookFn) -> hooks.WriteHook:
        """Call `hook(WriteEvent)` on the emulator thread after each message create or edit
        is applied (and its gateway event sent), before the HTTP answer. Hooks run in
        registration order; one that raises is logged. `.remove()` the returned handle.
        While a hook runs the whole emulator waits (it runs on the emulator's loop); an
        enforced-nonce repeat writes nothing and calls no hook."""
        return hooks.register(self.state, hook)

    @property
    def nonce_window_s(self) -> float:
        """How long (emulator clock) an `enforce_nonce` create returns the earlier message."""
        return self.state.nonce_window_s

    @nonce_window_s.setter
    def nonce_window_s(self, seconds: float) -> None:
        with self.state.lock:
            self.state.nonce_window_s = seconds

    def advance(self, seconds: float) -> None:
        """Move the emulator clock (3 s acks, 15 min tokens, timestamps, snowflakes)."""
        with self.state.lock:
            self.state.clock.offset += seconds

    def now(self) -> float:
        """The emulator clock, as Unix time."""
        return self.state.clock.now()

    def reconnect(self, shard_id: int | None = None, *, resumable: bool = True) -> int:
        """Send live sessions op 7 (they RESUME) or, not resumable, op 9 (they IDENTIFY
        anew). Returns how many sessions were told."""
        assert self._gateway is not None, "start() the emulator first"
        return self._call(self._gateway.reconnect(shard_id, resumable=resumable))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> DiscordEmulator:
        self._thread = threading.Thread(target=self._serve, daemon=True, name="discord-emulator")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Discord emulator did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> DiscordEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._startup())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _startup(self) -> None:
        # Big enough that an oversized upload gets Discord's 413 JSON, not aiohttp's.
        app = web.Application(client_max_size=512 * 2**20, middlewares=[self._middleware])
        self._gateway = gateway = Gateway(self.state, "")
        self._rest = Rest(self.state, gateway)
        app.router.add_routes(self._rest.routes(API))
        app.router.add_routes(Webhooks(self.state, gateway).routes(API))
        app.router.add_get("/gateway", gateway.handle)
        app.router.add_get("/attachments/{channel}/{id}/{filename}", self._attachment)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.state.base_url, gateway.url = self.url, self.gateway_url

    async def _shutdown(self) -> None:
        if self._gateway is not None:
            await self._gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- HTTP plumbing ---------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.monotonic()
        authorized = request.headers.get("Authorization") == f"Bot {self.state.token}"
        request[AUTHORIZED] = authorized
        response: web.StreamResponse
        try:
            fault = self._take_fault(request.method, request.path)
            if fault is not None and fault.delay_s:
                await asyncio.sleep(fault.delay_s)  # other requests go on meanwhile
                fault = None
            response = fault_response(fault) if fault else await handler(request)
        except ApiError as exc:
            response = json_response(exc.body(), exc.status)
        except (KeyError, ValueError, TypeError) as exc:
            # A body missing what Discord requires: fail fast with a 400 (a 500 would make
            # discord.py retry for 16 s) and say what broke.
            log.warning("emulator: %s %s rejected: %r", request.method, request.path, exc)
            errors = {"_emulator": {"_errors": [{"code": "INVALID", "message": repr(exc)}]}}
            response = json_response(ApiError(400, 50035, "Invalid Form Body", errors).body(), 400)
        except web.HTTPException as exc:  # no such route or method: Discord's plain 404/405
            response = json_response(
                {"message": f"{exc.status}: {exc.reason}", "code": 0}, exc.status
            )
        with self.state.lock:
            record = RequestRecord(
                started, request.method, request.path, authorized, response.status
            )
            self.state.requests.append(record)
        return response

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    fault.hits += 1
                    return fault
        return None

    async def _attachment(self, request: web.Request) -> web.Response:
        att = self.state.attachments.get(int(request.match_info["id"]))
        if att is None or att.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=att.data, headers={"Content-Type": att.content_type})
