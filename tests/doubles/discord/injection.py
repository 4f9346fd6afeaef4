"""Injecting what users do: slash commands, autocomplete, button clicks, select menus.

Each call is thread-safe and returns the `Interaction` record at once; the INTERACTION_CREATE
goes to the gateway sessions whose shard handles the guild.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from tests.doubles.discord import events, messages
from tests.doubles.discord.gateway import Gateway
from tests.doubles.discord.state import AttachmentSpec, Interaction, Message, State

T = TypeVar("T")


class Injector:
    """Mixed into `DiscordEmulator`, which owns the state, gateway and loop."""

    state: State
    _gateway: Gateway | None
    _loop: asyncio.AbstractEventLoop | None
    # The gateway (or the bot's reading of it) running late: each INTERACTION_CREATE
    # reaches the bot this long after the interaction was made; Discord's 3 s still
    # count from its making.
    interaction_lag_s: float = 0.0

    def slash_command(
        self,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        name: str,
        *,
        subcommand: str | None = None,
        options: Mapping[str, events.OptionValue] | None = None,
        attachments: Mapping[str, AttachmentSpec] | None = None,
    ) -> Interaction:
        """A user runs /name [subcommand | "group subcommand"] with options (checked against
        the synced command: an unknown command or option raises here)."""
        with self.state.cond:
            ch = self._channel_for(guild_id, channel_id, user_id)
            data = events.command_data(
                self.state,
                guild_id,
                ch.id,
                name,
                subcommand=subcommand,
                options=dict(options or {}),
                attachments=dict(attachments or {}),
            )
            ix = events.new_interaction(self.state, 2, guild_id, ch, user_id, data, name=name)
        return self._deliver(ix)

    def autocomplete(
        self,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        name: str,
        *,
        focused: str,
        value: str = "",
        subcommand: str | None = None,
        options: Mapping[str, events.OptionValue] | None = None,
    ) -> Interaction:
        """A user types `value` into option `focused`; the bot answers with callback type 8."""
        with self.state.cond:
            ch = self._channel_for(guild_id, channel_id, user_id)
            data = events.command_data(
                self.state,
                guild_id,
                ch.id,
                name,
                subcommand=subcommand,
                options=dict(options or {}),
                attachments={},
                focused=focused,
                focused_value=value,
            )
            ix = events.new_interaction(self.state, 4, guild_id, ch, user_id, data, name=name)
        return self._deliver(ix)

    def click(self, message: Message, custom_id: str, user_id: int) -> Interaction:
        """A user clicks the button `custom_id` on a message."""
        return self._component(message, custom_id, user_id, None)

    def select(
        self, message: Message, custom_id: str, values: list[str], user_id: int
    ) -> Interaction:
        """A user picks `values` in the select menu `custom_id`."""
        return self._component(message, custom_id, user_id, values)

    def _component(
        self, message: Message, custom_id: str, user_id: int, values: list[str] | None
    ) -> Interaction:
        with self.state.cond:
            msg = self.state.messages[message.id]
            comp = events.find_component(msg.components, custom_id)
            if msg.deleted or comp is None:
                raise LookupError(f"no component {custom_id!r} on message {msg.id}")
            if comp.get("disabled"):
                raise ValueError(f"component {custom_id!r} is disabled: no one can use it")
            if (values is None) != (comp["type"] == 2):
                raise ValueError(f"component {custom_id!r} has type {comp['type']}")
            data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
            if values is not None:
                data["values"] = values
            ch = self.state.channels[msg.channel_id]
            ix = events.new_interaction(
                self.state, 3, msg.guild_id, ch, user_id, data, name=custom_id, message=msg
            )
        return self._deliver(ix)

    def submit_form(
        self, shown: Interaction, user_id: int, values: Mapping[str, str] | None = None
    ) -> Interaction:
        """The user sends the form (modal) the bot answered `shown` with: each text input
        holds its prefilled value unless `values` (by the input's custom id) says
        otherwise. Raises if `shown` was not answered with a form."""
        response = shown.wait_response()
        if response.get("type") != 9:
            raise ValueError(f"interaction {shown.name!r} was answered with {response.get('type')}")
        form = response["data"]
        typed = dict(values or {})
        rows = []
        for row in form["components"]:
            item = row["components"][0]
            value = typed.pop(item["custom_id"], item.get("value") or "")
            rows.append({"type": 1, "components": [
                {"type": 4, "custom_id": item["custom_id"], "value": value}
            ]})  # fmt: skip
        if typed:
            raise LookupError(f"the form has no inputs {sorted(typed)}")
        data = {"custom_id": form["custom_id"], "components": rows}
        with self.state.cond:
            ch = self.state.channels.get(shown.channel_id) or self.state.dm_channel(
                user_id, shown.channel_id
            )
            message = self.state.messages.get(shown.message_id or 0)
            ix = events.new_interaction(
                self.state,
                5,
                shown.guild_id,
                ch,
                user_id,
                data,
                name=form["custom_id"],
                message=message,
            )
        return self._deliver(ix)

    def chatter(self, channel_id: int, count: int) -> list[Message]:
        """`count` messages of the bot's in a channel, as a busy channel fills with other
        requests' answers (no gateway events)."""
        with self.state.cond:
            ch = self.state.channels[channel_id]
            return [
                messages.new_message(
                    self.state, ch.id, ch.guild_id, "channel", {"content": f"other {n}"}, {}
                )
                for n in range(count)
            ]

    def _channel_for(self, guild_id: int | None, channel_id: int, user_id: int) -> Any:
        if guild_id is None:
            return self.state.dm_channel(user_id, channel_id)
        ch = self.state.channels.get(channel_id)
        if guild_id not in self.state.guilds or ch is None or ch.guild_id != guild_id:
            raise LookupError(f"channel {channel_id} is not a channel of guild {guild_id}")
        return ch

    def _deliver(self, ix: Interaction) -> Interaction:
        assert self._gateway is not None, "start() the emulator first"
        dispatch = self._gateway.dispatch(ix.guild_id, "INTERACTION_CREATE", ix.payload)
        if self.interaction_lag_s <= 0:
            self._call(dispatch)
        else:
            assert self._loop is not None
            asyncio.run_coroutine_threadsafe(self._late(dispatch), self._loop)
        return ix

    async def _late(self, dispatch: Coroutine[Any, Any, None]) -> None:
        await asyncio.sleep(self.interaction_lag_s)  # the simulated lag itself
        await dispatch

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)
