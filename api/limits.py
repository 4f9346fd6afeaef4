"""What a request may send, enforced as plain ASGI middleware before FastAPI reads it.

BodyLimit: a body larger than its path's limit is refused with 413 — at once when
Content-Length says so, else (chunked) as soon as the bytes counted pass the limit —
so nothing past the limit is ever held. StrictJson: a JSON body must be RFC 8259 JSON
(UTF-8, no NaN or Infinity, no lone surrogate, numbers within a 64-bit float), else 400;
FastAPI's json.loads would accept those and hand on values nothing can encode back."""

from __future__ import annotations

import email.message
import math
from collections.abc import Mapping

import pydantic_core
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem
from stillhouse.config import ApiSettings

UPLOADS = "/v1/uploads"
EDITS = "/edit"  # Vary Region: a mask PNG, as large as an upload
# A multipart upload carries its boundary and part headers besides the file.
MULTIPART_FRAMING = 16 * 2**10


def add_body_checks(app: FastAPI, settings: ApiSettings) -> None:
    """Limit every body (uploads to their own, larger limit) and check JSON ones."""
    app.add_middleware(StrictJson)
    app.add_middleware(  # added last, so outermost: it counts what StrictJson reads
        BodyLimit,
        limit=settings.max_body_bytes,
        by_path={
            UPLOADS: settings.max_upload_bytes + MULTIPART_FRAMING,
            EDITS: settings.max_upload_bytes + MULTIPART_FRAMING,
        },
    )


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the bytes pass the limit. An HTTPException, so FastAPI
    lets it through its body parsing (which turns other errors into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: larger than the limit of {limit} bytes.")


class BodyLimit:
    """Refuses a body over `limit` bytes (or over `by_path[prefix]` below a prefix)."""

    def __init__(self, app: ASGIApp, *, limit: int, by_path: Mapping[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.by_path = dict(by_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        # A malformed Content-Length never gets here (the server refuses it); if it did,
        # the counting below would still hold the line.
        declared = _header(scope, b"content-length") or ""
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            await _answer(BodyTooLarge(limit), scope, receive, send)
            return
        counted = 0
        started = False

        async def counting() -> Message:
            nonlocal counted
            message = await receive()
            if message["type"] == "http.request":
                counted += len(message.get("body", b""))
                if counted > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, watching)
        except BodyTooLarge as exc:
            # Raised outside FastAPI's handlers (by an outer middleware reading the body).
            if started:
                raise
            await _answer(exc, scope, receive, send)

    def limit_for(self, path: str) -> int:
        """The limit for a request path."""
        for prefix, limit in self.by_path.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.limit


class StrictJson:
    """Reads a JSON body (or one without a Content-Type), checks it, and replays it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _may_be_json(_header(scope, b"content-type")):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        wrong = json_problem(body) if body else None
        if wrong is not None:
            await problem(400, wrong)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def json_problem(body: bytes) -> str | None:
    """Why `body` is not JSON a client may send, in a sentence (or None if it is)."""
    try:
        value = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        # jiter's messages name the position and the rule, never the text.
        return f"body: is not valid JSON ({str(exc)[:100]})."
    if not _finite(value):
        return "body: has a number too large for a 64-bit float."
    return None


def _finite(value: object) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def _may_be_json(content_type: str | None) -> bool:
    # The same test FastAPI applies before it parses a body as JSON.
    if content_type is None:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


async def _answer(exc: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
    await problem(exc.status_code, str(exc.detail))(scope, receive, send)
