"""Settings that cannot be mistyped: an unknown STILLHOUSE_ name stops the process with
the closest real one, and every name the docs give is a real setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stillhouse.config import make_settings, setting_names
from stillhouse.envcheck import TOOLING_PREFIXES
from stillhouse.errors import SettingsError

ROOT = Path(__file__).resolve().parents[2]
# What operators read and deploy from.
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "DEVELOPERS.md",
    ROOT / ".env.example",
    ROOT / "docker-compose.yml",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted(p for p in (ROOT / "infra").rglob("*") if p.is_file()),
]
# A whole name; `STILLHOUSE_TEST_…` (a prefix, followed by "_") is none.
NAME = re.compile(r"\bSTILLHOUSE_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_])")


pytestmark = pytest.mark.usefixtures("clean_settings_env")


def refusal() -> list[str]:
    with pytest.raises(SettingsError) as raised:
        make_settings()
    return raised.value.problems


def test_a_setting_written_under_the_wrong_group_names_the_right_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STILLHOUSE_BOT__FILTER_WORDS", "badword")
    assert refusal() == [
        "STILLHOUSE_BOT__FILTER_WORDS: no such setting; did you mean "
        "STILLHOUSE_INTAKE__FILTER_WORDS?"
    ]


def test_a_misspelt_name_in_dotenv_is_caught_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STILLHOUSE_DATABSE__URL=mysql+pymysql://db/q\n")
    assert refusal() == [
        "STILLHOUSE_DATABSE__URL: no such setting; did you mean STILLHOUSE_DATABASE__URL?"
    ]


def test_a_name_like_no_setting_points_to_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STILLHOUSE_FLUX_CAPACITOR", "1")
    assert refusal() == ["STILLHOUSE_FLUX_CAPACITOR: no such setting (README lists every setting)"]


def test_real_settings_groups_and_tooling_knobs_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STILLHOUSE_QUEUE__LEASE_S", "12")
    monkeypatch.setenv("stillhouse_master__claim_batch", "4")  # read without case
    monkeypatch.setenv("STILLHOUSE_LOG", '{"level": "DEBUG"}')  # a whole group as JSON
    monkeypatch.setenv("STILLHOUSE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1/t")
    settings = make_settings()
    assert settings.queue.lease_s == 12 and settings.master.claim_batch == 4
    assert settings.log.level == "DEBUG"


def test_a_mistyped_variable_stops_the_master_with_the_closest_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STILLHOUSE_")}
    env["STILLHOUSE_MASTER__CLAIM_INTERVAL"] = "0.1"  # the real one ends in _S
    done = subprocess.run(
        [sys.executable, "-m", "stillhouse", "master"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "STILLHOUSE_MASTER__CLAIM_INTERVAL: no such setting; did you mean " in done.stderr
    assert "STILLHOUSE_MASTER__CLAIM_INTERVAL_S?" in done.stderr


def test_every_variable_the_docs_and_deploy_files_name_is_a_real_setting() -> None:
    known = setting_names()
    named = {
        (path.name, match)
        for path in DOCUMENTS
        for match in NAME.findall(path.read_text())
        if not match.startswith(TOOLING_PREFIXES)
    }
    assert len(named) > 50  # the settings table alone names them all
    unknown = sorted(f"{doc}: {name}" for doc, name in named if name not in known)
    assert unknown == []
