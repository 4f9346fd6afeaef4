"""/v1/generations: create, read, cancel and follow requests."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, status
from fastapi.responses import StreamingResponse

from api.auth import Caller, CallerDep, ServicesDep, request_id
from api.events import event_stream
from api.models import GenerationIn, GenerationOut, GenerationPage
from api.views import generation_view
from stillhouse.intake import Accepted, Attachment, GenerationRequest, Requester
from stillhouse.models_catalog import Asker, LoraRequest
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.manifest import ParamValue
from stillhouse.services import Services

router = APIRouter(prefix="/v1/generations", tags=["generations"])
PAGE_MAX = 50


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def create_generation(
    body: GenerationIn,
    who: CallerDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> GenerationOut:
    """Queue a request (an `Idempotency-Key` makes a retry return the same one). An
    image is an https `image_url` or, in `params.image`, the key of one of your uploads
    or results; anyone else's is refused with 403."""
    accepted = queue_generation(body, who, services, idempotency_key)
    return generation_view(accepted.enqueued.job, services, accepted.position)


@router.get("")
def list_generations(
    who: CallerDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 20,
    before: Annotated[str | None, Query(max_length=64, description="a generation id")] = None,
) -> GenerationPage:
    """Your generations, newest first, with their images (the playground's gallery)."""
    after = _owned(services, before, who) if before is not None else None
    jobs = services.queue.of_user("api", who.user_id, limit + 1, after)
    shown = jobs[:limit]
    return GenerationPage(
        generations=[generation_view(job, services, place=False) for job in shown],
        next_before=shown[-1].public_id if len(jobs) > limit else None,
    )


def queue_generation(
    body: GenerationIn, who: Caller, services: Services, idempotency_key: str | None
) -> Accepted:
    """A request through the intake (every check /serve makes), queued for `who`."""
    values: dict[str, ParamValue] = dict(body.params)
    given = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "count": body.count,
        "seed": body.seed,
    }
    values.update({k: v for k, v in given.items() if v is not None})
    image = None
    if body.image_url is not None:
        image = Attachment(filename="image", url=str(body.image_url), by_url=True)
    request = GenerationRequest(
        workflow=body.workflow or services.settings.intake.default_workflow,
        values=values,
        preset=body.mode,
        aspect=body.aspect,
        image=image,
        model=body.model,
        loras=[LoraRequest(name=lora.name, weight=lora.weight) for lora in body.loras],
    )
    intake = services.intake
    bound = intake.prepare(request, asker=Asker(user_id=who.user_id))
    requester = Requester(
        source="api",
        user_id=who.user_id,
        request_id=request_id(who, idempotency_key) if idempotency_key else None,
    )
    # What the key was first used with: the same key with another body is a conflict.
    digest = (
        hashlib.sha256(body.model_dump_json().encode()).hexdigest() if idempotency_key else None
    )
    return intake.submit(bound, requester, digest=digest)


@router.get("/{generation_id}")
def read_generation(generation_id: str, who: CallerDep, services: ServicesDep) -> GenerationOut:
    """Status, progress and, once done, the images."""
    return generation_view(_owned(services, generation_id, who), services)


@router.delete("/{generation_id}")
def cancel_generation(generation_id: str, who: CallerDep, services: ServicesDep) -> GenerationOut:
    """Cancel (a running request is stopped on its GPU)."""
    _owned(services, generation_id, who)
    services.queue.cancel(generation_id)
    return generation_view(_owned(services, generation_id, who), services)


@router.get(
    "/{generation_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def follow_generation(
    generation_id: str, who: CallerDep, services: ServicesDep
) -> StreamingResponse:
    """Server-sent events: `progress` whenever the request moves, then `done`."""
    _owned(services, generation_id, who)
    return StreamingResponse(
        event_stream(generation_id, services),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _owned(services: Services, generation_id: str, who: Caller) -> JobRecord:
    job = services.queue.get(generation_id)
    if job is None or job.routing.user_id != who.user_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no generation {generation_id!r}")
    return job
