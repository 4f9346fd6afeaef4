"""Fixtures the unit tests share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def clean_settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No STILLHOUSE_ variable from the caller's environment, and no stray `.env`."""
    for name in list(os.environ):
        if name.startswith("STILLHOUSE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
