"""A local folder as storage, with HMAC-signed, expiring URLs (served by local_http)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from stillhouse.config import StorageSettings
from stillhouse.errors import BadSignature, InvalidKey, ObjectNotFound
from stillhouse.storage.base import StoredObject, describe, validate_key

_TYPE_SUFFIX = ".content-type"


class LocalStorage:
    """Objects as files under one root folder."""

    def __init__(self, root: Path, settings: StorageSettings) -> None:
        self._root = root.resolve()
        self._root.mkdir(parents=True, exist_ok=True)
        self._base_url = settings.public_base_url.rstrip("/")
        self._expiry = settings.url_expiry_s
        configured = settings.signing_key
        self._signing_key = (
            configured.get_secret_value().encode() if configured else self._folder_key()
        )

    @property
    def bucket(self) -> str:
        return "local"

    @property
    def url_path(self) -> str:
        """The path under which signed URLs point (e.g. `/files`)."""
        return urlsplit(self._base_url).path

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
        _write_atomic(path.with_name(path.name + _TYPE_SUFFIX), content_type.encode())
        return describe(key, self.bucket, data, content_type)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def content_type(self, key: str) -> str:
        path = self._path(key)
        try:
            return path.with_name(path.name + _TYPE_SUFFIX).read_text()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def url(self, key: str, expires_s: int | None = None, *, for_workers: bool = False) -> str:
        validate_key(key)
        expires = int(time.time()) + (expires_s or self._expiry)
        query = urlencode({"expires": expires, "signature": self._sign(key, expires)})
        return f"{self._base_url}/{quote(key)}?{query}"

    def delete(self, key: str) -> None:
        path = self._path(key)
        for stale in (path, path.with_name(path.name + _TYPE_SUFFIX)):
            stale.unlink(missing_ok=True)

    def open_signed(self, key: str, expires: str, signature: str) -> tuple[bytes, str]:
        """The object behind a signed URL; BadSignature if forged, tampered or expired."""
        try:
            expires_at = int(expires)
        except ValueError:
            raise BadSignature("malformed expiry") from None
        if expires_at < time.time():
            raise BadSignature("URL expired")
        if not hmac.compare_digest(self._sign(key, expires_at), signature):
            raise BadSignature("signature does not match")
        return self.get(key), self.content_type(key)

    def _sign(self, key: str, expires: int) -> str:
        message = f"{key}\n{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def _path(self, key: str) -> Path:
        validate_key(key)
        if key.endswith(_TYPE_SUFFIX):
            raise InvalidKey(f"storage key not allowed: {key!r}")
        path = (self._root / key).resolve()
        if not path.is_relative_to(self._root):
            raise InvalidKey(f"storage key escapes the folder: {key!r}")
        return path

    def _folder_key(self) -> bytes:
        # One key per folder, shared by every process using it, created once.
        path = self._root / ".signing-key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as handle:
            key = secrets.token_bytes(32)
            handle.write(key)
        return key


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
