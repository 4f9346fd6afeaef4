"""Make outputs private and upload them: PNG text chunks (ComfyUI embeds the whole
graph there) are dropped without re-encoding, then each image goes to storage under an
unguessable key, with its size, dimensions and sha256."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib

from PIL import Image

from stillhouse.schemas.worker_io import ImageRef
from stillhouse.storage import Storage, new_key

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


async def upload(storage: Storage, prefix: str, job_id: str, node_id: str, data: bytes) -> ImageRef:
    """Store one output image; the ImageRef the master hands on to the user."""
    clean, content_type, width, height = private_image(data)
    key = new_key(prefix, job_id, "png")
    stored = await asyncio.to_thread(storage.put, key, clean, content_type)
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
