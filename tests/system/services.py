"""Services a system test may crash and restart: a MariaDB server of its own."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.support import free_port, wait_until


class PrivateMariaDB:
    """A MariaDB server of this test's own, which it may stop and start."""

    def __init__(self, folder: Path) -> None:
        self.data = folder / "mariadb"
        self.port = free_port()
        self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/stillhouse"
        self._process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--user=root",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={self.data}",
                f"--port={self.port}",
                f"--socket={self.data}/mariadb.sock",
                "--bind-address=127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, 30, 0.1, what="the private MariaDB")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=60)
            self._process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: the next start() recovers from InnoDB's log."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=60)
            self._process = None

    def _answers(self) -> bool:
        engine = create_engine(self.url.rsplit("/", 1)[0] + "/")
        try:
            with engine.connect() as conn:
                conn.execute(text("CREATE DATABASE IF NOT EXISTS stillhouse"))
            return True
        except Exception:  # not up yet
            return False
        finally:
            engine.dispose()
