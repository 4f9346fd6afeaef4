"""Message bodies: reading JSON or multipart, Discord's validation, creating and editing.

The checks are the ones a bot trips in production: empty messages, 2000-character content,
more than 10 files or embeds, uploads over the guild's limit, broken components, nonces
over 25 characters. Every create and edit leaves a `Revision` on the message.
"""

from __future__ import annotations

import re
from typing import Any

from tests.doubles.discord.events import store_upload
from tests.doubles.discord.state import EPHEMERAL, LOADING, Message, Revision, State
from tests.doubles.discord.wire import ApiError, Files, form_error

MENTION = re.compile(r"<@!?(\d+)>")
FLAGS_ALLOWED = EPHEMERAL | (1 << 2) | (1 << 12) | (1 << 15)  # + suppress embeds/notifs, v2
NONCE_MAX_LENGTH = 25


def check(payload: dict[str, Any], files: Files, upload_limit: int, *, creating: bool) -> None:
    """Discord's validation of a message create or edit."""
    content = payload.get("content")
    if content is not None and len(content) > 2000:
        raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    for i, embed in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            if len(embed.get(key) or "") > limit:
                raise form_error(f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH", f"Max {limit}.")
    if len(files) > 10 or len(payload.get("attachments") or []) > 10:
        raise form_error("attachments", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    if sum(len(data) for _, data in files.values()) > upload_limit:
        raise ApiError(413, 40005, "Request entity too large")
    check_components(payload.get("components") or [], payload.get("flags") or 0)
    empty = not (content or embeds or files or payload.get("components"))
    empty = empty and not (payload.get("sticker_ids") or payload.get("poll"))
    if creating and empty:
        raise ApiError(400, 50006, "Cannot send an empty message")


def check_components(rows: list[dict[str, Any]], flags: int) -> None:
    if not flags & (1 << 15) and len(rows) > 5:
        raise form_error("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    seen: set[str] = set()

    def walk(comps: list[dict[str, Any]], where: str) -> None:
        for i, comp in enumerate(comps):
            here = f"{where}.{i}"
            custom_id = comp.get("custom_id")
            if comp.get("type") == 2 and comp.get("style") not in (5, 6) and not custom_id:
                raise form_error(here, "COMPONENT_CUSTOM_ID_REQUIRED", "A custom id is required")
            if custom_id is not None:
                if len(custom_id) > 100:
                    raise form_error(f"{here}.custom_id", "BASE_TYPE_MAX_LENGTH", "Max 100.")
                if custom_id in seen:
                    raise form_error(here, "COMPONENT_CUSTOM_ID_DUPLICATED", "Duplicate id")
                seen.add(custom_id)
            if len(comp.get("label") or "") > 80:
                raise form_error(f"{here}.label", "BASE_TYPE_MAX_LENGTH", "Max 80.")
            children = comp.get("components") or []
            if comp.get("type") == 1 and len(children) > 5:
                raise form_error(f"{here}.components", "BASE_TYPE_MAX_LENGTH", "Max 5.")
            walk(children + ([comp["accessory"]] if "accessory" in comp else []), here)

    walk(rows, "components")


def mentioned(
    content: str, allowed: dict[str, Any] | None, replied_author: int | None
) -> list[int]:
    """The users a message pings: those in `content` that `allowed_mentions` lets through."""
    ids = [int(m) for m in MENTION.findall(content)]
    if allowed is not None and "users" not in (allowed.get("parse") or []):
        permitted = {int(u) for u in allowed.get("users") or []}
        ids = [i for i in ids if i in permitted]
    if replied_author is not None and (allowed is None or allowed.get("replied_user")):
        ids.append(replied_author)
    return list(dict.fromkeys(ids))


def apply(
    state: State, msg: Message, payload: dict[str, Any], files: Files, *, creating: bool
) -> None:
    """Write a create or edit payload onto a message (edits change only what they name)."""
    for key in ("content", "embeds", "components"):
        if key in payload:
            setattr(msg, key, payload[key] if payload[key] is not None else _empty(key))
    if not creating and payload.get("flags") is not None:
        keep = msg.flags & EPHEMERAL  # a message's ephemerality never changes after creation
        msg.flags = keep | (int(payload["flags"]) & FLAGS_ALLOWED & ~EPHEMERAL)
    if "allowed_mentions" in payload:
        msg.allowed_mentions = payload["allowed_mentions"]
    if payload.get("tts"):
        msg.tts = True
    _apply_attachments(state, msg, payload.get("attachments"), files)
    referenced = state.messages.get(int((msg.message_reference or {}).get("message_id") or 0))
    author = referenced.author_id if referenced is not None else None
    msg.mentions_user_ids = mentioned(msg.content, msg.allowed_mentions, author)


def _empty(key: str) -> Any:
    return "" if key == "content" else []


def _apply_attachments(
    state: State, msg: Message, listed: list[dict[str, Any]] | None, files: Files
) -> None:
    """`attachments` names what stays: existing ids, and new files by their part index."""
    if listed is None and not files:
        return
    existing = {a.id: a for a in msg.attachments}
    kept, used = [], set()
    entries: list[dict[str, Any]] = listed if listed is not None else [{"id": i} for i in files]
    for entry in entries:
        ref = int(entry["id"])
        if ref in existing:
            kept.append(existing[ref])
        elif ref in files:
            filename, data = files[ref]
            att = store_upload(state, msg.channel_id, entry.get("filename") or filename, data)
            att.description = entry.get("description")
            kept.append(att)
            used.add(ref)
        else:
            raise form_error("attachments", "ATTACHMENT_NOT_FOUND", f"Unknown attachment {ref}")
    for index in sorted(set(files) - used):  # files not listed are added all the same
        kept.append(store_upload(state, msg.channel_id, *files[index]))
    msg.attachments = kept


def check_nonce(payload: dict[str, Any]) -> None:
    """Create Message: a nonce is at most 25 characters (Discord's documented limit)."""
    nonce = payload.get("nonce")
    if nonce is not None and len(str(nonce)) > NONCE_MAX_LENGTH:
        message = f"Must be {NONCE_MAX_LENGTH} or fewer in length."
        raise form_error("nonce", "BASE_TYPE_MAX_LENGTH", message)


def earlier_with_nonce(state: State, channel_id: int, payload: dict[str, Any]) -> Message | None:
    """With `enforce_nonce`, the message the same author made with this nonce in this channel
    within `state.nonce_window_s` (deleted ones included: Discord then answers 10008)."""
    nonce = payload.get("nonce")
    if nonce is None or not payload.get("enforce_nonce"):
        return None
    msg = state.nonces.get((channel_id, state.bot_id, str(nonce)))
    if msg is None or msg.created_at < state.clock.now() - state.nonce_window_s:
        return None
    return msg


def component_ids(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """Every custom_id on a message, depth first: rows, containers, sections' accessories."""
    ids: list[str] = []
    for comp in rows:
        if comp.get("custom_id") is not None:
            ids.append(str(comp["custom_id"]))
        nested = list(comp.get("components") or [])
        if "accessory" in comp:
            nested.append(comp["accessory"])
        ids.extend(component_ids(nested))
    return tuple(ids)


def record_revision(msg: Message, at: float) -> None:
    """Keep what the message looks like now (the caller holds the state lock)."""
    names = tuple(a.filename for a in msg.attachments)
    msg._revisions.append(Revision(at, msg.content, names, component_ids(msg.components)))


def new_message(
    state: State,
    channel_id: int,
    guild_id: int | None,
    via: str,
    payload: dict[str, Any],
    files: Files,
    **fields: Any,
) -> Message:
    """Create and store a message from a create payload (`flags` may be given to override)."""
    fields.setdefault("flags", int(payload.get("flags") or 0) & FLAGS_ALLOWED)
    now = state.clock.now()
    msg = Message(
        state.ids.next(), channel_id, guild_id, state.bot_id, via, now, _cond=state.cond, **fields
    )
    msg.nonce = payload.get("nonce")
    apply(state, msg, payload, files, creating=True)
    record_revision(msg, now)
    state.messages[msg.id] = msg
    if msg.nonce is not None:
        state.nonces[(channel_id, msg.author_id, str(msg.nonce))] = msg
    return msg


def edit(state: State, msg: Message, payload: dict[str, Any], files: Files) -> None:
    apply(state, msg, payload, files, creating=False)
    msg.flags &= ~LOADING  # the first edit of a deferred response replaces "thinking…"
    msg.edits += 1
    msg.edited_at = state.clock.now()
    record_revision(msg, msg.edited_at)
