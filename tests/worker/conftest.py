"""Workers under test, stopped (with their ComfyUI double) after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from stillhouse.config import StorageSettings
from tests.worker.harness import Worker, make_worker

WorkerFactory = Callable[..., Worker]


@pytest.fixture
def start_worker(tmp_path: Path, s3_settings: StorageSettings) -> Iterator[WorkerFactory]:
    started: list[Worker] = []

    def start(*switches: str, **options: Any) -> Worker:
        worker = make_worker(tmp_path, s3_settings, *switches, **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def s3(s3_settings: StorageSettings) -> Any:
    """A boto3 client on the test bucket, to look at what the worker uploaded."""
    assert s3_settings.s3_access_key_id and s3_settings.s3_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=s3_settings.s3_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=s3_settings.s3_access_key_id.get_secret_value(),
        aws_secret_access_key=s3_settings.s3_secret_access_key.get_secret_value(),
    )
