"""The pages a person opens: the playground at `/` (api/playground.html with its script
and styles in api/static) and the API reference at `/docs`, whose Swagger UI files come
from the fastapi-offline package, so it works with no network. No ReDoc: its page fetches
a logo from a CDN whatever it is told."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/static"
DOCS_ASSETS = "/docs-assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def add_pages(app: FastAPI, *, banner: str | None) -> None:
    """Serve the playground and the API reference (make `app` with docs_url=None and
    redoc_url=None)."""
    page = resources.files("api").joinpath("playground.html").read_text()
    app.state.page = page.replace("{{banner}}", banner or "")
    app.mount(STATIC, StaticFiles(packages=[("api", "static")]), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs")
    for path, endpoint in (
        ("/", playground),
        ("/docs", swagger_ui),
        (OAUTH2_REDIRECT, oauth2_redirect),
    ):
        app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)


def playground(request: Request) -> HTMLResponse:
    """The playground page: no build step, plain HTML and JavaScript."""
    return HTMLResponse(request.app.state.page, headers={"Cache-Control": "no-cache"})


def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over this API's OpenAPI document."""
    app: FastAPI = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} - API reference",
        oauth2_redirect_url=OAUTH2_REDIRECT,
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
    )


def oauth2_redirect() -> HTMLResponse:
    """Where Swagger UI's authorize dialog returns."""
    return get_swagger_ui_oauth2_redirect_html()
