"""Vary Region in the web app: the mask editor a signed link opens (stillhouse.edit_links),
and the inpaint request it sends, answered in Discord like any other.

    GET  /edit/{token}          the editor (api/edit.html, api/static/edit.*)
    GET  /edit/{token}/source   what it shows: the prompt, the image's size, the workflow
    GET  /edit/{token}/image    the image to paint on
    POST /edit/{token}          multipart: `prompt` and `mask` (a PNG the image's size,
                                white where to repaint); 202 with the queued job

The link is the authority: every route reads its token, and the image must still be the
linked user's own result. The request goes through the intake as the Discord user in
the channel the button was pressed in (no interaction token: the bot posts the answer
there with a mention), with the server's and the user's settings, filters and limits.
Not part of the API's document: the page is its only client."""

from __future__ import annotations

import io
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Path, Response, UploadFile, status
from fastapi.responses import HTMLResponse
from PIL import Image
from pydantic import BaseModel, Field

from api.auth import ServicesDep
from api.models import TEXT_MAX
from stillhouse.edit_links import (
    TOKEN_MAX,
    EditGrant,
    LinkRefused,
    mask_key,
    read_token,
    submission_digest,
    submission_id,
)
from stillhouse.errors import ObjectNotFound, StorageError
from stillhouse.followups import FollowUp, NotOffered, Planned, plan
from stillhouse.intake import GenerationRequest, Refusal, Requester
from stillhouse.models_catalog import Asker
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.manifest import Purpose
from stillhouse.schemas.worker_io import ImageRef
from stillhouse.services import Services
from stillhouse.workflows.loader import Workflow

router = APIRouter(prefix="/edit", include_in_schema=False)
Token = Annotated[str, Path(max_length=TOKEN_MAX)]
# A person's link: never cached, never sent on as a Referer, never indexed.
PRIVATE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}
_STATUS = {"off": 404, "invalid": 403, "expired": 410}
SENT = "Sent: the result will appear in Discord."
ALREADY_SENT = "Already sent: the result will appear in Discord."
GONE = "That image is no longer there."
NOT_YOURS = "Only the person who made this image can vary a region of it."
PRIVATE_RESULT = "Vary Region answers in the channel, so it does not work on a private result."
EMPTY_MASK = "Paint over the part to change first: the region is empty."
NOT_A_MASK = "The mask must be a PNG image."


class EditSourceOut(BaseModel):
    """What the editor shows before anything is painted."""

    job: str
    index: int
    prompt: str
    width: int
    height: int
    workflow: str = Field(description="the inpaint workflow's title")
    prompt_max: int
    expires_at: datetime


class EditOut(BaseModel):
    """The queued inpaint request."""

    id: str
    status: str = Field(description="queued, or where an earlier identical submission is")
    message: str


@dataclass(frozen=True)
class Opened:
    """A valid link's grant, the job and image it names, and the workflows involved."""

    grant: EditGrant
    job: JobRecord
    image: ImageRef
    planned: Planned  # the inpaint workflow of the image's family, and what it keeps

    @property
    def target(self) -> Workflow:
        """The inpaint workflow that will run."""
        return self.planned.workflow


@cache
def _page() -> str:
    return resources.files("api").joinpath("edit.html").read_text()


@router.get("/{token}")
def editor(token: Token) -> HTMLResponse:
    """The mask editor (its script reads the token from the address and asks the routes
    below; a bad link is told there, in a sentence)."""
    del token  # the page is the same for every link
    return HTMLResponse(_page(), headers=PRIVATE)


@router.get("/{token}/source")
def edit_source(token: Token, services: ServicesDep) -> EditSourceOut:
    """What the editor shows: the source's prompt and image size, the workflow, the
    link's expiry; 4xx with a sentence when the link opens nothing."""
    opened = _open(token, services)
    prompt = opened.planned.values.get("prompt")
    spec = opened.target.manifest.parameters.get("prompt")
    return EditSourceOut(
        job=opened.job.public_id,
        index=opened.grant.index,
        prompt=prompt if isinstance(prompt, str) else "",
        width=opened.image.width,
        height=opened.image.height,
        workflow=opened.target.manifest.title,
        prompt_max=(spec.max_length if spec and spec.max_length else TEXT_MAX),
        expires_at=opened.grant.expires_at(),
    )


@router.get("/{token}/image")
def edit_image(token: Token, services: ServicesDep) -> Response:
    """The image to paint on."""
    opened = _open(token, services)
    try:
        data = services.storage.get(opened.image.key)
    except ObjectNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, GONE) from None
    return Response(data, media_type=opened.image.content_type, headers=PRIVATE)


