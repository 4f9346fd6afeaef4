"""INTERACTION_CREATE payloads for what a test injects: slash commands, autocomplete, clicks.

A user can only invoke a command Discord knows, with the options it declares, so a command
the bot never synced (or an option it does not declare) fails here, loudly, in the test.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from tests.doubles.discord import payloads
from tests.doubles.discord.state import (
    BASIC_PERMISSIONS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Attachment,
    AttachmentSpec,
    Channel,
    Interaction,
    Message,
    State,
)

OptionValue = str | int | float | bool
TYPE_OF = {bool: 5, int: 4, float: 10, str: 3}
FITS = {3: (str,), 4: (int,), 5: (bool,), 10: (int, float), 6: (int,), 7: (int,), 8: (int,)}


def find_command(state: State, guild_id: int | None, name: str) -> tuple[dict[str, Any], bool]:
    """The synced chat-input command a user would see here: the guild's first, then global."""
    for scope in ([guild_id] if guild_id is not None else []) + [None]:
        for cmd in state.commands.get(scope, []):
            if cmd["name"] == name and cmd.get("type", 1) == 1:
                return cmd, scope is not None
    raise LookupError(f"/{name} is not a synced command here: did the bot call tree.sync()?")


def _schema(options: list[dict[str, Any]], name: str, types: tuple[int, ...]) -> dict[str, Any]:
    for opt in options:
        if opt["name"] == name and opt.get("type") in types:
            return opt
    raise LookupError(f"the command declares no option {name!r} of type {types}")


