"""The `stillhouse` command: clear failures, db upgrade/current, settings table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stillhouse.commands.config import render_settings_table
from stillhouse.config import settings_table

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STILLHOUSE_")}
    return subprocess.run(
        [sys.executable, "-m", "stillhouse", *args],
        cwd=cwd,
        env={**clean, "STILLHOUSE_LOG__FORMAT": "text", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_setting_stops_with_one_line_per_variable(tmp_path: Path) -> None:
    result = run(
        "db",
        "current",
        cwd=tmp_path,
        STILLHOUSE_DATABASE__URL="redis://x",
        STILLHOUSE_QUEUE__LEASE_S="-1",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("stillhouse: bad setting: STILLHOUSE_DATABASE__URL: ")
    assert lines[1].startswith("stillhouse: bad setting: STILLHOUSE_QUEUE__LEASE_S: ")
    assert "Traceback" not in result.stderr


def test_db_upgrade_then_current_on_embedded_sqlite(tmp_path: Path) -> None:
    before = run("db", "current", cwd=tmp_path)
    assert before.returncode == 1 and "empty" in before.stdout
    upgraded = run("db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    from stillhouse.db.migrate import MIGRATIONS

    newest = max(p.name.split("_")[0] for p in (MIGRATIONS / "versions").glob("0*.py"))
    assert f"is at revision {newest}" in upgraded.stdout
    assert (tmp_path / ".stillhouse" / "queue.sqlite3").exists()
    current = run("db", "current", cwd=tmp_path)
    assert current.returncode == 0 and "up to date" in current.stdout


def test_unreachable_database_is_one_clear_line_without_the_password(tmp_path: Path) -> None:
    from tests.support import free_port

    url = f"mysql+pymysql://root:topsecret@127.0.0.1:{free_port()}/x"
    result = run("db", "current", cwd=tmp_path, STILLHOUSE_DATABASE__URL=url)
    assert result.returncode == 1
    assert "stillhouse: cannot reach the database at mysql+pymysql://root:***@" in result.stderr
    assert "topsecret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ((), {}, "STILLHOUSE_BOT__TOKEN: required to run the bot"),
        (("--shard-ids", "0"), {"STILLHOUSE_BOT__TOKEN": "t"}, "--shard-ids needs --shard-count"),
        (
            ("--shard-ids", "0,4", "--shard-count", "4"),
            {"STILLHOUSE_BOT__TOKEN": "t"},
            "must all be below --shard-count",
        ),
    ],
)
def test_the_bot_refuses_to_start_without_what_it_needs(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    result = run("bot", *args, cwd=tmp_path, **env)
    assert result.returncode == 2
    assert says in result.stderr and "Traceback" not in result.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    result = run(
        "config",
        "show",
        cwd=tmp_path,
        STILLHOUSE_DATABASE__URL="mysql+pymysql://u:hunter22@h/d",
    )
    assert result.returncode == 0
    assert "hunter22" not in result.stdout and '"url": "**********"' in result.stdout


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    assert render_settings_table() in readme, "regenerate with `stillhouse config table`"
    assert len(settings_table()) >= 25
