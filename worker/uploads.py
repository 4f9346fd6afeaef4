"""Make outputs private and upload them: PNG text chunks (ComfyUI embeds the whole
graph there) are dropped without re-encoding, then each image goes to storage under an
unguessable key, with its size, dimensions and sha256."""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import time
import zlib
from collections.abc import Awaitable, Callable

from PIL import Image

from stillhouse.errors import InvalidKey, StorageError
from stillhouse.schemas.worker_io import ImageRef
from stillhouse.storage import StoredObject, new_key

log = logging.getLogger(__name__)
Put = Callable[[str, bytes, str], Awaitable[StoredObject]]  # key, bytes, content type

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METADATA_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}


def strip_png_metadata(data: bytes) -> tuple[bytes, int, int]:
    """The PNG without text/EXIF chunks, and its width and height (from IHDR)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    kept = [PNG_SIGNATURE]
    offset = len(PNG_SIGNATURE)
    width = height = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        end = offset + 12 + length
        if end > len(data):
            raise ValueError("truncated PNG")
        chunk = data[offset:end]
        body = chunk[8:-4]
        if zlib.crc32(chunk[4:-4]) != struct.unpack(">I", chunk[-4:])[0]:
            raise ValueError(f"corrupt PNG chunk {kind!r}")
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        if kind not in METADATA_CHUNKS:
            kept.append(chunk)
        offset = end
        if kind == b"IEND":
            break
    return b"".join(kept), width, height


def private_image(data: bytes) -> tuple[bytes, str, int, int]:
    """(bytes, content type, width, height) with metadata removed."""
    if data.startswith(PNG_SIGNATURE):
        clean, width, height = strip_png_metadata(data)
        return clean, "image/png", width, height
    with Image.open(io.BytesIO(data)) as image:  # other savers: re-encode without metadata
        out = io.BytesIO()
        image.save(out, format="PNG")
        width, height = image.size
    return out.getvalue(), "image/png", width, height


# A finished image is worth more than a GPU try: an unreachable store is retried until
# the job's deadline rather than failing the try (and paying the GPU again).
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
DEADLINE_MARGIN_S = 0.25


async def upload(
    put: Put, prefix: str, job_id: str, node_id: str, data: bytes, deadline: float
) -> ImageRef:
    """Store one output image; the ImageRef the master hands on to the user. A storage
    error is retried with backoff while the next try still fits before `deadline`
    (time.monotonic()); after that the last error is raised."""
    clean, content_type, width, height = private_image(data)
    key = new_key(prefix, job_id, "png")
    stored = await _put(put, key, clean, content_type, deadline)
    return ImageRef(
        key=stored.key,
        bucket=stored.bucket,
        content_type=content_type,
        width=width,
        height=height,
        bytes=stored.bytes,
        sha256=stored.sha256,
        node_id=node_id,
    )


async def _put(put: Put, key: str, data: bytes, content_type: str, deadline: float) -> StoredObject:
    delay = RETRY_FIRST_S
    while True:
        try:
            # Just short of the job's own deadline, so that a store that never answers
            # is reported as such rather than as a job over time.
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + _left(deadline)):
                return await put(key, data, content_type)
        except TimeoutError:
            raise StorageError("storage did not answer before the job's deadline") from None
        except InvalidKey:
            raise
        except (StorageError, OSError) as exc:
            if time.monotonic() + delay >= deadline:
                raise
            log.warning(
                "storage refused an image; retrying",
                extra={"action": "worker.upload_retry", "error": str(exc), "delay_s": delay},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic() - DEADLINE_MARGIN_S)
