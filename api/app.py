"""The HTTP API over the same queue as the bot: generations, workflows, the local image
store's signed URLs, and the playground page. Errors are sentences (`{"detail": ...}`)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import DBAPIError

from api import generations
from api.auth import CallerDep, ServicesDep
from api.models import Problem, WorkflowOut
from stillhouse.errors import BadSignature, InvalidKey, ObjectNotFound
from stillhouse.intake import Refusal
from stillhouse.schemas.manifest import Purpose
from stillhouse.services import Services
from stillhouse.storage.local import LocalStorage

_REFUSED = {
    "invalid": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "paused": status.HTTP_503_SERVICE_UNAVAILABLE,
    "banned": status.HTTP_403_FORBIDDEN,
    "limited": status.HTTP_429_TOO_MANY_REQUESTS,
}
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem} for code in (401, 403, 404, 422, 429, 503)
}


def make_app(services: Services, *, banner: str | None = None) -> FastAPI:
    """The API for these services; `banner` is shown on the playground (preview mode)."""
    app = FastAPI(
        title="stillhouse",
        summary="Images from ComfyUI workflows on serverless GPUs, through a MySQL queue",
        version="1",
        responses=_ERRORS,
    )
    app.state.services = services
    app.include_router(generations.router)
    app.add_exception_handler(Refusal, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_down)
    app.add_api_route("/v1/workflows", list_workflows, methods=["GET"], tags=["workflows"])
    app.add_api_route("/v1/health", health, methods=["GET"], tags=["health"])
    if isinstance(services.storage, LocalStorage):
        path = services.storage.url_path.rstrip("/") + "/{key:path}"
        app.add_api_route(path, local_file, methods=["GET"], include_in_schema=False)
    page = resources.files("api").joinpath("playground.html").read_text()
    app.state.page = page.replace("{{banner}}", banner or "")
    app.add_api_route("/", playground, methods=["GET"], include_in_schema=False)
    return app


def list_workflows(_who: CallerDep, services: ServicesDep) -> list[WorkflowOut]:
    """What `workflow` may name in a generation."""
    return [
        WorkflowOut(
            name=w.name,
            title=w.manifest.title,
            description=w.manifest.description,
            parameters=sorted(w.manifest.parameters),
            presets=sorted(w.manifest.presets),
            aspects=sorted(w.manifest.aspects),
            default=w.name == services.settings.intake.default_workflow,
        )
        for w in sorted(services.catalog.for_purpose(Purpose.GENERATE), key=lambda w: w.name)
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


def playground(request: Request) -> HTMLResponse:
    """The playground page: no build step, plain HTML and JavaScript."""
    return HTMLResponse(request.app.state.page)


async def _refused(_request: Request, exc: Refusal) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=_REFUSED[exc.kind])


async def _database_down(_request: Request, _exc: Exception) -> JSONResponse:
    detail = "The queue is unavailable right now; try again shortly."
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})
