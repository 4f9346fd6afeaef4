"""API fixtures: the app on the real test databases, called through HTTP in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import make_app
from stillhouse.services import Services
from tests.bot.conftest import bot_settings, empty_moderation, make_services

KEY = "alice-key-0123456789abcdef"
OTHER_KEY = "bob-key-0123456789abcdefgh"


@pytest.fixture
def api_services(engine: Engine, database_url: str, tmp_path: Path) -> Services:
    """Services with two API keys (each backend in turn)."""
    empty_moderation(engine)
    settings = bot_settings(
        database_url,
        tmp_path,
        {"per_minute": 100, "max_active_jobs": 5},
        api={"keys": f"alice:{KEY},bob:{OTHER_KEY}"},
        storage={"public_base_url": "http://testserver/files"},
    )
    return make_services(engine, settings)


@pytest.fixture
def client(api_services: Services) -> Iterator[TestClient]:
    with TestClient(make_app(api_services), headers={"Authorization": f"Bearer {KEY}"}) as test:
        yield test
