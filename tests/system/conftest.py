"""The system tests use the fixtures of the bot tests (the Discord emulator, services on
MariaDB) and of the master tests (the RunPod double, a cluster of real processes)."""

from tests.bot.conftest import emu, maria_services
from tests.master.conftest import cluster, runpod_double

__all__ = ["cluster", "emu", "maria_services", "runpod_double"]
