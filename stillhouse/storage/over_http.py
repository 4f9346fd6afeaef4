"""Objects read and written from an event loop, on the caller's aiohttp session.

boto3 is synchronous: from a loop each call goes to a thread, and botocore spends about 3
ms of CPU on it (its event hooks, signing, parsing the answer's headers; measured here
against moto) while the request itself is one plain HTTP GET or PUT. `ObjectsOverHttp`
signs a URL for the request instead (local work, 0.5 ms of CPU) and sends it on the
session of the loop: no thread, and the connection stays open for the next image. A PUT
carries Content-MD5, which S3 checks (a signed boto3 PUT is checked through its payload
hash). Any other store (the local folder) is used through its own methods on a thread.

Errors are the store's: ObjectNotFound for a missing key (S3 answers a presigned GET
with 404 when the signer may list the bucket, else 403, taken as StorageUnavailable);
StorageUnavailable for any other refusal, or no answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

import aiohttp

from stillhouse.errors import ObjectNotFound, StorageUnavailable
from stillhouse.storage.base import Storage, StoredObject, describe

URL_LIFETIME_S = 300  # a URL is used at once; it only has to outlive a slow transfer
HASH_ON_THREAD_BYTES = 256 * 1024
# Limits of one call on a session that talks to the store (connect, then each read).
STORE_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)


class ObjectsOverHttp:
    """`get` and `put` of one store, from the running loop."""

    def __init__(self, storage: Storage) -> None:
        from stillhouse.storage.s3 import S3Storage

        self._storage = storage
        self._s3 = storage if isinstance(storage, S3Storage) else None

    async def get(self, session: aiohttp.ClientSession, key: str) -> bytes:
        """The object's bytes."""
        if self._s3 is None:
            return await asyncio.to_thread(self._storage.get, key)
        url = self._s3.url(key, URL_LIFETIME_S, for_workers=True)  # checks the key
        try:
            async with session.get(url) as response:
                if response.status == 404:
                    raise ObjectNotFound(key)
                if response.status != 200:
                    raise StorageUnavailable(f"storage refused {key}: HTTP {response.status}")
                return await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageUnavailable(f"storage unreachable: {type(exc).__name__}") from None

    async def put(
        self, session: aiohttp.ClientSession, key: str, data: bytes, content_type: str
    ) -> StoredObject:
        """Write `data` under `key`."""
        if self._s3 is None:
            return await asyncio.to_thread(self._storage.put, key, data, content_type)
        url = self._s3.put_url(key, content_type, URL_LIFETIME_S)  # checks the key
        # Hashing a large image would hold the loop for milliseconds: a thread does it
        # (hashlib lets go of the GIL); a small one is hashed at once.
        described = (key, self._s3.bucket, data, content_type)
        if len(data) >= HASH_ON_THREAD_BYTES:
            md5, stored = await asyncio.to_thread(_digests, *described)
        else:
            md5, stored = _digests(*described)
        headers = {"Content-Type": content_type, "Content-MD5": md5}
        try:
            async with session.put(url, data=data, headers=headers) as response:
                if response.status != 200:
                    raise StorageUnavailable(f"storage refused {key}: HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageUnavailable(f"storage unreachable: {type(exc).__name__}") from None
        return stored


def _digests(key: str, bucket: str, data: bytes, content_type: str) -> tuple[str, StoredObject]:
    """The Content-MD5 header of `data`, and the StoredObject that describes it."""
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    return md5, describe(key, bucket, data, content_type)
