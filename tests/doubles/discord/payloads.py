"""The JSON objects the emulator sends, shaped as Discord's API v10 sends them.

Optional fields discord.py reads with `.get` are filled too, so a bot that reads them
sees what Discord would send rather than a default.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.doubles.discord.state import (
    BASIC_PERMISSIONS,
    MANAGE_GUILD,
    READ_MESSAGE_HISTORY,
    VIEW_CHANNEL,
    Attachment,
    Channel,
    Guild,
    Interaction,
    Message,
    State,
)


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def user(user_id: int, *, bot: bool = False) -> dict[str, Any]:
    name = "stillhouse" if bot else f"user{user_id % 100_000}"
    return {
        "id": str(user_id),
        "username": name,
        "global_name": None if bot else name.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
    }


def bot_user(state: State) -> dict[str, Any]:
    return {**user(state.bot_id, bot=True), "verified": True, "mfa_enabled": False, "email": None}


def application(state: State, owner_id: int) -> dict[str, Any]:
    return {
        "id": str(state.app_id),
        "name": "stillhouse",
        "icon": None,
        "description": "",
        "summary": "",
        "type": None,
        "rpc_origins": [],
        "bot_public": True,
        "bot_require_code_grant": False,
        "bot": bot_user(state),
        "owner": user(owner_id),
        "team": None,
        "verify_key": "0" * 64,
        "flags": 0,
        "tags": [],
        "approximate_guild_count": len(state.guilds),
        "integration_types_config": {"0": {}},
    }


def role(role_id: int, name: str, permissions: int, position: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
        **extra,
    }


def roles(state: State, guild: Guild) -> list[dict[str, Any]]:
    return [
        role(guild.id, "@everyone", BASIC_PERMISSIONS, 0),
        role(guild.admin_role_id, "Admins", BASIC_PERMISSIONS | MANAGE_GUILD, 1),
        role(
            guild.bot_role_id,
            "stillhouse",
            BASIC_PERMISSIONS,
            2,
            managed=True,
            tags={"bot_id": str(state.bot_id)},
        ),
        *(
            role(role_id, f"role-{role_id}", 0, 3 + n)
            for n, role_id in enumerate(guild.spec.role_members)
        ),
    ]


def member_roles(state: State, guild: Guild, user_id: int) -> list[str]:
    if user_id == state.bot_id:
        return [str(guild.bot_role_id)]
    extra = [str(r) for r, members in guild.spec.role_members.items() if user_id in members]
    return ([str(guild.admin_role_id)] if user_id in guild.spec.admin_ids else []) + extra


def member(state: State, guild: Guild, user_id: int) -> dict[str, Any]:
    return {
        "user": bot_user(state) if user_id == state.bot_id else user(user_id),
        "roles": member_roles(state, guild, user_id),
        "joined_at": iso(guild.joined_at),
        "nick": None,
        "avatar": None,
        "banner": None,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
    }


def channel(state: State, ch: Channel) -> dict[str, Any]:
    if ch.guild_id is None:
        return {
            "id": str(ch.id),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [user(ch.recipient_id or 0)],
        }
    # What the bot is denied here, as an overwrite, so discord.py's permissions_for agrees
    # with the 403s: no View Channel is 50001; no Read Message History hides the history.
    deny = (0 if ch.accessible else VIEW_CHANNEL) | (
        0 if ch.history_readable else READ_MESSAGE_HISTORY
    )
    overwrites = []
    if deny:
        overwrites.append({"id": str(state.bot_id), "type": 1, "allow": "0", "deny": str(deny)})
    return {
        "id": str(ch.id),
        "type": 0,
        "guild_id": str(ch.guild_id),
        "name": ch.name,
        "position": ch.position,
        "parent_id": None,
        "permission_overwrites": overwrites,
        "topic": None,
        "nsfw": ch.nsfw,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def guild_base(state: State, guild: Guild) -> dict[str, Any]:
    spec = guild.spec
    return {
        "id": str(spec.id),
        "name": spec.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(spec.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "vanity_url_code": None,
        "application_id": None,
        "max_members": 500_000,
        "max_video_channel_users": 25,
        "features": [],
        "roles": roles(state, guild),
        "emojis": [],
        "stickers": [],
    }


def guild_create(state: State, guild: Guild, *, with_members: bool) -> dict[str, Any]:
    """GUILD_CREATE: without the members intent Discord sends only the bot's own member."""
    ids = guild.member_ids(state.bot_id)
    channels = [c for c in state.channels.values() if c.guild_id == guild.id]
    return {
        **guild_base(state, guild),
        "unavailable": False,
        "large": False,
        "member_count": len(ids),
        "joined_at": iso(guild.joined_at),
        "channels": [channel(state, c) for c in sorted(channels, key=lambda c: c.position)],
        "members": [member(state, guild, m) for m in (ids if with_members else ids[:1])],
        "threads": [],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def attachment(att: Attachment, *, ephemeral: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(att.id),
        "filename": att.filename,
        "size": att.size,
        "url": att.url,
        "proxy_url": att.url,
        "content_type": att.content_type,
    }
    if att.description is not None:
        body["description"] = att.description
    if ephemeral:
        body["ephemeral"] = True
    return body


def message(state: State, msg: Message) -> dict[str, Any]:
    author = bot_user(state) if msg.author_id == state.bot_id else user(msg.author_id)
    body: dict[str, Any] = {
        "id": str(msg.id),
        "channel_id": str(msg.channel_id),
        "type": msg.type,
        "author": author,
        "content": msg.content,
        "timestamp": iso(msg.created_at),
        "edited_timestamp": iso(msg.edited_at),
        "tts": msg.tts,
        "mention_everyone": False,
        "mentions": [user(uid) for uid in msg.mentions_user_ids],
        "mention_roles": [],
        "attachments": [attachment(a, ephemeral=msg.ephemeral) for a in msg.attachments],
        "embeds": msg.embeds,
        "components": msg.components,
        "flags": msg.flags,
        "pinned": False,
        "reactions": [],
    }
    if msg.guild_id is not None:
        body["guild_id"] = str(msg.guild_id)
    if msg.nonce is not None:
        body["nonce"] = msg.nonce
    if msg.message_reference is not None:
        body["message_reference"] = msg.message_reference
    if msg.webhook_id is not None:
        body["webhook_id"] = str(msg.webhook_id)
        body["application_id"] = str(state.app_id)
    ix = state.interactions.get(msg.interaction_id or 0)
    if ix is not None:
        body["interaction_metadata"] = interaction_metadata(state, ix, msg)
    return body


def interaction_metadata(state: State, ix: Interaction, msg: Message) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": str(ix.id),
        "type": ix.type,
        "user": user(ix.user_id),
        "authorizing_integration_owners": owners(ix.guild_id),
    }
    if ix.type == 2:
        meta["name"] = ix.name
        meta["command_type"] = 1
    if ix.message_id is not None:
        meta["interacted_message_id"] = str(ix.message_id)
    if ix.original is not None and ix.original is not msg:
        meta["original_response_message_id"] = str(ix.original.id)
    return meta


def owners(guild_id: int | None) -> dict[str, str]:
    """Installed to a guild ("0": the guild id); DMs come through the user install ("1")."""
    return {"0": str(guild_id)} if guild_id is not None else {"1": "0"}
