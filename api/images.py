"""POST /v1/images: one call from a request to an image. The body and the checks are
those of POST /v1/generations; the answer waits (up to `wait_s`) for the result: 200 with
the first image, 202 with the generation and a Location to poll when it takes longer,
or the job's error as `{"detail": ...}` when it failed."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from api.auth import CallerDep, ServicesDep
from api.generations import queue_generation
from api.models import GenerationIn, GenerationOut, ImageResultOut, Problem
from api.views import generation_view
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.states import JobStatus
from stillhouse.services import Services

router = APIRouter(prefix="/v1/images", tags=["images"])
WAIT_DEFAULT_S = 60.0
WAIT_MAX_S = 300.0
# A job the request itself doomed is the caller's to fix; any other failure is ours.
_CALLERS_FAULT = {"invalid_input", "invalid_graph"}


@router.post(
    "",
    response_model=ImageResultOut,
    responses={
        202: {"model": GenerationOut, "description": "not done within `wait_s`: poll Location"},
        409: {"model": Problem, "description": "the generation was cancelled"},
        502: {"model": Problem, "description": "the generation failed on our side"},
    },
)
async def create_image(
    body: GenerationIn,
    request: Request,
    who: CallerDep,
    services: ServicesDep,
    wait_s: Annotated[float, Query(ge=0, le=WAIT_MAX_S)] = WAIT_DEFAULT_S,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Queue a request and wait for its first image (at most `wait_s` seconds, and no
    longer than the deployment allows: STILLHOUSE_API__MAX_WAIT_S)."""
    accepted = await asyncio.to_thread(queue_generation, body, who, services, idempotency_key)
    queued = accepted.enqueued.job
    location = f"/v1/generations/{queued.public_id}"
    waiting = min(wait_s, services.settings.api.max_wait_s)
    job = await _until_done(queued, services, request, time.monotonic() + waiting)
    if not job.status.is_terminal:
        view = await asyncio.to_thread(generation_view, job, services)
        return JSONResponse(
            view.model_dump(mode="json"),
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": location},
        )
    if job.status is JobStatus.SUCCEEDED and job.result is not None:
        first = job.result.images[0]
        done = ImageResultOut(
            id=job.public_id, file_key=first.key, public_url=services.storage.url(first.key)
        )
        return JSONResponse(done.model_dump(mode="json"))
    raise _failure(job, location)


async def _until_done(
    job: JobRecord, services: Services, request: Request, deadline: float
) -> JobRecord:
    """The job once it ends, or as last seen at the deadline (or when the caller left).
    The queue unreachable for a moment only costs a look."""
    interval = services.settings.api.events_interval_s
    while not job.status.is_terminal and time.monotonic() < deadline:
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        if await request.is_disconnected():
            break
        try:
            seen = await asyncio.to_thread(services.queue.get, job.public_id)
        except DBAPIError:
            continue
        if seen is None:  # deleted meanwhile: say what it was
            break
        job = seen
    return job


def _failure(job: JobRecord, location: str) -> HTTPException:
    headers = {"Location": location}
    if job.status is JobStatus.CANCELLED:
        detail = f"The generation {job.public_id} was cancelled."
        return HTTPException(status.HTTP_409_CONFLICT, detail, headers=headers)
    error = job.error
    message = error.message if error is not None else "it ended without images"
    code = (
        status.HTTP_422_UNPROCESSABLE_CONTENT
        if error is not None and error.type in _CALLERS_FAULT
        else status.HTTP_502_BAD_GATEWAY
    )
    return HTTPException(code, f"The generation {job.public_id} failed: {message}", headers)
