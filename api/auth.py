"""Who is calling: an API key from the settings, or nobody in particular when no keys are
configured (local use, `stillhouse up`)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from pydantic import BaseModel

from stillhouse.services import Services

LOCAL_CALLER = "local"


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
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Caller:
    """The caller named by its API key; 401 without a good one (when keys are set)."""
    keys = services_of(request).settings.api.key_names()
    if not keys:
        return Caller(name=LOCAL_CALLER, user_id=api_user_id(LOCAL_CALLER))
    given = x_api_key or _bearer(authorization)
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


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _negative_id(text: str) -> int:
    digest = hashlib.sha256(text.encode()).digest()
    return -(int.from_bytes(digest[:7], "big") + 1)
