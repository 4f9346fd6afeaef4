"""A user's own defaults for /serve, as they set them with /settings (stored by
stillhouse.preferences)."""

from __future__ import annotations

from pydantic import BaseModel


class UserConfig(BaseModel):
    """Empty values mean "as the server or the operators chose"."""

    workflow: str | None = None
    mode: str | None = None
    aspect: str | None = None
