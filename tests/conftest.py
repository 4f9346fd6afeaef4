"""Fixtures for real services: MariaDB and SQLite queues, memcached, moto's S3.

Service tests run against the real thing; MariaDB is expected at
STILLHOUSE_TEST_MYSQL_URL (default root@127.0.0.1:3306/stillhouse_test, created if
missing). Each test starts with empty queue tables; no test rolls back to hide a race.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.engine import make_url

from stillhouse.config import (
    PromptHelpSettings,
    QueueSettings,
    Settings,
    StorageSettings,
    make_settings,
)
from stillhouse.db.engine import make_engine
from stillhouse.db.migrate import upgrade
from stillhouse.db.models import Delivery, GenerationJob
from tests.doubles.openai_chat import OpenAIChatDouble
from tests.support import free_port, wait_until

DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/stillhouse_test"
BACKENDS = ["sqlite", "mariadb"]


def mysql_test_url(database: str | None = None) -> str:
    """The MariaDB test URL, optionally for another database on the same server."""
    url = make_url(os.environ.get("STILLHOUSE_TEST_MYSQL_URL", DEFAULT_MYSQL_URL))
    return url.set(database=database or url.database).render_as_string(hide_password=False)


def create_mysql_database(url: str, *, fresh: bool = False) -> None:
    """CREATE DATABASE for `url` (dropping it first when fresh)."""
    parsed = make_url(url)
    server = create_engine(parsed.set(database=""), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            if fresh:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{parsed.database}`"))
    except Exception as exc:  # pragma: no cover - environment problem, say so plainly
        pytest.fail(f"MariaDB not reachable at {parsed.render_as_string()}: {exc}")
    finally:
        server.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database of each kind, shared by the session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'queue.sqlite3'}"
    else:
        url = mysql_test_url()
        create_mysql_database(url, fresh=True)
    engine = make_engine(make_settings(database={"url": url}), pool=False)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def mariadb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated MariaDB database for the multi-process tests (its own, fresh)."""
    url = mysql_test_url(make_url(mysql_test_url()).database + "_procs")
    create_mysql_database(url, fresh=True)
    engine = make_engine(make_settings(database={"url": url}), pool=False)
    upgrade(engine)
    engine.dispose()
    return url


def empty_queues(engine: Engine) -> None:
    """Delete every row from both queues."""
    with engine.begin() as conn:
        conn.execute(delete(Delivery))
        conn.execute(delete(GenerationJob))


def settings_for(url: str, **queue: float | int) -> Settings:
    """Settings pointing at `url`, with queue overrides."""
    return make_settings(database={"url": url}, queue=QueueSettings(**queue))  # type: ignore[arg-type]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty migrated database (each backend in turn)."""
    engine = make_engine(settings_for(database_url))
    empty_queues(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def mariadb_engine(mariadb_url: str) -> Iterator[Engine]:
    """An engine on the empty multi-process MariaDB database."""
    engine = make_engine(settings_for(mariadb_url))
    empty_queues(engine)
    yield engine
    engine.dispose()


class MemcachedServer:
    """A private memcached process that tests may stop and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        if not Path(binary).exists():
            pytest.fail("memcached is not installed (apt-get install -y memcached)")
        self._process = subprocess.Popen(
            [binary, "-u", "root", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout_s=10, what=f"memcached on {self.port}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def _answers(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"version\r\n")
                return sock.recv(64).startswith(b"VERSION")
        except OSError:
            return False


@pytest.fixture
def memcached() -> Iterator[MemcachedServer]:
    """A fresh private memcached on a free port."""
    server = MemcachedServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 in server mode: a real HTTP endpoint boto3 talks to."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_settings(moto_endpoint: str) -> StorageSettings:
    """Storage settings for a fresh bucket on moto."""
    import secrets

    import boto3

    bucket = f"images-{secrets.token_hex(4)}"
    settings = StorageSettings(
        backend="s3",
        s3_bucket=bucket,
        s3_endpoint_url=moto_endpoint,
        s3_access_key_id="testing-key-id",
        s3_secret_access_key="testing-secret-key",
    )
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing-key-id",
        aws_secret_access_key="testing-secret-key",
    ).create_bucket(Bucket=bucket)
    return settings


@pytest.fixture
def openai_chat() -> Iterator[OpenAIChatDouble]:
    """An OpenAI-compatible chat endpoint's double (text-only, like Llama 3.1 8B on vLLM);
    set `.vision`, `.stall`, `.delay_s`, `.error_status` or `.answer` to change it."""
    with OpenAIChatDouble().running() as double:
        yield double


@pytest.fixture
def prompt_help_settings(openai_chat: OpenAIChatDouble) -> PromptHelpSettings:
    """Prompt help pointed at the double, with a short whole-call limit for tests."""
    return PromptHelpSettings(url=openai_chat.url, model=openai_chat.model, timeout_s=2.0)
