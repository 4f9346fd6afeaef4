"""Opt-in: the worker against a real ComfyUI (see DEVELOPERS.md for running one).

Skipped unless STILLHOUSE_TEST_COMFY_URL points at a ComfyUI that has the random-weight
SD1.5 checkpoint (STILLHOUSE_TEST_COMFY_CKPT, default rand-sd15.safetensors).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from stillhouse.config import StorageSettings
from stillhouse.schemas.worker_io import WorkerOutput, parse_error
from tests.worker.comfy_double import running_double
from tests.worker.conftest import WorkerFactory
from tests.worker.harness import captured
from tests.worker.test_comfy_double import _run_and_record

COMFY_URL = os.environ.get("STILLHOUSE_TEST_COMFY_URL", "")
CKPT = os.environ.get("STILLHOUSE_TEST_COMFY_CKPT", "rand-sd15.safetensors")
pytestmark = pytest.mark.skipif(not COMFY_URL, reason="set STILLHOUSE_TEST_COMFY_URL to run")


def graph(width: int = 64, steps: int = 1, seed: int | None = None) -> dict[str, Any]:
    g = captured("txt2img_64_s1")
    g["4"]["inputs"]["ckpt_name"] = CKPT
    g["5"]["inputs"].update(width=width, height=width)
    g["3"]["inputs"].update(steps=steps, seed=seed if seed is not None else os.getpid())
    return g


def test_a_job_on_real_comfyui(
    start_worker: WorkerFactory, s3: Any, s3_settings: StorageSettings, tmp_path: Path
) -> None:
    worker = start_worker(attach_url=COMFY_URL, ws_inactivity_s=60)
    result = worker.run(graph(64, 1), timeout_s=600)
    assert "error" not in result, result
    output = WorkerOutput.model_validate(result)
    [image] = output.images
    body = s3.get_object(Bucket=s3_settings.s3_bucket, Key=image.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == image.sha256
    assert (image.width, image.height) == (64, 64)
    assert b"tEXt" not in body, "PNG metadata must be stripped"
    print(f"\nreal ComfyUI {output.comfy.version}: {output.timings.model_dump_json()}")


def test_real_comfyui_refuses_a_bad_graph_the_same_way(start_worker: WorkerFactory) -> None:
    worker = start_worker(attach_url=COMFY_URL)
    error = parse_error(worker.run(captured("bad_width"))["error"])
    assert (error.type, error.node_id, error.message) == (
        "invalid_graph",
        "5",
        "Value 100000 bigger than max of 16384: width",
    )


def test_the_double_sends_what_real_comfyui_sends() -> None:
    fresh = graph(64, 2, seed=12345 + os.getpid())
    warm = graph(72, 1, seed=54321 + os.getpid())

    def types(url: str) -> list[str]:
        asyncio.run(_run_and_record(url, warm))  # same cache state on both servers
        _, messages = asyncio.run(_run_and_record(url, fresh))
        return [m["type"] for m in messages if m["type"] != "status"]

    with running_double("--models", CKPT) as double_url:
        ours = types(double_url)
    theirs = types(COMFY_URL)
    assert ours == theirs, json.dumps({"double": ours, "real": theirs})


def test_a_second_job_waits_on_real_comfyuis_queue_and_runs_right_after_the_first(
    start_worker: WorkerFactory,
) -> None:
    """Two jobs held at once (a worker's concurrency 2): the second prompt is queued on
    ComfyUI while the first runs, and ComfyUI starts it as soon as the first ends."""
    import requests

    worker = start_worker(attach_url=COMFY_URL, ws_inactivity_s=60)
    worker.run(graph(64, 1), job_id="warm", timeout_s=600)  # the model loaded

    async def both() -> list[dict[str, Any]]:
        first = worker.run_async(graph(64, 2, seed=1 + os.getpid()), job_id="one", timeout_s=600)
        second = worker.run_async(graph(64, 2, seed=2 + os.getpid()), job_id="two", timeout_s=600)
        return list(await asyncio.gather(first, second))

    outputs = [WorkerOutput.model_validate(result) for result in asyncio.run(both())]
    history = requests.get(f"{COMFY_URL}/history", timeout=10).json()

    def stamp(output: WorkerOutput, kind: str) -> float:
        messages = history[output.comfy.prompt_id]["status"]["messages"]
        return next(data["timestamp"] for name, data in messages if name == kind) / 1000

    gap = stamp(outputs[1], "execution_start") - stamp(outputs[0], "execution_success")
    waited = outputs[1].timings.queue_ms / 1000
    print(
        f"\nreal ComfyUI: second prompt waited {waited:.2f} s queued, idle gap {gap * 1000:.0f} ms"
    )
    assert waited >= outputs[0].timings.execute_ms / 1000 / 2, "queued while the first ran"
    assert 0 <= gap <= 0.25
