"""The HTTP API over the same queue as the bot: generations, workflows, the local image
store's signed URLs, and the playground page. Every refusal is `{"detail": "<a sentence>"}`
(api/errors.py); bodies are limited and checked before they are parsed (api/limits.py)."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI, HTTPException, Response, status

from api import edits, errors, generations, images, limits, metrics, openapi, pages, uploads
from api.auth import CallerDep, ServicesDep
from api.models import ParameterOut, WorkflowOut
from stillhouse.errors import BadSignature, InvalidKey, ObjectNotFound
from stillhouse.services import Services
from stillhouse.storage.local import LocalStorage

# What each operation refuses besides what every one may (400, 413) and what its key
# (401) and its validated input (422) imply: api/openapi.py adds them to the document.
_REFUSES = {
    "POST /v1/generations": (403, 409, 429, 503),
    "GET /v1/generations": (404, 503),
    "GET /v1/generations/{generation_id}": (404, 503),
    "DELETE /v1/generations/{generation_id}": (404, 503),
    "GET /v1/generations/{generation_id}/events": (404, 503),
    "POST /v1/images": (403, 409, 429, 503),
    "POST /v1/uploads": (403, 429, 503),
    "GET /v1/health": (503,),
}


def make_app(services: Services, *, banner: str | None = None) -> FastAPI:
    """The API for these services; `banner` is shown on the playground (preview mode)."""
    app = FastAPI(
        title="stillhouse",
        summary="Images from ComfyUI workflows on serverless GPUs, through a MySQL queue",
        version="1",
        docs_url=None,  # api/pages.py serves the reference from local files
        redoc_url=None,
    )
    app.state.services = services
    limits.add_body_checks(app, services.settings.api)
    errors.add_handlers(app)
    app.openapi = partial(openapi.document, app, _REFUSES)  # type: ignore[method-assign]
    app.include_router(generations.router)
    app.include_router(uploads.router)
    app.include_router(images.router)
    app.include_router(edits.router)  # Vary Region's mask editor (signed links)
    app.add_api_route("/v1/workflows", list_workflows, methods=["GET"], tags=["workflows"])
    app.add_api_route("/v1/health", health, methods=["GET"], tags=["health"])
    if isinstance(services.storage, LocalStorage):
        path = services.storage.url_path.rstrip("/") + "/{key:path}"
        app.add_api_route(path, local_file, methods=["GET"], include_in_schema=False)
    pages.add_pages(app, banner=banner)
    app.state.metrics = metrics.add_metrics(app)
    return app


def list_workflows(_who: CallerDep, services: ServicesDep) -> list[WorkflowOut]:
    """What `workflow` may name in a generation."""
    return [
        WorkflowOut(
            name=w.name,
            title=w.manifest.title,
            description=w.manifest.description,
            purpose=w.manifest.purpose.value,
            family=w.manifest.family.value if w.manifest.family else None,
            takes_loras=w.manifest.loras is not None,
            parameters=sorted(w.manifest.parameters),
            presets=sorted(w.manifest.presets),
            aspects=sorted(w.manifest.aspects),
            default=w.name == services.settings.intake.default_workflow,
            parameter_specs=[
                ParameterOut(name=name, **spec.model_dump(exclude={"bind"}))
                for name, spec in w.manifest.parameters.items()
            ],
        )
        for w in services.catalog.served()
    ]


def health(services: ServicesDep) -> dict[str, str]:
    """Answers while the API runs and the queue's database is reachable."""
    services.queue.depth()
    return {"status": "ok"}


def local_file(key: str, services: ServicesDep, expires: str = "", signature: str = "") -> Response:
    """An image of the local store, behind the signed URL the API handed out."""
    storage = services.storage
    assert isinstance(storage, LocalStorage), "mounted for the local store only"
    try:
        data, content_type = storage.open_signed(key, expires, signature)
    except (BadSignature, InvalidKey) as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except ObjectNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such image") from None
    return Response(data, media_type=content_type, headers={"Cache-Control": "private"})