@router.post("/{token}", status_code=status.HTTP_202_ACCEPTED)
def submit_edit(
    token: Token,
    prompt: Annotated[str, Form(min_length=1, max_length=TEXT_MAX)],
    mask: Annotated[UploadFile, File(description="PNG, the image's size; white = repaint")],
    services: ServicesDep,
) -> EditOut:
    """Queue the inpaint request; the bot posts its answer in the channel."""
    opened = _open(token, services)
    limit = services.settings.api.max_upload_bytes
    data = mask.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, "The mask is larger than the upload limit."
        )
    clean = _mask_png(data, opened.image, services.settings.worker.max_input_pixels)
    prompt = prompt.strip()
    if not prompt:
        raise Refusal("Say what the painted region should show.")
    grant = opened.grant
    digest = submission_digest(token, prompt, clean)
    key = mask_key(services.settings.storage.s3_prefix, grant.user, digest)
    values = {**opened.planned.values, "mask": key, "prompt": prompt}
    intake = services.intake
    own, mine = intake.server_and_mine(grant.guild, grant.channel, grant.user)
    request = GenerationRequest(workflow=opened.target.name, values=values, purpose=Purpose.INPAINT)
    asker = Asker(user_id=grant.user, guild_id=grant.guild)  # roles: not known here
    bound = intake.prepare(request, grant.guild, own, mine, age_restricted=grant.adult, asker=asker)
    requester = Requester(
        source="discord",
        user_id=grant.user,
        guild_id=grant.guild,
        channel_id=grant.channel,
        shard_id=grant.shard,
        request_id=submission_id(digest),
        visibility="spoiler" if opened.job.routing.visibility == "spoiler" else "public",
    )
    services.storage.put(key, clean, "image/png")
    try:
        accepted = intake.submit(bound, requester)
    except Refusal:
        # Named for this submission alone, and no job has it: nothing else reads it.
        with suppress(StorageError):
            services.storage.delete(key)
        raise
    job = accepted.enqueued.job
    return EditOut(
        id=job.public_id,
        status=str(job.status),
        message=SENT if accepted.enqueued.created else ALREADY_SENT,
    )


def _open(token: str, services: Services) -> Opened:
    """The link's grant and what it names, or HTTPException with the sentence."""
    try:
        grant = read_token(services.settings.api, token)
    except LinkRefused as exc:
        raise HTTPException(_STATUS[exc.why], str(exc)) from None
    job = services.queue.get(grant.job)
    images = job.result.images if job is not None and job.result is not None else []
    if job is None or grant.index >= len(images):
        raise HTTPException(status.HTTP_404_NOT_FOUND, GONE)
    routing = job.routing
    if routing.source != "discord" or routing.user_id != grant.user:
        raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_YOURS)
    if routing.visibility == "private":
        raise HTTPException(status.HTTP_409_CONFLICT, PRIVATE_RESULT)
    image = images[grant.index]
    settings = services.settings
    try:
        planned = plan(
            FollowUp.VARY_REGION,
            job,
            image.key,
            (image.width, image.height),
            services.catalog,
            services.queue.get,
            prefix=settings.storage.s3_prefix,
            preferred=settings.bot.preferred_workflows(),
        )
    except NotOffered as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return Opened(grant=grant, job=job, image=image, planned=planned)


def _mask_png(data: bytes, image: ImageRef, max_pixels: int) -> bytes:
    """The mask as a black-and-white PNG (painted = white; transparent counts as not
    painted), or Refusal: not a PNG, another size than the image, nothing painted."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.format != "PNG":
                raise Refusal(NOT_A_MASK)
            width, height = opened.size
            if width * height > max_pixels:
                raise Refusal(NOT_A_MASK)
            if (width, height) != (image.width, image.height):
                raise Refusal(
                    f"The mask is {width}x{height}; it must be the image's size, "
                    f"{image.width}x{image.height}."
                )
            rgba = opened.convert("RGBA")
    except Refusal:
        raise
    except Exception:  # not an image, truncated, a decompression bomb
        raise Refusal(NOT_A_MASK) from None
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    grey = Image.alpha_composite(black, rgba).convert("L")
    mask = grey.point(lambda v: 255 if v >= 128 else 0)
    if mask.getbbox() is None:
        raise Refusal(EMPTY_MASK)
    out = io.BytesIO()
    mask.save(out, format="PNG", optimize=True)
    return out.getvalue()
