"""The wire format: JSON answers exactly as discord.py parses them, errors, request bodies."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from aiohttp import BodyPartReader, web

from tests.doubles.discord.state import Fault

AUTHORIZED = web.RequestKey("bot_authorized", bool)  # the request had our "Bot <token>"
FILE_PART = re.compile(r"^files?\[?(\d*)\]?$")
Files = dict[int, tuple[str, bytes]]


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON with `Content-Type: application/json` and no charset: discord.py compares the
    header string, and aiohttp's `json_response` would add `; charset=utf-8`."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


class ApiError(Exception):
    """An error answer: `{"code", "message"[, "errors"]}` with an HTTP status."""

    def __init__(self, status: int, code: int, message: str, errors: Any = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def form_error(where: str, code: str, message: str) -> ApiError:
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(where.split(".")):
        errors = {part: errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


async def read_body(request: web.Request) -> tuple[Any, Files]:
    """The JSON payload and the uploaded files (`payload_json` + `files[n]` when multipart)."""
    if not request.content_type.startswith("multipart/"):
        text = await request.text()
        try:
            return (json.loads(text) if text else {}), {}
        except ValueError as exc:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from exc
    payload: Any = {}
    files: Files = {}
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):  # pragma: no cover - nested multipart
            continue
        if part.name == "payload_json":
            payload = json.loads(await part.text())
            continue
        match = FILE_PART.match(part.name or "")
        if match is None or part.filename is None:
            raise form_error(part.name or "?", "UNKNOWN_FIELD", "Unknown form field")
        index = int(match.group(1) or len(files))
        files[index] = (part.filename, bytes(await part.read()))
    return payload, files


# Discord's JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
ERRORS = {
    "unauthorized": (401, 0, "401: Unauthorized"),
    "unknown_guild": (404, 10004, "Unknown Guild"),
    "unknown_channel": (404, 10003, "Unknown Channel"),
    "unknown_member": (404, 10007, "Unknown Member"),
    "unknown_message": (404, 10008, "Unknown Message"),
    "unknown_user": (404, 10013, "Unknown User"),
    "unknown_webhook": (404, 10015, "Unknown Webhook"),
    "unknown_interaction": (404, 10062, "Unknown interaction"),
    "already_acknowledged": (400, 40060, "Interaction has already been acknowledged."),
    "missing_access": (403, 50001, "Missing Access"),
    "missing_permissions": (403, 50013, "Missing Permissions"),
    "not_author": (403, 50005, "Cannot edit a message authored by another user"),
    "invalid_webhook_token": (401, 50027, "Invalid Webhook Token"),
}


def error(name: str) -> ApiError:
    return ApiError(*ERRORS[name])


FAULT_DEFAULTS = {
    400: (50035, "Invalid Form Body"),
    401: (0, "401: Unauthorized"),
    403: (50001, "Missing Access"),
    404: (10003, "Unknown Channel"),
}


def fault_response(fault: Fault) -> web.Response:
    """The error Discord (or Cloudflare in front of it) would answer."""
    if fault.status == 429:
        retry_after = fault.retry_after if fault.retry_after is not None else 1.0
        body: dict[str, Any] = {
            "message": fault.message or "You are being rate limited.",
            "retry_after": retry_after,
            "global": False,
        }
        if fault.code is not None:
            body["code"] = fault.code
        headers = {
            "Retry-After": str(math.ceil(retry_after)),
            "Via": "1.1 google",  # discord.py retries a 429 only when this is present
            "X-RateLimit-Scope": "user",
        }
        return json_response(body, 429, headers)
    if fault.status >= 500:
        return web.Response(status=fault.status, text="upstream connect error")
    code, message = FAULT_DEFAULTS.get(fault.status, (0, f"{fault.status}: error"))
    body = {
        "message": fault.message or message,
        "code": fault.code if fault.code is not None else code,
    }
    return json_response(body, fault.status)
