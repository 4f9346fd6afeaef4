"""The OpenAPI document, with every answer an operation can give: a Problem for each
refusal. FastAPI states the successes and the security schemes; the refusals are added
here, by rule where a rule says it (the body checks run before routing, so any operation
may answer 400 and 413; one that asks for a key, 401; one that validates input, 422) and
from a table for the rest (what the intake refuses, a missing generation, the database)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI

from api.models import Problem

MEANING = {
    400: "The body is not JSON a client may send: malformed, not UTF-8, NaN or Infinity, a "
    "lone surrogate, a number beyond a 64-bit float, nested too deep.",
    401: "No API key, or an unknown one (when the server has keys).",
    403: "The caller is banned, or may not use what it named.",
    404: "No such generation, or not the caller's.",
    409: "The Idempotency-Key came before with a different request.",
    413: "The body is over the limit: STILLHOUSE_API__MAX_BODY_BYTES (64 KiB by default); "
    "for POST /v1/uploads, STILLHOUSE_API__MAX_UPLOAD_BYTES.",
    422: "Well-formed input the schema or the rules refuse: a field's type or range (types "
    "are strict), an unknown workflow or parameter, a filtered word.",
    429: "Over a limit: requests a minute, unfinished requests, the daily quota.",
    503: "New requests are paused, or the queue's database is unreachable.",
}
_EVERYWHERE = (400, 413)
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait, when known",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_FRAMEWORK_422 = ("HTTPValidationError", "ValidationError")
_FASTAPI_WORDS = ("Validation Error", "Additional Response")


def document(app: FastAPI, refuses: Mapping[str, Iterable[int]]) -> dict[str, Any]:
    """FastAPI's document for `app` with the Problem answers added; `refuses` names an
    operation's others by `"METHOD /path"`. Cached by FastAPI; adding again changes
    nothing."""
    schema = FastAPI.openapi(app)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            codes = {*_EVERYWHERE, *refuses.get(f"{method.upper()} {path}", ())}
            if operation.get("security"):
                codes.add(401)
            if operation.get("parameters") or operation.get("requestBody"):
                codes.add(422)
            _add_problems(operation.setdefault("responses", {}), codes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Problem", Problem.model_json_schema())
    for name in _FRAMEWORK_422:  # its list-of-errors shape is never answered
        if f'"#/components/schemas/{name}"' not in json.dumps(schema):
            components.pop(name, None)
    return schema


def _add_problems(responses: dict[str, Any], codes: Iterable[int]) -> None:
    for code in sorted(codes):
        answer = responses.setdefault(str(code), {"description": MEANING[code]})
        if answer.get("description") in _FASTAPI_WORDS:
            answer["description"] = MEANING[code]
        answer["content"] = {"application/json": {"schema": _PROBLEM}}
        if code in (429, 503):
            answer.setdefault("headers", _RETRY_AFTER)
