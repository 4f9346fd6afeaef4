"""Interaction callbacks and the interaction-token webhook (follow-ups, @original).

Neither needs Authorization. Discord's clock rules apply on the emulator clock: a callback
later than 3 s after the interaction is 10062, a second one is 40060; the token dies after
15 minutes (401, 50027). Until the interaction is acknowledged every token request
(follow-ups, GET/PATCH/DELETE of messages, @original included) answers 404 10015, as Discord
does; a deleted message (an @original too) answers 404 10008.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.doubles.discord import hooks, messages, payloads
from tests.doubles.discord.events import upload_limit
from tests.doubles.discord.gateway import Gateway
from tests.doubles.discord.state import EPHEMERAL, LOADING, Interaction, Message, State
from tests.doubles.discord.wire import (
    ApiError,
    Files,
    error,
    form_error,
    json_response,
    read_body,
)

ACK_DEADLINE_S = 3.0
TOKEN_LIFETIME_S = 15 * 60
# Which callback types each interaction type accepts (2 command, 3 component,
# 4 autocomplete, 5 modal submit).
CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


# A modal (callback 9): Discord's limits on its title, id and text inputs.
MODAL_TITLE_MAX = 45
MODAL_ROWS_MAX = 5
TEXT_LABEL_MAX = 45
TEXT_VALUE_MAX = 4000
PLACEHOLDER_MAX = 100


def check_modal(data: dict[str, Any]) -> None:
    """400 50035 for a modal Discord would refuse, naming the field as Discord does."""
    title, custom_id = data.get("title") or "", data.get("custom_id") or ""
    if not 1 <= len(title) <= MODAL_TITLE_MAX:
        raise form_error(
            "data.title", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length."
        )
    if not 1 <= len(custom_id) <= 100:
        raise form_error(
            "data.custom_id", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    rows = data.get("components") or []
    if not 1 <= len(rows) <= MODAL_ROWS_MAX:
        raise form_error(
            "data.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
        )
    for r, row in enumerate(rows):
        inputs = row.get("components") or []
        if row.get("type") != 1 or len(inputs) != 1 or inputs[0].get("type") != 4:
            raise form_error(
                f"data.components.{r}", "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "One text input a row."
            )
        item = inputs[0]
        where = f"data.components.{r}.components.0"
        if not 1 <= len(item.get("label") or "") <= TEXT_LABEL_MAX:
            raise form_error(
                f"{where}.label", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length."
            )
        if len(item.get("value") or "") > TEXT_VALUE_MAX:
            raise form_error(
                f"{where}.value", "BASE_TYPE_MAX_LENGTH", "Must be 4000 or fewer in length."
            )
        if len(item.get("placeholder") or "") > PLACEHOLDER_MAX:
            raise form_error(
                f"{where}.placeholder", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."
            )
        if item.get("style") not in (1, 2):
            raise form_error(f"{where}.style", "BASE_TYPE_CHOICES", "Must be one of (1, 2).")


class Webhooks:
    def __init__(self, state: State, gateway: Gateway) -> None:
        self.state = state
        self.gateway = gateway

    def routes(self, base: str) -> list[web.RouteDef]:
        hook = f"{base}/webhooks/{{app}}/{{token}}"
        return [
            web.post(f"{base}/interactions/{{id}}/{{token}}/callback", self.callback),
            web.post(hook, self.followup),
            web.get(f"{hook}/messages/{{message}}", self.get_message),
            web.patch(f"{hook}/messages/{{message}}", self.edit_message),
            web.delete(f"{hook}/messages/{{message}}", self.delete_message),
        ]

    # -- the callback ----------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        body, files = await read_body(request)
        raw_id = request.match_info["id"]
        ix = self.state.interactions.get(int(raw_id)) if raw_id.isdigit() else None
        if ix is None or ix.token != request.match_info["token"]:
            raise error("unknown_interaction")
        kind, data = body.get("type"), body.get("data") or {}
        with self.state.cond:
            if ix.response is not None:
                raise error("already_acknowledged")
            if self.state.clock.now() - ix.created_at > ACK_DEADLINE_S:
                raise error("unknown_interaction")
            if kind not in CALLBACKS.get(ix.type, set()):
                allowed = sorted(CALLBACKS.get(ix.type, set()))
                problem = {"code": "BASE_TYPE_CHOICES", "message": f"Must be one of {allowed}."}
                raise ApiError(400, 50035, "Invalid Form Body", {"type": {"_errors": [problem]}})
        if kind in (4, 7):
            limit = upload_limit(self.state, ix.guild_id)
            messages.check(data, files, limit, creating=kind == 4)
        if kind == 8 and len(data.get("choices") or []) > 25:
            raise form_error("data.choices", "BASE_TYPE_MAX_LENGTH", "Max 25.")
        if kind == 9:
            check_modal(data)
        with self.state.cond:
            event, msg = self._respond(ix, kind, data, files)
            ix.response = {"type": kind, "data": data}
            ix.responded_at = self.state.clock.now()
            answer = self._answer(ix, kind, msg)
            self.state.cond.notify_all()
        if event is not None and msg is not None and not msg.ephemeral:
            await self.gateway.message_event(ix.guild_id, event, payloads.message(self.state, msg))
        if msg is not None and kind in (4, 5, 7):
            hooks.fire(self.state, "callback", request, msg, ix)
        return json_response(answer)

    def _respond(
        self, ix: Interaction, kind: int, data: dict[str, Any], files: Files
    ) -> tuple[str | None, Message | None]:
        """Apply a callback: (gateway event it causes, the message it made or changed)."""
        clicked = self.state.messages.get(ix.message_id or 0)
        if kind in (4, 5):
            fields: dict[str, Any] = {}
            if kind == 5:  # "thinking…": an empty message with the LOADING flag
                fields["flags"] = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
                data, files = {}, {}
            ix.original = messages.new_message(
                self.state,
                ix.channel_id,
                ix.guild_id,
                "callback",
                data,
                files,
                interaction_id=ix.id,
                webhook_id=self.state.app_id,
                type=20 if ix.type == 2 else 0,
                **fields,
            )
            return "MESSAGE_CREATE", ix.original
        if kind in (6, 7) and clicked is not None:
            ix.original = clicked  # for a component, @original is the message it is on
            if kind == 7:
                messages.edit(self.state, clicked, data, files)
                return "MESSAGE_UPDATE", clicked
        return None, None

    def _answer(self, ix: Interaction, kind: int, msg: Message | None) -> dict[str, Any]:
        """The `with_response=1` body discord.py 2.5+ parses."""
        meta: dict[str, Any] = {"id": str(ix.id), "type": ix.type}
        answer: dict[str, Any] = {"interaction": meta}
        if msg is not None:
            meta["response_message_id"] = str(msg.id)
            meta["response_message_loading"] = kind == 5
            meta["response_message_ephemeral"] = msg.ephemeral
            answer["resource"] = {"type": kind, "message": payloads.message(self.state, msg)}
        return answer

    # -- the token webhook -----------------------------------------------------------------

    def _interaction(self, request: web.Request) -> Interaction:
        ix = self.state.by_token.get(request.match_info["token"])
        if ix is None or request.match_info["app"] != str(self.state.app_id):
            raise error("unknown_webhook")
        if self.state.clock.now() - ix.created_at > TOKEN_LIFETIME_S:
            raise error("invalid_webhook_token")
        if ix.response is None:
            raise error("unknown_webhook")  # the token works only once acknowledged
        return ix

    def _message(self, request: web.Request) -> tuple[Interaction, Message]:
        ix = self._interaction(request)
        ref = request.match_info["message"]
        ours = [ix.original, *ix.followups]
        if ref == "@original":
            msg = ix.original
        else:
            msg = next((m for m in ours if m is not None and str(m.id) == ref), None)
        if msg is None or msg.deleted:
            raise error("unknown_message")
        return ix, msg

    async def followup(self, request: web.Request) -> web.Response:
        ix = self._interaction(request)
        payload, files = await read_body(request)
        messages.check(payload, files, upload_limit(self.state, ix.guild_id), creating=True)
        with self.state.cond:
            original = ix.original
            if original is not None and original.flags & LOADING and original.via == "callback":
                # Discord: the first follow-up after a deferral edits the "thinking" message
                # (keeping its ephemerality) instead of creating a new one.
                messages.edit(self.state, original, payload, files)
                msg, event = original, "MESSAGE_UPDATE"
            else:
                msg = messages.new_message(
                    self.state,
                    ix.channel_id,
                    ix.guild_id,
                    "followup",
                    payload,
                    files,
                    interaction_id=ix.id,
                    webhook_id=self.state.app_id,
                    type=20 if ix.type == 2 else 0,
                )
                ix._followups.append(msg)
                event = "MESSAGE_CREATE"
            body = payloads.message(self.state, msg)
            self.state.cond.notify_all()
        if not msg.ephemeral:
            await self.gateway.message_event(ix.guild_id, event, body)
        hooks.fire(self.state, "followup", request, msg, ix)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(body)
        return web.Response(status=204)

    async def get_message(self, request: web.Request) -> web.Response:
        _, msg = self._message(request)
        with self.state.cond:
            return json_response(payloads.message(self.state, msg))

    async def edit_message(self, request: web.Request) -> web.Response:
        ix, msg = self._message(request)
        payload, files = await read_body(request)
        messages.check(payload, files, upload_limit(self.state, ix.guild_id), creating=False)
        with self.state.cond:
            messages.edit(self.state, msg, payload, files)
            body = payloads.message(self.state, msg)
            self.state.cond.notify_all()
        if not msg.ephemeral:
            await self.gateway.message_event(ix.guild_id, "MESSAGE_UPDATE", body)
        hooks.fire(self.state, "webhook_edit", request, msg, ix)
        return json_response(body)

    async def delete_message(self, request: web.Request) -> web.Response:
        ix, msg = self._message(request)
        with self.state.cond:
            msg.deleted = True
            self.state.cond.notify_all()
        if not msg.ephemeral:
            gone = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                gone["guild_id"] = str(msg.guild_id)
            await self.gateway.message_event(ix.guild_id, "MESSAGE_DELETE", gone)
        return web.Response(status=204)
