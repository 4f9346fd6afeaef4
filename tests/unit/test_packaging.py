"""The GPU worker image installs `[worker]` only: no database driver, no discord.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]


def resolve(extra: str) -> set[str]:
    """Package names an extra pulls in, following stillhouse[...] self-references."""
    names: set[str] = set()
    for requirement in EXTRAS[extra]:
        inner = re.fullmatch(r"stillhouse\[([a-z,]+)\]", requirement)
        if inner:
            for name in inner.group(1).split(","):
                names |= resolve(name)
        else:
            names.add(re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0].lower())
    return names


def test_worker_extra_has_no_database_or_discord_packages() -> None:
    core = {
        re.split(r"[<>=\[ ]", r, maxsplit=1)[0].lower()
        for r in PYPROJECT["project"]["dependencies"]
    }
    worker = core | resolve("worker")
    assert worker.isdisjoint({"sqlalchemy", "pymysql", "alembic", "pymemcache", "discord.py"})
    assert {"runpod", "aiohttp", "boto3"} <= worker


def test_every_process_extra_exists_and_all_covers_them() -> None:
    processes = {"bot", "master", "worker", "api"}
    assert processes <= set(EXTRAS)
    everything = resolve("all")
    for extra in processes:
        assert resolve(extra) <= everything
    assert resolve("all") <= resolve("dev")
