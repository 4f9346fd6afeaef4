"""Opt-in: what the worker does when a real ComfyUI fails, in both modes.

Attached (STILLHOUSE_TEST_COMFY_URL, a ComfyUI someone runs, with the random-weight SD1.5
as STILLHOUSE_TEST_COMFY_CKPT): a partly invalid graph, a preview graph, a missing model,
a ComfyUI that is down. Started by the worker (STILLHOUSE_TEST_COMFY_DIR, a ComfyUI folder,
and STILLHOUSE_TEST_COMFY_PYTHON, its Python; on the CPU): killed or frozen mid-job,
noticed within 10 s and started again; a second ComfyUI started from that folder and
attached to, killed mid-job; STILLHOUSE_TEST_COMFY_JOBS jobs (default 10) that leave no
file behind. See DEVELOPERS.md for setting one up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stillhouse.schemas.worker_io import WorkerOutput
from tests.support import free_port, wait_until
from tests.worker.comfy_double import answers
from tests.worker.conftest import WorkerFactory
from tests.worker.test_comfy_liveness import NOTICED_WITHIN_S, error_of, run_and_strike
from tests.worker.test_real_comfyui import CKPT, COMFY_URL, graph
from worker.handler import INTERRUPT_LIMIT_S

COMFY_DIR = os.environ.get("STILLHOUSE_TEST_COMFY_DIR", "")
COMFY_PYTHON = os.environ.get("STILLHOUSE_TEST_COMFY_PYTHON", "")
JOBS = int(os.environ.get("STILLHOUSE_TEST_COMFY_JOBS", "10"))
attached = pytest.mark.skipif(not COMFY_URL, reason="set STILLHOUSE_TEST_COMFY_URL to run")
supervised = pytest.mark.skipif(
    not (COMFY_DIR and COMFY_PYTHON),
    reason="set STILLHOUSE_TEST_COMFY_DIR and STILLHOUSE_TEST_COMFY_PYTHON to run",
)
START_S = 600  # a CPU ComfyUI loads the model on its first job


def folders(base: Path) -> str:
    """ComfyUI arguments that keep this test's files apart from the folder's own."""
    return (
        f"--cpu --disable-metadata --output-directory {base / 'output'} "
        f"--input-directory {base / 'input'} --temp-directory {base}"
    )


def slow_graph() -> dict[str, Any]:
    return graph(256, 8)  # some tens of seconds on a CPU: time to strike


@attached
def test_real_comfyui_running_a_graph_in_part_is_a_node_error(start_worker: WorkerFactory) -> None:
    g = graph(64, 1)
    g["15"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 100_000, "height": 64, "batch_size": 1},
    }
    g["16"] = {"class_type": "VAEDecode", "inputs": {"samples": ["15", 0], "vae": ["4", 2]}}
    g["17"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["16", 0], "filename_prefix": "x"},
    }
    error = error_of(start_worker(attach_url=COMFY_URL).run(g, timeout_s=START_S))
    assert error.type == "node_error" and error.node_id == "15" and not error.retryable


@attached
def test_real_comfyui_preview_graph_returns_its_image(start_worker: WorkerFactory) -> None:
    g = graph(64, 1)
    g["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    result = start_worker(attach_url=COMFY_URL, ws_inactivity_s=60).run(g, timeout_s=START_S)
    [image] = WorkerOutput.model_validate(result).images
    assert (image.width, image.height) == (64, 64)


@attached
def test_real_comfyui_missing_model_is_named_without_the_list(
    start_worker: WorkerFactory,
) -> None:
    g = graph(64, 1)
    g["4"]["inputs"]["ckpt_name"] = "not-here.safetensors"
    error = error_of(start_worker(attach_url=COMFY_URL).run(g))
    assert error.message == "ckpt_name: 'not-here.safetensors' is not installed on this worker"
    assert CKPT not in error.message


@attached
def test_a_down_comfyui_is_waited_for_only_until_the_jobs_deadline(
    start_worker: WorkerFactory,
) -> None:
    worker = start_worker(attach_url=f"http://127.0.0.1:{free_port()}", startup_timeout_s=900)
    began = time.monotonic()
    error = error_of(worker.run(graph(64, 1), timeout_s=3))
    assert error.retryable and time.monotonic() - began <= 5


@pytest.fixture
def own_comfyui(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A second real ComfyUI from the folder, for a test that kills it."""
    port = free_port()
    command = [COMFY_PYTHON, "main.py", "--listen", "127.0.0.1", "--port", str(port)]
    command += folders(tmp_path).split()
    with (tmp_path / "comfy.log").open("ab") as log:
        process = subprocess.Popen(
            command, cwd=COMFY_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(url), 300, 0.5, what="a real ComfyUI")
    yield url, process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


