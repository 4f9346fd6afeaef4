"""Every refusal has one shape, `{"detail": "<a sentence>"}` (models.Problem): ours
(Refusal, HTTPException), the framework's (schema validation) and the database's. The
sentence says where the problem is and what is wrong, never the value sent, so an answer
stays small and encodable whatever was posted."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from api.models import DETAIL_MAX
from stillhouse.intake import Refusal, RefusalKind

_REFUSED: dict[RefusalKind, int] = {
    "invalid": 422,
    "paused": 503,
    "banned": 403,
    "limited": 429,
    "conflict": 409,
    "forbidden": 403,
}
# Our words for pydantic's error types; any other keeps pydantic's message, which
# names the rule (a bound, a length, the allowed values), not the input.
_SAID = {
    "missing": "is required",
    "extra_forbidden": "is not a field this request takes",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object, sent as application/json",
    "too_long": "must have at most {max_length} items",
}
_SHOULD = re.compile(r"^(?:Input|String|Value|Dictionary|List|URL|URL input) should ")
_SHOWN = 3  # problems named in one sentence; the rest are counted
_NAME_MAX = 40  # characters of a field name (a client's key) that are repeated


def add_handlers(app: FastAPI) -> None:
    """Answer every error the app can raise as a Problem."""
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Refusal, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_down)
    app.add_exception_handler(Exception, _broken)


def problem(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The documented error answer."""
    return JSONResponse({"detail": bounded(detail)}, status_code=status, headers=headers)


def bounded(text: str) -> str:
    """`text` cut to DETAIL_MAX characters, lone surrogates replaced (they cannot be
    encoded): a safety net for messages that quote a caller's words."""
    if len(text) > DETAIL_MAX:
        text = text[: DETAIL_MAX - 1] + "…"
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def validation_sentence(errors: Sequence[Mapping[str, Any]]) -> str:
    """One sentence for pydantic's errors: `seed: must be a whole number.`"""
    said = list(dict.fromkeys(f"{_where(e.get('loc', ()))}: {_what(e)}" for e in errors))
    sentence = "; ".join(said[:_SHOWN])
    if len(said) > _SHOWN:
        sentence += f" (and {len(said) - _SHOWN} more)"
    return sentence + "."


def _where(loc: Sequence[object]) -> str:
    kind, *path = loc or ("body",)
    parts: list[str] = []
    for item in path:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item == "[key]":
            parts.append(" (a key)")
        else:
            name = str(item)
            name = name if len(name) <= _NAME_MAX else name[: _NAME_MAX - 1] + "…"
            parts.append(f".{name}" if parts else name)
    field = "".join(parts)
    if kind == "body":
        return field or "body"
    return f"{kind} {field}".strip()


def _what(error: Mapping[str, Any]) -> str:
    said = _SAID.get(str(error.get("type")))
    if said is not None:
        with suppress(KeyError, ValueError):  # else pydantic's words, below
            return said.format_map(error.get("ctx") or {})
    message = str(error.get("msg", "is not allowed"))
    if _SHOULD.match(message):
        return _SHOULD.sub("must ", message)
    return message[:1].lower() + message[1:]


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    # A body json.loads could not read is the client's syntax, not our schema.
    unreadable = any(e.get("type") == "json_invalid" for e in errors)
    if unreadable:
        return problem(400, "body: is not valid JSON.")
    return problem(422, validation_sentence(errors))


async def _http(_request: Request, exc: HTTPException) -> Response:
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return problem(exc.status_code, str(exc.detail), exc.headers)


async def _refused(_request: Request, exc: Refusal) -> JSONResponse:
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return problem(_REFUSED[exc.kind], str(exc), headers)


async def _database_down(_request: Request, _exc: Exception) -> JSONResponse:
    detail = "The queue is unavailable right now; try again shortly."
    return problem(503, detail, {"Retry-After": "5"})


async def _broken(_request: Request, _exc: Exception) -> JSONResponse:
    # Still logged with its traceback by the server; the client gets the shape.
    return problem(500, "Something went wrong on our side.")
