"""The handler inside the real runpod SDK's local API (`python -m worker --rp_serve_api`)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from stillhouse.config import StorageSettings
from stillhouse.schemas.worker_io import WorkerOutput, parse_error
from tests.support import free_port, wait_until
from tests.worker.comfy_double import double_command
from tests.worker.harness import captured

ROOT = Path(__file__).resolve().parents[2]


def environment(storage: StorageSettings, tmp_path: Path, comfy_port: int) -> dict[str, str]:
    assert storage.s3_access_key_id and storage.s3_secret_access_key and storage.s3_bucket
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STILLHOUSE_", "RUNPOD_"))}
    return {
        **clean,
        "STILLHOUSE_DATA_DIR": str(tmp_path),
        "STILLHOUSE_LOG__FORMAT": "text",
        "STILLHOUSE_STORAGE__BACKEND": "s3",
        "STILLHOUSE_STORAGE__S3_BUCKET": storage.s3_bucket,
        "STILLHOUSE_STORAGE__S3_ENDPOINT_URL": storage.s3_endpoint_url or "",
        "STILLHOUSE_STORAGE__S3_ACCESS_KEY_ID": storage.s3_access_key_id.get_secret_value(),
        "STILLHOUSE_STORAGE__S3_SECRET_ACCESS_KEY": storage.s3_secret_access_key.get_secret_value(),
        "STILLHOUSE_WORKER__COMFY_URL": f"http://127.0.0.1:{comfy_port}",
        "STILLHOUSE_WORKER__COMFY_COMMAND": double_command(comfy_port),
    }


@pytest.fixture(params=["python -m worker", "stillhouse worker"])
def local_api(
    request: pytest.FixtureRequest, s3_settings: StorageSettings, tmp_path: Path
) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "worker.log").open("wb")
    entry = (
        ["-m", "worker"] if request.param == "python -m worker" else ["-m", "stillhouse", "worker"]
    )
    process = subprocess.Popen(
        [
            sys.executable,
            *entry,
            "--rp_serve_api",
            "--rp_api_host",
            "127.0.0.1",
            "--rp_api_port",
            str(port),
        ],
        cwd=ROOT,
        env=environment(s3_settings, tmp_path, free_port()),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/docs", timeout=1).status_code == 200
        except requests.RequestException:
            return process.poll() is not None  # stop waiting: it died

    try:
        wait_until(up, timeout_s=60, what="the runpod local API")
        assert process.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        log.close()


def job_input(graph: dict[str, Any], bucket: str, job_id: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "workflow": graph,
        "output": {"bucket": bucket, "prefix": "results/"},
        "timeout_s": 120,
    }


def run_and_poll(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    queued = requests.post(f"{url}/run", json={"input": payload}, timeout=30).json()
    assert queued["status"] == "IN_PROGRESS"

    def finished() -> dict[str, Any] | None:
        # The local API runs the job when its status is asked for, then forgets it.
        answer = requests.post(f"{url}/status/{queued['id']}", timeout=120).json()
        return answer if answer.get("status") in ("COMPLETED", "FAILED") else None

    return wait_until(finished, timeout_s=120, what="the job to finish")


def test_a_job_through_runpods_local_api_lands_in_s3(
    local_api: str, s3_settings: StorageSettings, s3: Any
) -> None:
    assert s3_settings.s3_bucket
    graph = captured("txt2img_64_s1")
    graph["5"]["inputs"]["batch_size"] = 2
    answer = run_and_poll(local_api, job_input(graph, s3_settings.s3_bucket, "rp1"))
    assert answer["status"] == "COMPLETED", answer
    output = WorkerOutput.model_validate(answer["output"])
    assert len(output.images) == 2
    for image in output.images:
        body = s3.get_object(Bucket=image.bucket, Key=image.key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == image.sha256


def test_a_failure_through_runpods_local_api_is_structured(
    local_api: str, s3_settings: StorageSettings
) -> None:
    assert s3_settings.s3_bucket
    answer = run_and_poll(local_api, job_input(captured("bad_link"), s3_settings.s3_bucket, "rp2"))
    assert answer["status"] == "FAILED"
    error = parse_error(answer["error"])
    assert (error.type, error.node_id, error.node_type) == ("invalid_graph", "3", "KSampler")
    assert "Traceback" not in str(answer)