@supervised
def test_real_comfyui_killed_mid_job_is_noticed_within_10_s_when_attached(
    start_worker: WorkerFactory, own_comfyui: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = own_comfyui
    worker = start_worker(attach_url=url, ws_inactivity_s=60)
    result, waited = run_and_strike(
        worker, lambda: os.killpg(process.pid, signal.SIGKILL), timeout_s=START_S
    )
    assert error_of(result).type == "comfy_unavailable"
    assert waited <= NOTICED_WITHIN_S, f"noticed after {waited:.1f} s"


def supervised_worker(start_worker: WorkerFactory, base: Path) -> Any:
    return start_worker(
        comfy_command="",
        comfy_dir=Path(COMFY_DIR),
        comfy_python=Path(COMFY_PYTHON),
        comfy_args=folders(base),
        comfy_base_dir=base,
        startup_timeout_s=300,
        ws_inactivity_s=60,
    )


@supervised
@pytest.mark.parametrize("strike", [signal.SIGKILL, signal.SIGSTOP])
def test_real_comfyui_killed_or_frozen_is_noticed_within_10_s_and_restarted(
    start_worker: WorkerFactory, tmp_path: Path, strike: signal.Signals
) -> None:
    worker = supervised_worker(start_worker, tmp_path)
    result, waited = run_and_strike(
        worker, lambda: os.killpg(worker.ctx.supervisor.process.pid, strike), timeout_s=START_S
    )
    assert error_of(result).type == "comfy_unavailable"
    assert waited <= NOTICED_WITHIN_S, f"noticed after {waited:.1f} s"
    again = worker.run(graph(64, 1), timeout_s=START_S)
    assert "error" not in again, again
    assert worker.ctx.supervisor.starts == 2


@supervised
def test_real_comfyui_jobs_leave_no_file_behind(
    start_worker: WorkerFactory, tmp_path: Path
) -> None:
    worker = supervised_worker(start_worker, tmp_path)
    for n in range(JOBS):
        g = graph(64, 1, seed=n)
        if n % 2:
            g["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
        result = worker.run(g, job_id=f"job{n}", timeout_s=START_S)
        assert "error" not in result, result
    left = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".png"]
    assert left == [], f"{len(left)} images left, e.g. {left[:3]}"


@supervised
def test_a_frozen_real_comfyui_never_holds_a_job_past_its_deadline(
    start_worker: WorkerFactory, tmp_path: Path
) -> None:
    # The watchdog told to wait for ever: only the job's own deadline can end it.
    worker = start_worker(
        comfy_command="",
        comfy_dir=Path(COMFY_DIR),
        comfy_python=Path(COMFY_PYTHON),
        comfy_args=folders(tmp_path),
        comfy_dead_after_s=3600,
        startup_timeout_s=300,
        ws_inactivity_s=60,
    )
    assert "error" not in worker.run(graph(64, 1), timeout_s=START_S), "warm-up"
    worker.progress.clear()  # else the warm-up's steps strike before the job is even sent
    began = time.monotonic()
    result, _ = run_and_strike(
        worker, lambda: os.killpg(worker.ctx.supervisor.process.pid, signal.SIGSTOP), timeout_s=30
    )
    elapsed = time.monotonic() - began
    print(f"\na job of 30 s on a frozen ComfyUI ended after {elapsed:.1f} s")
    # The deadline, plus at most INTERRUPT_LIMIT_S spent asking the frozen ComfyUI to stop.
    assert error_of(result).type == "timeout" and 30 - 1 <= elapsed <= 30 + INTERRUPT_LIMIT_S + 1
    worker.ctx.supervisor.kill()
