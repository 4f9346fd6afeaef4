"""What the worker makes of ComfyUI's answers: a partly invalid graph is a node error
(never a silent partial result), a preview is an output, a missing model is named without
the worker's model list, queue time is ComfyUI's own, and after every job its files are
gone from ComfyUI's output, input and temp folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stillhouse.schemas.worker_io import ErrorInfo, WorkerOutput, parse_error
from tests.worker.conftest import WorkerFactory
from tests.worker.harness import captured
from tests.worker.test_inputs import image_host, img2img

TXT2IMG = captured("txt2img_64_s1")
__all__ = ["image_host"]  # the module-scoped fixture, used here too


def error_of(result: dict[str, Any]) -> ErrorInfo:
    assert set(result) == {"error"}, result
    return parse_error(result["error"])


def edited(graph: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(graph))


def test_a_graph_comfyui_runs_only_in_part_fails_as_a_node_error(
    start_worker: WorkerFactory,
) -> None:
    graph = edited(TXT2IMG)
    # A second branch whose latent is out of bounds: ComfyUI answers 200, drops it, and
    # would run the first branch alone.
    graph["15"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 100_000, "height": 64, "batch_size": 1},
    }
    graph["16"] = {"class_type": "VAEDecode", "inputs": {"samples": ["15", 0], "vae": ["4", 2]}}
    graph["17"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["16", 0], "filename_prefix": "x"},
    }
    worker = start_worker()
    error = error_of(worker.run(graph))
    assert error.type == "node_error" and not error.retryable
    assert (error.node_id, error.node_type) == ("15", "EmptyLatentImage")
    assert "width" in error.message


def test_a_graph_ending_in_a_preview_returns_its_image(start_worker: WorkerFactory) -> None:
    graph = edited(TXT2IMG)
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    output = WorkerOutput.model_validate(start_worker().run(graph))
    [image] = output.images
    assert image.node_id == "9" and (image.width, image.height) == (64, 64)


def test_a_missing_model_is_named_without_the_workers_model_list(
    start_worker: WorkerFactory,
) -> None:
    graph = edited(TXT2IMG)
    graph["4"]["inputs"]["ckpt_name"] = "sdxl-base.safetensors"
    worker = start_worker("--models", "secret-model-a.safetensors,secret-model-b.safetensors")
    error = error_of(worker.run(graph))
    assert error.type == "invalid_graph" and error.node_id == "4"
    assert "'sdxl-base.safetensors' is not installed on this worker" in error.message
    assert "secret-model" not in error.message


def test_queue_time_is_comfyuis_own_after_a_websocket_fallback(
    start_worker: WorkerFactory,
) -> None:
    graph = edited(TXT2IMG)
    graph["3"]["inputs"]["steps"] = 10
    worker = start_worker("--silent-ws", "--step-time", "0.1", ws_inactivity_s=0.2)
    output = WorkerOutput.model_validate(worker.run(graph))
    assert output.timings.execute_ms >= 900
    assert output.timings.queue_ms < 500, "the whole run was counted as queueing"


def test_fifty_jobs_leave_no_file_in_comfyuis_folders(
    start_worker: WorkerFactory, tmp_path: Path, image_host: str
) -> None:
    base = tmp_path / "comfy-base"
    worker = start_worker("--base-directory", str(base), comfy_base_dir=base)
    preview = edited(TXT2IMG)
    preview["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    repaint, inputs = img2img(f"{image_host}/photo.png")
    for n in range(50):
        graph, staged = [(edited(TXT2IMG), []), (preview, []), (repaint, inputs)][n % 3]
        graph["3"]["inputs"]["seed"] = n
        result = worker.run(graph, job_id=f"job{n}", inputs=staged)
        assert "error" not in result, result
    left = [p for p in base.rglob("*") if p.is_file()]
    assert left == [], f"{len(left)} files left, e.g. {left[:3]}"
