"""Who is calling: an API key from the settings, or nobody in particular when no keys are
configured (local use, `stillhouse up`)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from stillhouse.services import Services

LOCAL_CALLER = "local"
_WITHOUT_KEYS = " Not needed when the server runs without keys (local use, `stillhouse up`)."
# Either scheme names a key (the OpenAPI document lists them as alternatives); neither
# refuses by itself, so that a server without keys takes requests without one.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="`Authorization: Bearer <key>`." + _WITHOUT_KEYS,
    auto_error=False,
)
API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKey",
    description="`X-API-Key: <key>`." + _WITHOUT_KEYS,
    auto_error=False,
)


class Caller(BaseModel):
    """An authenticated caller; `user_id` is what quotas and ownership count by."""

    name: str
    user_id: int


def api_user_id(name: str) -> int:
    """A stable id for an API caller, negative so it can never be a Discord user's."""
    return _negative_id(f"api:{name}")


def request_id(caller: Caller, idempotency_key: str) -> int:
    """The dedupe id of an API request carrying an Idempotency-Key (negative, like the
    caller ids, so it never meets a Discord interaction id)."""
    return _negative_id(f"{caller.user_id}:{idempotency_key}")


def services_of(request: Request) -> Services:
    """The process's services (set by make_app)."""
    services: Services = request.app.state.services
    return services


def current_caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    x_api_key: Annotated[str | None, Depends(API_KEY)],
) -> Caller:
    """The caller named by its API key; 401 without a good one (when keys are set)."""
    keys = services_of(request).settings.api.key_names()
    if not keys:
        return Caller(name=LOCAL_CALLER, user_id=api_user_id(LOCAL_CALLER))
    given = x_api_key or (bearer.credentials.strip() if bearer else None)
    for key, name in keys.items():
        if given is not None and hmac.compare_digest(given.encode(), key.encode()):
            return Caller(name=name, user_id=api_user_id(name))
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "an API key is required: `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        headers={"WWW-Authenticate": "Bearer"},
    )


CallerDep = Annotated[Caller, Depends(current_caller)]
ServicesDep = Annotated[Services, Depends(services_of)]


def _negative_id(text: str) -> int:
    digest = hashlib.sha256(text.encode()).digest()
    return -(int.from_bytes(digest[:7], "big") + 1)
