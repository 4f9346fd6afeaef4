"""Bot-authenticated REST routes: login, gateway discovery, commands, channels, guilds, DMs.

Create Message honours `nonce` + `enforce_nonce` as Discord does: a repeat within
`State.nonce_window_s` returns the first message and creates nothing.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tests.doubles.discord import history, hooks, messages, payloads
from tests.doubles.discord.events import upload_limit
from tests.doubles.discord.gateway import Gateway
from tests.doubles.discord.state import DEFAULT_OWNER_ID, EPHEMERAL, Channel, Message, State
from tests.doubles.discord.wire import AUTHORIZED, error, form_error, json_response, read_body

COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


class Rest:
    """The routes a bot calls with `Authorization: Bot <token>`."""

    def __init__(self, state: State, gateway: Gateway) -> None:
        self.state = state
        self.gateway = gateway

    def routes(self, base: str) -> list[web.RouteDef]:
        app_cmds = f"{base}/applications/{{app}}"
        msg = f"{base}/channels/{{channel}}/messages/{{message}}"
        return [
            web.get(f"{base}/users/@me", self.me),
            web.get(f"{base}/users/{{user}}", self.get_user),
            web.post(f"{base}/users/@me/channels", self.open_dm),
            web.get(f"{base}/oauth2/applications/@me", self.app_info),
            web.get(f"{base}/applications/@me", self.app_info),
            web.get(f"{base}/gateway", self.get_gateway),
            web.get(f"{base}/gateway/bot", self.get_gateway),
            web.put(f"{app_cmds}/commands", self.put_commands),
            web.get(f"{app_cmds}/commands", self.get_commands),
            web.put(f"{app_cmds}/guilds/{{guild}}/commands", self.put_commands),
            web.get(f"{app_cmds}/guilds/{{guild}}/commands", self.get_commands),
            web.get(f"{base}/channels/{{channel}}", self.get_channel),
            web.post(f"{base}/channels/{{channel}}/typing", self.typing),
            web.post(f"{base}/channels/{{channel}}/messages", self.post_message),
            web.get(f"{base}/channels/{{channel}}/messages", self.get_messages),
            web.get(msg, self.get_message),
            web.patch(msg, self.patch_message),
            web.delete(msg, self.delete_message),
            web.get(f"{base}/guilds/{{guild}}", self.get_guild),
            web.get(f"{base}/guilds/{{guild}}/channels", self.guild_channels),
            web.get(f"{base}/guilds/{{guild}}/members/{{user}}", self.get_member),
        ]

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _auth(request: web.Request) -> None:
        if not request[AUTHORIZED]:
            raise error("unauthorized")

    @staticmethod
    def _id(request: web.Request, key: str, missing: str) -> int:
        value = request.match_info[key]
        if not value.isdigit():
            raise error(missing)
        return int(value)

    def _channel(self, request: web.Request) -> Channel:
        self._auth(request)
        ch = self.state.channels.get(self._id(request, "channel", "unknown_channel"))
        if ch is None:
            raise error("unknown_channel")
        if not ch.accessible:
            raise error("missing_access")
        return ch

    def _message(self, request: web.Request) -> tuple[Channel, Message]:
        ch = self._channel(request)
        msg = self.state.messages.get(self._id(request, "message", "unknown_message"))
        if msg is None or msg.deleted or msg.channel_id != ch.id:
            raise error("unknown_message")
        return ch, msg

    def _app(self, request: web.Request) -> None:
        self._auth(request)
        if request.match_info["app"] != str(self.state.app_id):
            raise error("missing_access")

    # -- login and gateway -----------------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        self._auth(request)
        return json_response(payloads.bot_user(self.state))

    async def get_user(self, request: web.Request) -> web.Response:
        self._auth(request)
        user_id = self._id(request, "user", "unknown_user")
        if user_id == self.state.bot_id:
            return json_response(payloads.bot_user(self.state))
        return json_response(payloads.user(user_id))

    async def app_info(self, request: web.Request) -> web.Response:
        self._auth(request)
        guilds = list(self.state.guilds.values())
        owner = guilds[0].spec.owner_id if guilds else DEFAULT_OWNER_ID
        return json_response(payloads.application(self.state, owner))

    def recommended_shards(self) -> int:
        """What Discord recommends: its own figure when a test set one, else one shard per
        1,000 guilds (Discord's guidance), at least one."""
        with self.state.lock:
            if self.state.recommended_shards is not None:
                return self.state.recommended_shards
            return max(1, -(-len(self.state.guilds) // 1000))

    async def get_gateway(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"url": self.gateway.url}
        if request.path.endswith("/bot"):
            self._auth(request)
            limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
            body.update(shards=self.recommended_shards(), session_start_limit=limit)
        return json_response(body)

    # -- application commands --------------------------------------------------------------

    async def put_commands(self, request: web.Request) -> web.Response:
        self._app(request)
        scope = self._guild_scope(request)
        return json_response(self.overwrite_commands(scope, await request.json()))

    def overwrite_commands(self, scope: int | None, body: Any) -> list[dict[str, Any]]:
        """Bulk overwrite: validate, keep the ids of commands that stay, store, echo back."""
        if not isinstance(body, list) or len(body) > 100:
            raise form_error("_", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        with self.state.cond:
            before = {(c["name"], c.get("type", 1)): c for c in self.state.commands.get(scope, [])}
            seen: set[tuple[str, int]] = set()
            result = []
            for i, cmd in enumerate(body):
                key = (cmd.get("name"), cmd.get("type", 1))
                if key in seen:
                    raise form_error(f"{i}.name", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Dup.")
                seen.add(key)
                check_command(cmd, f"{i}")
                result.append(self._command(cmd, scope, before.get(key)))
            self.state.commands[scope] = result
        return result

    def _guild_scope(self, request: web.Request) -> int | None:
        if "guild" not in request.match_info:
            return None
        guild_id = self._id(request, "guild", "unknown_guild")
        if guild_id not in self.state.guilds:
            raise error("missing_access")  # what Discord answers for a guild the app is not in
        return guild_id

    def _command(
        self, cmd: dict[str, Any], scope: int | None, before: dict[str, Any] | None
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": before["id"] if before else str(self.state.ids.next()),
            "application_id": str(self.state.app_id),
            "version": str(self.state.ids.next()),
            "type": cmd.get("type", 1),
            "name": cmd["name"],
            "description": cmd.get("description", ""),
            "default_member_permissions": cmd.get("default_member_permissions"),
            "dm_permission": cmd.get("dm_permission", True),
            "contexts": cmd.get("contexts"),
            "integration_types": cmd.get("integration_types") or [0],
            "nsfw": cmd.get("nsfw", False),
            "name_localizations": cmd.get("name_localizations"),
            "description_localizations": cmd.get("description_localizations"),
        }
        if cmd.get("options"):
            result["options"] = cmd["options"]
        if scope is not None:
            result["guild_id"] = str(scope)
        return result

    async def get_commands(self, request: web.Request) -> web.Response:
        self._app(request)
        scope = self._guild_scope(request)
        with self.state.cond:
            return json_response(list(self.state.commands.get(scope, [])))

    # -- channels and messages -------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.Response:
        return json_response(payloads.channel(self.state, self._channel(request)))

    async def typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    async def post_message(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        payload, files = await read_body(request)
        messages.check(payload, files, upload_limit(self.state, ch.guild_id), creating=True)
        messages.check_nonce(payload)
        with self.state.cond:
            earlier = messages.earlier_with_nonce(self.state, ch.id, payload)
            if earlier is not None:
                if earlier.deleted:  # Discord: the nonce's message was deleted meanwhile
                    raise error("unknown_message")
                return json_response(payloads.message(self.state, earlier))
            ref = self._reference(ch, payload.get("message_reference"))
            flags = int(payload.get("flags") or 0) & messages.FLAGS_ALLOWED & ~EPHEMERAL
            msg = messages.new_message(
                self.state,
                ch.id,
                ch.guild_id,
                "channel",
                payload,
                files,
                flags=flags,
                message_reference=ref,
                type=19 if ref else 0,
            )
            body = payloads.message(self.state, msg)
            self.state.cond.notify_all()
        await self.gateway.message_event(ch.guild_id, "MESSAGE_CREATE", body)
        hooks.fire(self.state, "channel_post", request, msg)
        return json_response(body)

    def _reference(self, ch: Channel, ref: dict[str, Any] | None) -> dict[str, Any] | None:
        if not ref or ref.get("message_id") is None:
            return None
        target = self.state.messages.get(int(ref["message_id"]))
        if target is None or target.deleted or target.channel_id != ch.id:
            if ref.get("fail_if_not_exists", True):
                raise form_error(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            return None
        stored = {"type": 0, "message_id": str(target.id), "channel_id": str(ch.id)}
        if ch.guild_id is not None:
            stored["guild_id"] = str(ch.guild_id)
        return stored

    async def get_messages(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        query = history.parse(request.query)
        with self.state.cond:
            page = history.select(self.state, ch, query)
            return json_response([payloads.message(self.state, m) for m in page])

    async def get_message(self, request: web.Request) -> web.Response:
        ch, msg = self._message(request)
        if not ch.history_readable:  # Discord: one message needs Read Message History
            raise error("missing_permissions")
        with self.state.cond:
            return json_response(payloads.message(self.state, msg))

    async def patch_message(self, request: web.Request) -> web.Response:
        ch, msg = self._message(request)
        if msg.author_id != self.state.bot_id:
            raise error("not_author")
        payload, files = await read_body(request)
        messages.check(payload, files, upload_limit(self.state, ch.guild_id), creating=False)
        with self.state.cond:
            messages.edit(self.state, msg, payload, files)
            body = payloads.message(self.state, msg)
            self.state.cond.notify_all()
        await self.gateway.message_event(ch.guild_id, "MESSAGE_UPDATE", body)
        hooks.fire(self.state, "channel_edit", request, msg)
        return json_response(body)

    async def delete_message(self, request: web.Request) -> web.Response:
        ch, msg = self._message(request)
        with self.state.cond:
            msg.deleted = True
            self.state.cond.notify_all()
        gone = {"id": str(msg.id), "channel_id": str(ch.id)}
        if ch.guild_id is not None:
            gone["guild_id"] = str(ch.guild_id)
        await self.gateway.message_event(ch.guild_id, "MESSAGE_DELETE", gone)
        return web.Response(status=204)

    async def open_dm(self, request: web.Request) -> web.Response:
        self._auth(request)
        body = await request.json()
        with self.state.cond:
            ch = self.state.dm_channel(int(body["recipient_id"]))
            return json_response(payloads.channel(self.state, ch))

    # -- guilds ----------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> int:
        self._auth(request)
        guild_id = self._id(request, "guild", "unknown_guild")
        if guild_id not in self.state.guilds:
            raise error("unknown_guild")
        return guild_id

    async def get_guild(self, request: web.Request) -> web.Response:
        guild = self.state.guilds[self._guild(request)]
        return json_response(payloads.guild_base(self.state, guild))

    async def guild_channels(self, request: web.Request) -> web.Response:
        guild_id = self._guild(request)
        chans = [c for c in self.state.channels.values() if c.guild_id == guild_id]
        return json_response([payloads.channel(self.state, c) for c in chans])

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self.state.guilds[self._guild(request)]
        user_id = self._id(request, "user", "unknown_member")
        if user_id not in guild.member_ids(self.state.bot_id):
            raise error("unknown_member")
        return json_response(payloads.member(self.state, guild, user_id))


def check_command(cmd: dict[str, Any], where: str, *, option: bool = False) -> None:
    """Discord's rules for a command or option: names, descriptions, option order."""
    name = cmd.get("name") or ""
    chat = option or cmd.get("type", 1) == 1  # user/message commands: free names, no description
    if chat and (not COMMAND_NAME.match(name) or name != name.lower()):
        raise form_error(f"{where}.name", "APPLICATION_COMMAND_INVALID_NAME", f"Bad {name!r}")
    if chat and not 1 <= len(cmd.get("description") or "") <= 100:
        raise form_error(f"{where}.description", "BASE_TYPE_BAD_LENGTH", "Must be 1-100 long.")
    options = cmd.get("options") or []
    if len(options) > 25:
        raise form_error(f"{where}.options", "BASE_TYPE_MAX_LENGTH", "Max 25.")
    optional_seen = False
    for i, opt in enumerate(options):
        if opt.get("required") and optional_seen:
            raise form_error(
                f"{where}.options.{i}", "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", "Order"
            )
        optional_seen = optional_seen or not opt.get("required")
        check_command(opt, f"{where}.options.{i}", option=True)
