"""POST /v1/uploads: an image of the caller's, kept in storage so that a generation can
start from it (its key in `params.image`). Only the uploader may use the key: it sits in
a folder named for them (stillhouse.inputs), which the intake checks against the caller.

What is stored is checked by its content, not by the name or type the client claims: a
PNG, JPEG or WebP that Pillow reads, within the byte limit (STILLHOUSE_API__MAX_UPLOAD_BYTES)
and the pixel limit the workers apply (STILLHOUSE_WORKER__MAX_INPUT_PIXELS)."""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, UploadFile, status
from PIL import Image

from api.auth import Caller, CallerDep, ServicesDep
from api.models import Problem, UploadOut
from stillhouse.inputs import UPLOAD_EXTENSIONS, upload_key
from stillhouse.intake import Refusal
from stillhouse.services import Services

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
NOT_AN_IMAGE = "That file is not a PNG, JPEG or WebP image."


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={413: {"model": Problem}, 415: {"model": Problem}},
)
def create_upload(
    file: Annotated[UploadFile, File(description="a PNG, JPEG or WebP image")],
    who: CallerDep,
    services: ServicesDep,
) -> UploadOut:
    """Store an image to start a generation from: 201 with its `key` (for
    `params.image`, yours alone) and a signed URL. 413 over the size limit, 415 not an
    image, 422 too many pixels."""
    _check_allowed(who, services)
    limit = services.settings.api.max_upload_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"That file is larger than the upload limit of {_mib(limit)} MiB.",
        )
    content_type, width, height = _inspect(data, services.settings.worker.max_input_pixels)
    prefix = services.settings.storage.s3_prefix
    key = upload_key(prefix, who.user_id, UPLOAD_EXTENSIONS[content_type])
    services.storage.put(key, data, content_type)
    return UploadOut(
        key=key,
        url=services.storage.url(key),
        width=width,
        height=height,
        content_type=content_type,
    )


def _check_allowed(who: Caller, services: Services) -> None:
    """Banned callers store nothing; uploads count against their own per-minute limit."""
    if services.moderation.ban_of(who.user_id) is not None:
        raise Refusal("You cannot make requests here.", "banned")
    per_minute = services.settings.intake.per_minute
    hit = services.locks.hit(f"uploads:{who.user_id}", per_minute, 60)
    if not hit.allowed:
        wait = max(1, round(hit.retry_after_s))
        raise Refusal(
            f"You are going fast: at most {per_minute} uploads a minute. Try again in {wait} s.",
            "limited",
            retry_after_s=hit.retry_after_s,
        )


def _inspect(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """(content type, width, height) of an image the workers can read, or HTTPException."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            content_type = FORMATS.get(image.format or "")
            if content_type is None:
                raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, NOT_AN_IMAGE)
            width, height = image.size
            if width * height > max_pixels:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"That image is {width}x{height}; the limit is {max_pixels:,} pixels.",
                )
            image.verify()  # a truncated or corrupt file fails here, not on a GPU
    except HTTPException:
        raise
    except Image.DecompressionBombError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "That image claims far too many pixels."
        ) from None
    except Exception:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, NOT_AN_IMAGE) from None
    return content_type, width, height


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f}".removesuffix(".0")
