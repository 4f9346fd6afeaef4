"""What the benchmarks share: a fresh MariaDB database of their own, and moto's S3."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/stillhouse_test"


def bench_database_url(suffix: str) -> str:
    """The test database URL, for the database `<test db>_<suffix>`."""
    url = make_url(os.environ.get("STILLHOUSE_TEST_MYSQL_URL", DEFAULT_MYSQL_URL))
    return url.set(database=f"{url.database}_{suffix}").render_as_string(hide_password=False)


def fresh_database(url: str) -> None:
    """Drop and recreate the database, then migrate it to the newest schema."""
    from stillhouse.config import make_settings
    from stillhouse.db.engine import make_engine
    from stillhouse.db.migrate import upgrade

    parsed = make_url(url)
    server = create_engine(parsed.set(database=""), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
        conn.execute(text(f"CREATE DATABASE `{parsed.database}`"))
    server.dispose()
    engine = make_engine(make_settings(database={"url": url}), pool=False)
    upgrade(engine)
    engine.dispose()


class MotoProcess:
    """moto's S3 server as a process of its own (as S3 is to a deployment): served from
    the bench's process it would share that process's GIL with the doubles there, and
    every upload and download would wait on the harness."""

    def __init__(self) -> None:
        import subprocess
        import sys

        from tests.support import free_port

        self.port = free_port()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def get_host_and_port(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)


def start_moto(bucket: str = "bench", own_process: bool = False) -> tuple[Any, Any]:
    """moto's S3 server on a free port with `bucket` (in this process, or in a process of
    its own); (server, StorageSettings)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from stillhouse.config import StorageSettings

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server: Any
    if own_process:
        server = MotoProcess()
    else:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
    )

    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            break
        except Exception:  # not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return server, StorageSettings(
        backend="s3",
        s3_bucket=bucket,
        s3_endpoint_url=endpoint,
        s3_access_key_id="bench",
        s3_secret_access_key="bench-secret",
    )
