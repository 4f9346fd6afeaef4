"""Vary Region's links: a signed, time-limited address of the mask editor in the web app
for one image of one Discord result, handed by the bot to the user who pressed the button.

The token carries what the web app must know to answer in Discord as /serve would: the
job and image, the user, the guild, channel and shard, whether the channel is
age-restricted, and when the link stops working. It is JSON in base64url followed by an
HMAC-SHA256 of it under STILLHOUSE_API__EDIT_LINK_SECRET, so any change (another job,
another user, a later expiry) breaks the signature. Without a secret the feature is off:
no link is made and none is accepted.

No database here: the bot and the API both import it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stillhouse.config import ApiSettings, Settings
from stillhouse.errors import StillhouseError
from stillhouse.inputs import UPLOADS, owner_tag
from stillhouse.storage.base import validate_key

EDIT_PATH = "/edit"
TOKEN_MAX = 512  # a Discord link button's URL holds 512 characters; ours stay far below
_DOMAIN = b"stillhouse-edit-link:v1\n"  # the secret signs these links and nothing else
_CARRIED = ("negative_prompt",)  # besides the checkpoint, kept from the source when both take it

Refused = Literal["off", "invalid", "expired"]
SENTENCES: dict[Refused, str] = {
    "off": "Vary Region is not switched on here.",
    "invalid": "This link is not valid: press Vary Region under the image in Discord again.",
    "expired": "This link has expired: press Vary Region under the image in Discord for a new one.",
}


class LinkRefused(StillhouseError):
    """A link that opens nothing: the feature is off, the token is not ours (forged,
    tampered, cut short) or it has expired. The message is for the user."""

    def __init__(self, why: Refused) -> None:
        super().__init__(SENTENCES[why])
        self.why: Refused = why


class EditGrant(BaseModel):
    """What a valid link allows: one user to repaint a region of one image of one job,
    answered in the channel the button was pressed in, until `expires` (Unix seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str = Field(pattern=r"^[A-Za-z0-9_-]{16}$", description="the job's public id")
    index: int = Field(ge=0, le=15, description="which of its images")
    user: int
    guild: int | None = None
    channel: int | None = None
    shard: int | None = Field(default=None, ge=0)
    adult: bool = Field(default=False, description="the channel is age-restricted")
    expires: int

    def expires_at(self) -> datetime:
        """When the link stops working."""
        return datetime.fromtimestamp(self.expires, UTC)


def edit_link(
    settings: Settings,
    job_public_id: str,
    index: int,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    shard_id: int | None,
    *,
    age_restricted: bool = False,
    now: float | None = None,
) -> str | None:
    """The mask editor's address for image `index` of the job, for `user_id` (who pressed
    the button) to answer in that channel; None when Vary Region is off (no secret).
    `age_restricted`: whether the channel is (else the prompt may not use adult words)."""
    api = settings.api
    if api.edit_link_secret is None:
        return None
    grant = EditGrant(
        job=job_public_id,
        index=index,
        user=user_id,
        guild=guild_id,
        channel=channel_id,
        shard=shard_id,
        adult=age_restricted,
        expires=int(now if now is not None else time.time()) + api.edit_link_lifetime_s,
    )
    return f"{api.base_url()}{EDIT_PATH}/{make_token(api, grant)}"


def make_token(api: ApiSettings, grant: EditGrant) -> str:
    """The signed token of a grant (the last part of the link)."""
    payload = _b64(grant.model_dump_json(exclude_defaults=True).encode())
    return f"{payload}.{_b64(_signature(_key(api), payload))}"


def read_token(api: ApiSettings, token: str, *, now: float | None = None) -> EditGrant:
    """The grant a token carries; LinkRefused when the feature is off, the token was not
    signed with our secret for exactly this grant, or it has expired."""
    key = _key(api)
    payload, dot, signature = token.partition(".")
    if not dot or len(token) > TOKEN_MAX:
        raise LinkRefused("invalid")
    given = _unb64(signature)
    if given is None or _b64(given) != signature:  # one spelling per token
        raise LinkRefused("invalid")
    if not hmac.compare_digest(given, _signature(key, payload)):
        raise LinkRefused("invalid")
    raw = _unb64(payload)
    try:
        grant = EditGrant.model_validate_json(raw or b"")
    except ValidationError:  # signed by us, so only an older format can get here
        raise LinkRefused("invalid") from None
    if grant.expires <= (now if now is not None else time.time()):
        raise LinkRefused("expired")
    return grant


def submission_digest(token: str, prompt: str, mask_png: bytes) -> bytes:
    """What one submission is: the link, the prompt and the mask. Sending the same
    again (a double click, a retry) is the same request."""
    parts = (token.encode(), prompt.encode(), hashlib.sha256(mask_png).digest())
    return hashlib.sha256(b"\0".join(parts)).digest()


def submission_id(digest: bytes) -> int:
    """The request id of a submission (negative, like the API's, so it never meets a
    Discord interaction id)."""
    return -(int.from_bytes(hashlib.sha256(b"edit:" + digest).digest()[:7], "big") + 1)


def mask_key(prefix: str, user_id: int, digest: bytes) -> str:
    """Where a submission's mask is stored: among the user's uploads (so the intake takes
    it as theirs), named for the submission, so a repeat writes the same object."""
    name = f"mask-{digest.hex()[:32]}.png"
    return validate_key(f"{prefix}{UPLOADS}/{owner_tag(user_id)}/{name}")


def _key(api: ApiSettings) -> bytes:
    if api.edit_link_secret is None:
        raise LinkRefused("off")
    return api.edit_link_secret.get_secret_value().encode()


def _signature(key: bytes, payload: str) -> bytes:
    return hmac.new(key, _DOMAIN + payload.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    if not text.isascii():
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
