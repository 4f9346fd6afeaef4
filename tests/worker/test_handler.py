"""The real worker handler against the ComfyUI double, one failure mode at a time."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from typing import Any

import pytest
from PIL import Image

from stillhouse.config import StorageSettings
from stillhouse.schemas.worker_io import ErrorInfo, WorkerOutput, parse_error
from tests.worker.comfy_double import running_double
from tests.worker.conftest import WorkerFactory
from tests.worker.harness import captured

TXT2IMG = captured("txt2img_64_s1")


def succeeded(result: dict[str, Any]) -> WorkerOutput:
    assert "error" not in result, result
    return WorkerOutput.model_validate(result)


def failed(result: dict[str, Any]) -> ErrorInfo:
    assert set(result) == {"error"}, result
    return parse_error(result["error"])


def batch(graph: dict[str, Any], count: int) -> dict[str, Any]:
    edited = json.loads(json.dumps(graph))
    edited["5"]["inputs"]["batch_size"] = count
    return edited


def test_a_job_uploads_private_images_with_their_sha256(
    start_worker: WorkerFactory, s3: Any, s3_settings: StorageSettings
) -> None:
    worker = start_worker()
    output = succeeded(worker.run(TXT2IMG, job_id="abc123"))
    [image] = output.images
    stored = s3.get_object(Bucket=s3_settings.s3_bucket, Key=image.key)
    data = stored["Body"].read()
    assert hashlib.sha256(data).hexdigest() == image.sha256 and len(data) == image.bytes
    assert stored["ContentType"] == "image/png" and image.content_type == "image/png"
    assert image.key.startswith("results/abc123/") and image.node_id == "9"
    with Image.open(io.BytesIO(data)) as png:
        assert png.size == (image.width, image.height) == (64, 64)
        assert "prompt" not in png.info, "the graph must not travel inside the PNG"
    assert output.comfy.version == "0.3.64" and output.comfy.prompt_id
    assert output.timings.execute_ms > 0 and output.timings.upload_ms > 0
    stages = [p.get("stage") for p in worker.progress]
    assert stages[:2] == ["starting ComfyUI", "queued"] and "uploading" in stages
    assert any(p.get("steps") == 1 for p in worker.progress)


def test_every_image_of_every_output_is_collected(start_worker: WorkerFactory) -> None:
    graph = batch(TXT2IMG, 3)
    graph["10"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["8", 0], "filename_prefix": "b"},
    }
    output = succeeded(start_worker().run(graph))
    assert len(output.images) == 6
    assert {i.node_id for i in output.images} == {"9", "10"}
    assert len({i.key for i in output.images}) == 6


def test_the_same_graph_twice_gives_new_images_despite_comfyuis_cache(
    start_worker: WorkerFactory,
) -> None:
    worker = start_worker()
    first = succeeded(worker.run(TXT2IMG, job_id="same"))
    again = succeeded(worker.run(TXT2IMG, job_id="same"))
    assert first.images[0].key != again.images[0].key


def test_a_failing_node_is_reported_with_its_id_type_and_message(
    start_worker: WorkerFactory,
) -> None:
    worker = start_worker("--fail-node", "3", "--fail-message", "Allocation on device failed")
    error = failed(worker.run(TXT2IMG))
    assert (error.type, error.node_id, error.node_type) == ("node_error", "3", "KSampler")
    assert error.message == "Allocation on device failed"
    assert error.retryable, "an out-of-memory error may pass on another worker"
    plain = start_worker(
        "--fail-node",
        "8",
        "--fail-type",
        "ValueError",
        "--fail-message",
        "bad value in /opt/ComfyUI/comfy/sd.py line 12",
    )
    error = failed(plain.run(TXT2IMG))
    assert not error.retryable and error.node_type == "VAEDecode"
    assert "/opt/ComfyUI" not in error.message and "<path>" in error.message


def test_a_graph_comfyui_refuses_is_a_clear_non_retryable_error(
    start_worker: WorkerFactory,
) -> None:
    worker = start_worker()
    error = failed(worker.run(captured("bad_width")))
    assert (error.type, error.node_id, error.node_type) == (
        "invalid_graph",
        "5",
        "EmptyLatentImage",
    )
    assert error.message == "Value 100000 bigger than max of 16384: width"
    assert not error.retryable


def test_a_slow_start_is_waited_for(start_worker: WorkerFactory) -> None:
    output = succeeded(start_worker("--start-delay", "2").run(TXT2IMG))
    assert output.timings.comfy_start_ms >= 2000


def test_comfyui_dying_at_start_fails_fast_with_its_last_words(start_worker: WorkerFactory) -> None:
    worker = start_worker("--die-on-start", startup_timeout_s=600)
    began = time.monotonic()
    error = failed(worker.run(TXT2IMG))
    assert time.monotonic() - began < 30, "waited for a process that had died"
    assert error.type == "comfy_unavailable" and error.retryable
    assert "no kernel image is available" in error.message


def test_comfyui_dying_mid_run_fails_the_job_and_is_restarted_for_the_next(
    start_worker: WorkerFactory,
) -> None:
    worker = start_worker("--die-during-run", ws_inactivity_s=0.5)
    error = failed(worker.run(TXT2IMG))
    assert error.type == "comfy_unavailable" and error.retryable
    assert worker.ctx.supervisor.starts == 1
    failed(worker.run(TXT2IMG))  # the restarted double dies again, by design
    assert worker.ctx.supervisor.starts == 2


@pytest.mark.parametrize("switch", ["--silent-ws", "--drop-ws"])
def test_a_silent_or_dropped_websocket_falls_back_to_history(
    start_worker: WorkerFactory, switch: str
) -> None:
    worker = start_worker(switch, "--step-time", "0.05", ws_inactivity_s=0.3)
    output = succeeded(worker.run(batch(TXT2IMG, 2)))
    assert len(output.images) == 2


def test_history_lagging_behind_success_is_waited_for(start_worker: WorkerFactory) -> None:
    worker = start_worker("--history-lag", "0.5", "--silent-ws", ws_inactivity_s=0.2)
    assert len(succeeded(worker.run(TXT2IMG)).images) == 1


def test_a_job_past_its_time_limit_interrupts_comfyui(start_worker: WorkerFactory) -> None:
    worker = start_worker("--hang")
    error = failed(worker.run(TXT2IMG, timeout_s=1))
    assert error.type == "timeout" and error.retryable


def test_cancelling_the_job_interrupts_comfyui(start_worker: WorkerFactory) -> None:
    worker = start_worker("--hang")

    async def cancel_mid_run() -> None:
        task = asyncio.create_task(worker.run_async(TXT2IMG))
        while not any(p.get("stage") == "running" for p in worker.progress):
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(cancel_mid_run(), timeout=30))
    import requests

    queue = requests.get(f"{worker.ctx.supervisor.url}/queue", timeout=5).json()
    deadline = time.monotonic() + 10
    while queue["queue_running"] and time.monotonic() < deadline:
        queue = requests.get(f"{worker.ctx.supervisor.url}/queue", timeout=5).json()
    assert queue["queue_running"] == [], "ComfyUI still runs the cancelled prompt"


def test_node_types_outside_the_allow_list_are_refused(start_worker: WorkerFactory) -> None:
    graph = json.loads(json.dumps(TXT2IMG))
    graph["20"] = {
        "class_type": "CheckpointSave",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "vae": ["4", 2],
            "filename_prefix": "checkpoints/stolen",
        },
    }
    worker = start_worker()
    error = failed(worker.run(graph))
    assert error.type == "invalid_input" and "CheckpointSave" in error.message
    assert not error.retryable
    assert worker.ctx.supervisor.starts == 0, "ComfyUI was bothered with a refused graph"


def test_a_broken_job_input_is_refused(start_worker: WorkerFactory) -> None:
    import asyncio as aio

    from worker.handler import handle

    worker = start_worker()
    error = failed(aio.run(handle({"id": "x", "input": {"job_id": "../etc"}}, worker.ctx)))
    assert error.type == "invalid_input" and not error.retryable
    wrong_bucket = {
        "id": "y",
        "input": {
            "job_id": "j",
            "workflow": TXT2IMG,
            "output": {"bucket": "someone-elses", "prefix": "p/"},
        },
    }
    error = failed(aio.run(handle(wrong_bucket, worker.ctx)))
    assert "someone-elses" in error.message


def test_attaching_to_a_running_comfyui(start_worker: WorkerFactory) -> None:
    with running_double() as url:
        worker = start_worker(attach_url=url)
        assert worker.ctx.supervisor.attached
        assert len(succeeded(worker.run(TXT2IMG)).images) == 1


def test_an_unreachable_attached_comfyui_is_a_retryable_error(start_worker: WorkerFactory) -> None:
    from tests.support import free_port

    worker = start_worker(attach_url=f"http://127.0.0.1:{free_port()}", startup_timeout_s=1)
    error = failed(worker.run(TXT2IMG))
    assert error.type == "comfy_unavailable" and error.retryable


def test_a_storage_outage_at_upload_is_waited_out_within_the_deadline(
    tmp_path: Any, s3_settings: StorageSettings
) -> None:
    """The image is made; S3 answers 503 for ~2 s: the worker retries the upload rather
    than failing the try (which would pay for the GPU again)."""
    from tests.doubles.s3_outage import S3Outage
    from tests.worker.harness import make_worker

    assert s3_settings.s3_endpoint_url
    proxy = S3Outage(s3_settings.s3_endpoint_url).start()
    worker = make_worker(tmp_path, s3_settings.model_copy(update={"s3_endpoint_url": proxy.url}))
    try:
        proxy.down = True

        async def outage_then_job() -> dict[str, Any]:
            job = asyncio.create_task(worker.run_async(TXT2IMG, timeout_s=30))
            while proxy.refused == 0 and not job.done():
                await asyncio.sleep(0.02)
            await asyncio.sleep(2)  # the outage goes on while the worker holds the image
            proxy.down = False
            return await job

        began = time.monotonic()
        output = succeeded(asyncio.run(outage_then_job()))
        assert len(output.images) == 1 and proxy.refused > 0
        assert time.monotonic() - began < 15
    finally:
        worker.stop()
        proxy.stop()


def test_no_output_leaks_a_secret_a_host_path_or_a_traceback(
    start_worker: WorkerFactory, tmp_path: Any, s3_settings: StorageSettings
) -> None:
    from tests.support import free_port

    secret_key = s3_settings.s3_secret_access_key
    assert secret_key is not None
    unreachable_storage = s3_settings.model_copy(
        update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    )
    from tests.worker.harness import make_worker

    down = make_worker(tmp_path / "down", unreachable_storage)
    try:
        outputs = [
            down.run(TXT2IMG, timeout_s=4),  # storage down until the deadline
            start_worker(
                "--fail-node",
                "3",
                "--fail-message",
                f"failed reading {tmp_path}/models/x.safetensors",
            ).run(TXT2IMG),
            start_worker("--die-on-start").run(TXT2IMG),
            start_worker().run(captured("bad_ckpt")),
        ]
    finally:
        down.stop()
    for output in outputs:
        text = json.dumps(output)
        error = failed(output)
        assert error.message
        for leak in (secret_key.get_secret_value(), str(tmp_path), "Traceback", 'File "'):
            assert leak not in text, (leak, text)
    assert failed(outputs[0]).type == "upload_failed" and failed(outputs[0]).retryable
