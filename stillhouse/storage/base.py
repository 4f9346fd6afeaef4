"""The storage interface and its key rules."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Protocol

from pydantic import BaseModel

from stillhouse.errors import InvalidKey

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,511}$")
_EXTENSION = re.compile(r"^[a-z0-9]{1,8}$")


class StoredObject(BaseModel):
    """What put() wrote."""

    key: str
    bucket: str
    content_type: str
    bytes: int
    sha256: str


class Storage(Protocol):
    """Put, get, sign and delete objects by key."""

    @property
    def bucket(self) -> str:
        """The bucket name (for the local folder: `local`)."""

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Write `data` under `key`."""

    def get(self, key: str) -> bytes:
        """Read the object; ObjectNotFound if missing."""

    def content_type(self, key: str) -> str:
        """The content type it was stored with."""

    def url(self, key: str, expires_s: int | None = None, *, for_workers: bool = False) -> str:
        """A time-limited URL anyone holding it can GET (signed for the workers' endpoint
        when they reach the store another way than people do)."""

    def delete(self, key: str) -> None:
        """Remove the object; missing is fine."""


def validate_key(key: str) -> str:
    """Refuse keys that could escape a prefix or folder (.., absolute, odd characters)."""
    if not _KEY.match(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"storage key not allowed: {key!r}")
    return key


def new_key(prefix: str, job_public_id: str, extension: str) -> str:
    """`<prefix><job>/<128 random bits>.<ext>`: nobody can guess another user's image."""
    if not _EXTENSION.match(extension):
        raise InvalidKey(f"file extension not allowed: {extension!r}")
    return validate_key(f"{prefix}{job_public_id}/{secrets.token_urlsafe(16)}.{extension}")


def describe(key: str, bucket: str, data: bytes, content_type: str) -> StoredObject:
    """The StoredObject for bytes just written."""
    return StoredObject(
        key=key,
        bucket=bucket,
        content_type=content_type,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
