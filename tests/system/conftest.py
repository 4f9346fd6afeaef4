"""The system tests use the fixtures of the bot tests (the Discord emulator, services on
MariaDB) and of the master tests (the RunPod double, a cluster of real processes), and a
MariaDB server of their own that they may stop, kill and restart."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from stillhouse.db.engine import make_engine
from stillhouse.db.migrate import upgrade
from tests.bot.conftest import emu, maria_services
from tests.conftest import settings_for
from tests.master.conftest import cluster, runpod_double
from tests.system.services import PrivateMariaDB

__all__ = ["cluster", "emu", "maria_services", "runpod_double"]


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB(tmp_path)
    server.start()
    engine = make_engine(settings_for(server.url), pool=False)
    upgrade(engine)
    engine.dispose()
    yield server
    server.stop()
