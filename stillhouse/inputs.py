"""Where a job's input images may come from: one rule, checked by the fronts when a request
is made (so a bad one is refused at once, not on a GPU) and by the worker again before it
fetches anything. No database here: the worker imports it.

An image URL must be on an allowed host: the configured ones plus our own store's
endpoint. An image given by storage key must be the caller's own, which its key says:

    <prefix><job public id>/<random>.png        a result of that job (storage.new_key)
    <prefix>uploads/<owner tag>/<random>.<ext>  an upload; owner tag: a hash of the user id

where <prefix> is STILLHOUSE_STORAGE__S3_PREFIX (the master's output prefix, any backend).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from stillhouse.config import StorageSettings, WorkerSettings
from stillhouse.errors import InvalidKey
from stillhouse.storage.base import validate_key

UPLOADS = "uploads"
UPLOAD_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")  # stillhouse.ids.new_public_id
_OWNER_TAG = re.compile(r"^[0-9a-f]{24}$")
_FILE = re.compile(r"^[A-Za-z0-9_-]{8,64}\.[a-z0-9]{1,8}$")


def allowed_hosts(worker: WorkerSettings, storage: StorageSettings) -> frozenset[str]:
    """Configured hosts plus the storage endpoint (earlier results come from there)."""
    hosts = {h.strip().lower() for h in worker.allowed_input_hosts.split(",") if h.strip()}
    hosts.add(storage_host(storage))
    if not storage.s3_endpoint_url and storage.s3_bucket:
        hosts.add(f"{storage.s3_bucket}.s3.{storage.s3_region}.amazonaws.com")
    return frozenset(h for h in hosts if h)


def storage_host(storage: StorageSettings) -> str:
    """The host presigned URLs of our own bucket point at."""
    if storage.s3_endpoint_url:
        return (urlsplit(storage.s3_endpoint_url).hostname or "").lower()
    return f"{storage.s3_bucket}.s3.amazonaws.com" if storage.s3_bucket else ""


def host_of(url: str) -> str:
    """The URL's host, lower-case ('' when it has none)."""
    return (urlsplit(url).hostname or "").lower()


def refused_source(url: str, hosts: frozenset[str]) -> str | None:
    """The sentence refusing an input at `url`, or None when its host is allowed."""
    host = host_of(url)
    if host in hosts:
        return None
    return f"input images may not come from {host or 'that address'}"


def owner_tag(user_id: int) -> str:
    """The folder of a user's uploads: the same user always gets the same tag, and the tag
    does not show the id. Ownership is the tag; the random file name keeps keys unguessable."""
    return hashlib.sha256(f"stillhouse-upload:{user_id}".encode()).hexdigest()[:24]


def upload_key(prefix: str, user_id: int, extension: str) -> str:
    """A new key for an upload of `user_id`."""
    name = f"{secrets.token_urlsafe(16)}.{extension}"
    return validate_key(f"{prefix}{UPLOADS}/{owner_tag(user_id)}/{name}")


@dataclass(frozen=True)
class ResultOf:
    """The key names a result of this job (its owner is the job's)."""

    job_id: str


@dataclass(frozen=True)
class UploadBy:
    """The key names an upload of the user with this owner tag."""

    tag: str


def key_origin(key: str, prefix: str) -> ResultOf | UploadBy | None:
    """Whose image the key claims to be, from its shape alone; None for any other key."""
    try:
        validate_key(key)
    except InvalidKey:
        return None
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix) :].split("/")
    if len(parts) == 3 and parts[0] == UPLOADS and _OWNER_TAG.match(parts[1]):
        return UploadBy(parts[1]) if _FILE.match(parts[2]) else None
    if len(parts) == 2 and _PUBLIC_ID.match(parts[0]) and _FILE.match(parts[1]):
        return ResultOf(parts[0])
    return None
