"""What every command needs: settings (and logging) built once, at start."""

from __future__ import annotations

from stillhouse.config import Settings, make_settings


def load_settings() -> Settings:
    """Settings from the environment, with logging configured from them."""
    settings = make_settings()
    from stillhouse.logs import configure_logging

    configure_logging(settings)
    return settings