def _walk_subcommand(
    cmd: dict[str, Any], subcommand: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(top-level options, where values go, the schema there) for "sub" or "group sub"."""
    top: list[dict[str, Any]] = []
    here, schema = top, cmd.get("options", [])
    for part in (subcommand or "").split():
        node_schema = _schema(schema, part, (1, 2))
        node: dict[str, Any] = {"name": part, "type": node_schema["type"], "options": []}
        here.append(node)
        here, schema = node["options"], node_schema.get("options", [])
    if any(opt.get("type") in (1, 2) for opt in schema):
        raise LookupError(f"/{cmd['name']} {subcommand or ''} needs a subcommand")
    return top, here, schema


def _value(state: State, opt: dict[str, Any], value: OptionValue, resolved: dict[str, Any]) -> Any:
    kind = opt["type"]
    if not isinstance(value, FITS.get(kind, ())) or (kind != 5 and isinstance(value, bool)):
        raise TypeError(f"option {opt['name']!r} has type {kind}; got {value!r}")
    if kind == 6:  # a user: Discord resolves it
        resolved.setdefault("users", {})[str(value)] = payloads.user(int(value))
        return str(value)
    if kind == 8:  # a role of the guild the command came from: Discord resolves it
        resolved.setdefault("roles", {})[str(value)] = payloads.role(
            int(value), f"role-{value}", 0, 3
        )
        return str(value)
    if kind == 7:
        ch = state.channels[int(value)]
        resolved.setdefault("channels", {})[str(value)] = {
            "id": str(ch.id),
            "name": ch.name,
            "type": ch.type,
            "permissions": str(BASIC_PERMISSIONS),
        }
        return str(value)
    return value


def command_data(
    state: State,
    guild_id: int | None,
    channel_id: int,
    name: str,
    *,
    subcommand: str | None,
    options: dict[str, OptionValue],
    attachments: dict[str, AttachmentSpec],
    focused: str | None = None,
    focused_value: str = "",
) -> dict[str, Any]:
    """`data` of a command or autocomplete interaction, checked against the synced schema."""
    cmd, guild_scoped = find_command(state, guild_id, name)
    top, here, schema = _walk_subcommand(cmd, subcommand)
    resolved: dict[str, Any] = {}
    for opt_name, value in options.items():
        opt = _schema(schema, opt_name, tuple(FITS))
        here.append(
            {"name": opt_name, "type": opt["type"], "value": _value(state, opt, value, resolved)}
        )
    for opt_name, spec in attachments.items():
        _schema(schema, opt_name, (11,))
        att = store_upload(state, channel_id, spec.filename, spec.data, spec.content_type)
        here.append({"name": opt_name, "type": 11, "value": str(att.id)})
        resolved.setdefault("attachments", {})[str(att.id)] = payloads.attachment(
            att, ephemeral=True
        )
    if focused is not None:
        opt = _schema(schema, focused, (3, 4, 10))
        if not opt.get("autocomplete"):
            raise LookupError(f"option {focused!r} of /{name} has no autocomplete")
        here.append({"name": focused, "type": opt["type"], "value": focused_value, "focused": True})
    else:
        given = {o["name"] for o in here}
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in given]
        if missing:
            raise ValueError(f"/{name} requires options {missing}")
    data: dict[str, Any] = {"id": cmd["id"], "name": name, "type": 1, "options": top}
    if resolved:
        data["resolved"] = resolved
    if guild_scoped:
        data["guild_id"] = str(guild_id)
    return data


def store_upload(
    state: State, channel_id: int, filename: str, data: bytes, content_type: str | None = None
) -> Attachment:
    """Keep a file and give it a URL the emulator serves (Discord's CDN)."""
    att_id = state.ids.next()
    guessed = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    url = f"{state.base_url}/attachments/{channel_id}/{att_id}/{filename}"
    att = Attachment(att_id, filename, content_type or guessed, data, url)
    state.attachments[att_id] = att
    return att


def find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    """The component with `custom_id`, anywhere in rows, containers, sections."""
    for comp in components:
        if comp.get("custom_id") == custom_id:
            return comp
        nested = list(comp.get("components", []))
        if "accessory" in comp:
            nested.append(comp["accessory"])
        found = find_component(nested, custom_id)
        if found is not None:
            return found
    return None


def new_interaction(
    state: State,
    kind: int,
    guild_id: int | None,
    ch: Channel,
    user_id: int,
    data: dict[str, Any],
    *,
    name: str,
    message: Message | None = None,
) -> Interaction:
    """Register an interaction and build its INTERACTION_CREATE payload."""
    ix_id, token = state.ids.next(), next(state.tokens)
    body: dict[str, Any] = {
        "id": str(ix_id),
        "application_id": str(state.app_id),
        "type": kind,
        "token": token,
        "version": 1,
        "data": data,
        "channel_id": str(ch.id),
        "channel": payloads.channel(state, ch),
        "locale": "en-US",
        "entitlements": [],
        "entitlement_sku_ids": [],
        "authorizing_integration_owners": payloads.owners(guild_id),
        "context": 0 if guild_id is not None else 1,
        "attachment_size_limit": upload_limit(state, guild_id),
        "app_permissions": str(app_permissions(state, ch)),
    }
    if guild_id is not None:
        guild = state.guilds[guild_id]
        body["guild_id"] = str(guild_id)
        body["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
        body["guild_locale"] = "en-US"
        body["member"] = {
            **payloads.member(state, guild, user_id),
            "permissions": str(guild.permissions(user_id)),
        }
    else:
        body["user"] = payloads.user(user_id)
    if message is not None:
        body["message"] = payloads.message(state, message)
    ix = Interaction(
        ix_id,
        token,
        kind,
        guild_id,
        ch.id,
        user_id,
        state.clock.now(),
        name,
        body,
        state.cond,
        message_id=message.id if message is not None else None,
    )
    state.interactions[ix_id] = ix
    state.by_token[token] = ix
    return ix


def upload_limit(state: State, guild_id: int | None) -> int:
    return state.guilds[guild_id].spec.upload_limit if guild_id is not None else 10 * 2**20


def app_permissions(state: State, ch: Channel) -> int:
    perms = BASIC_PERMISSIONS
    if not ch.history_readable:
        perms &= ~READ_MESSAGE_HISTORY
    return perms if ch.accessible else perms & ~(VIEW_CHANNEL | SEND_MESSAGES)
