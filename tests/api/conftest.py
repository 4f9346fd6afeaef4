"""API fixtures: the app on the real test databases, called through HTTP in-process, or
served by uvicorn on a port for what only a real server shows (bytes on a socket)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import make_app
from stillhouse.services import Services
from tests.bot.conftest import bot_settings, empty_moderation, make_services
from tests.support import free_port, wait_until

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


@pytest.fixture
def live_api(api_services: Services) -> Iterator[tuple[str, int]]:
    """The app under uvicorn on a free local port: (host, port)."""
    port = free_port()
    config = uvicorn.Config(
        make_app(api_services), host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-api", daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to listen")
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)
