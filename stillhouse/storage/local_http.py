"""A tiny WSGI app serving the local folder's signed URLs (mounted by the API)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, unquote

from stillhouse.errors import BadSignature, InvalidKey, ObjectNotFound
from stillhouse.storage.local import LocalStorage

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_wsgi_app(storage: LocalStorage) -> WSGIApp:
    """GET <url_path>/<key>?expires=&signature= -> the object, or 403/404."""
    prefix = storage.url_path.rstrip("/") + "/"

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET" or not path.startswith(prefix):
            return _plain(start_response, "404 Not Found", "not found")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        key = unquote(path[len(prefix) :])
        try:
            data, content_type = storage.open_signed(
                key, query.get("expires", [""])[0], query.get("signature", [""])[0]
            )
        except (BadSignature, InvalidKey) as exc:
            return _plain(start_response, "403 Forbidden", str(exc))
        except ObjectNotFound:
            return _plain(start_response, "404 Not Found", "not found")
        start_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "private, max-age=300"),
            ],
        )
        return [data]

    return app


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
