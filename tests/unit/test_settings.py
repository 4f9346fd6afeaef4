"""Settings come from the environment; bad ones stop the process with a clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from stillhouse.config import make_settings, safe_database_url
from stillhouse.errors import SettingsError

pytestmark = pytest.mark.usefixtures("clean_settings_env")


def problems(**env: str) -> list[str]:
    import os

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        make_settings()
    except SettingsError as exc:
        return exc.problems
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return []


def test_embedded_defaults_need_no_configuration() -> None:
    settings = make_settings()
    assert settings.database_url() == "sqlite:///.stillhouse/queue.sqlite3"
    assert settings.storage.backend == "local"
    assert settings.images_dir() == Path(".stillhouse/images")
    assert settings.memcached.server_list() == []


def test_nested_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STILLHOUSE_DATABASE__URL", "mysql+pymysql://u:pw@db:3306/q")
    monkeypatch.setenv("STILLHOUSE_MEMCACHED__SERVERS", "mc1:11211, mc2:11212")
    monkeypatch.setenv("STILLHOUSE_QUEUE__LEASE_S", "12.5")
    monkeypatch.setenv("STILLHOUSE_STORAGE__BACKEND", "s3")
    monkeypatch.setenv("STILLHOUSE_STORAGE__S3_BUCKET", "images")
    monkeypatch.setenv("STILLHOUSE_STORAGE__S3_PREFIX", "gen")
    settings = make_settings()
    assert settings.database_url() == "mysql+pymysql://u:pw@db:3306/q"
    assert settings.memcached.server_list() == [("mc1", 11211), ("mc2", 11212)]
    assert settings.queue.lease_s == 12.5
    assert settings.storage.s3_prefix == "gen/"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STILLHOUSE_QUEUE__MAX_ATTEMPTS=7\n")
    assert make_settings().queue.max_attempts == 7


def test_each_bad_variable_gets_one_line_naming_it() -> None:
    lines = problems(
        STILLHOUSE_DATABASE__URL="postgresql://x/y",
        STILLHOUSE_QUEUE__MAX_ATTEMPTS="zero",
        STILLHOUSE_MEMCACHED__SERVERS="localhost",
        STILLHOUSE_LOG__LEVEL="LOUD",
    )
    assert len(lines) == 4
    assert lines[0].startswith("STILLHOUSE_DATABASE__URL: must start with one of mysql+pymysql://")
    assert any(line.startswith("STILLHOUSE_QUEUE__MAX_ATTEMPTS: ") for line in lines)
    assert any("STILLHOUSE_MEMCACHED__SERVERS: expected host:port" in line for line in lines)
    assert any(line.startswith("STILLHOUSE_LOG__LEVEL: ") for line in lines)


def test_a_missing_requirement_names_the_variable_to_set() -> None:
    assert problems(STILLHOUSE_STORAGE__BACKEND="s3") == [
        "STILLHOUSE_STORAGE__S3_BUCKET: required when STILLHOUSE_STORAGE__BACKEND=s3"
    ]


def test_bad_secret_values_are_not_echoed() -> None:
    [line] = problems(STILLHOUSE_DATABASE__URL="postgresql://admin:hunter22@db/x")
    assert "hunter22" not in line
    assert line.startswith("STILLHOUSE_DATABASE__URL:")


def test_secrets_never_appear_in_repr_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STILLHOUSE_DATABASE__URL", "mysql+pymysql://u:hunter22@db/q")
    monkeypatch.setenv("STILLHOUSE_STORAGE__S3_SECRET_ACCESS_KEY", "aws-secret-value")
    monkeypatch.setenv("STILLHOUSE_STORAGE__S3_ACCESS_KEY_ID", "aws-key-id")
    settings = make_settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("hunter22", "aws-secret-value", "aws-key-id"):
        assert secret not in shown
    assert {"hunter22", "aws-secret-value", "aws-key-id"} <= set(settings.secret_values())


def test_safe_database_url_hides_the_password() -> None:
    assert safe_database_url("mysql+pymysql://u:pw@h:3306/d") == "mysql+pymysql://u:***@h:3306/d"
    assert safe_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_queue_backoff_bounds_must_be_ordered() -> None:
    assert problems(STILLHOUSE_QUEUE__BACKOFF_BASE_S="60", STILLHOUSE_QUEUE__BACKOFF_MAX_S="5") == [
        "STILLHOUSE_QUEUE__BACKOFF_MAX_S: must be at least STILLHOUSE_QUEUE__BACKOFF_BASE_S"
    ]
