"""A RunPod double, a clean MariaDB queue and a cluster of real processes per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from stillhouse.config import QueueSettings, StorageSettings
from stillhouse.queue import GenerationQueue
from tests.doubles.runpod.server import RunPodDouble
from tests.master.cluster import Cluster


@pytest.fixture
def runpod_double() -> Iterator[RunPodDouble]:
    double = RunPodDouble().start()
    yield double
    double.stop()


@pytest.fixture
def cluster(
    tmp_path: Path,
    runpod_double: RunPodDouble,
    s3_settings: StorageSettings,
    mariadb_url: str,
    mariadb_engine: Engine,
) -> Iterator[Cluster]:
    made = Cluster(tmp_path, runpod_double, s3_settings, mariadb_url)
    yield made
    made.stop_all()


@pytest.fixture
def queue(mariadb_engine: Engine) -> GenerationQueue:
    return GenerationQueue(mariadb_engine, QueueSettings(backoff_base_s=0.2, backoff_max_s=1))
