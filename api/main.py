"""`stillhouse api`: the HTTP API and playground under uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from api.app import make_app
from stillhouse.config import Settings
from stillhouse.services import Services

log = logging.getLogger(__name__)


def main(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (uvicorn finishes requests in progress first)."""
    services = Services.build(settings)
    for problem in services.catalog.problems:
        log.warning("workflow skipped: %s", problem, extra={"action": "api.workflows"})
    app = make_app(services)
    api = settings.api
    if not api.key_names() and api.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "no API keys are configured and the API listens beyond this machine",
            extra={"action": "api.open", "host": api.host},
        )
    try:
        uvicorn.run(app, host=api.host, port=api.port, log_config=None, access_log=False)
    finally:
        services.close()
    return 0
