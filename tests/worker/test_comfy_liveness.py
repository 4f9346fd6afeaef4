"""A ComfyUI that dies or freezes while a job runs is noticed within seconds, attached or
started by the worker; every wait ends at the job's deadline; a ComfyUI that cannot start
as configured says which setting to fix instead of being retried."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import site
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from stillhouse.schemas.worker_io import ErrorInfo, parse_error
from tests.support import free_port, wait_until
from tests.worker.comfy_double import ROOT, answers, double_command
from tests.worker.conftest import WorkerFactory
from tests.worker.harness import Worker, captured
from worker.handler import INTERRUPT_LIMIT_S
from worker.health import serve_in_thread

NOTICED_WITHIN_S = 10.0
TXT2IMG = captured("txt2img_64_s1")


def long_job(steps: int = 200) -> dict[str, Any]:
    graph = json.loads(json.dumps(TXT2IMG))
    graph["3"]["inputs"]["steps"] = steps
    return graph


def error_of(result: dict[str, Any]) -> ErrorInfo:
    assert set(result) == {"error"}, result
    return parse_error(result["error"])


def run_and_strike(
    worker: Worker, strike: Any, *, timeout_s: float = 120
) -> tuple[dict[str, Any], float]:
    """Run a long job; once ComfyUI reports a step, `strike()`; (result, seconds from the
    strike to the job's end)."""

    async def scenario() -> tuple[dict[str, Any], float]:
        task = asyncio.create_task(worker.run_async(long_job(), timeout_s=timeout_s))
        while not any(p.get("steps") for p in worker.progress):
            if task.done():
                return task.result(), 0.0
            await asyncio.sleep(0.02)
        strike()
        struck = time.monotonic()
        result = await task
        waited = time.monotonic() - struck
        print(f"\nstruck ComfyUI; the job ended {waited:.1f} s later: {result}")
        return result, waited

    return asyncio.run(asyncio.wait_for(scenario(), 300))


@pytest.fixture
def attached_double() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ComfyUI double someone else runs (its URL and process, to kill or freeze)."""
    port = free_port()
    command = shlex.split(double_command(port, "--step-time", "0.2"))
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(url), 20, what="the ComfyUI double")
    yield url, process
    os.killpg(process.pid, signal.SIGCONT)
    process.kill()
    process.wait(10)


def test_a_comfyui_killed_mid_job_is_noticed_within_10_s_and_started_again(
    start_worker: WorkerFactory,
) -> None:
    worker = start_worker("--step-time", "0.2", ws_inactivity_s=60)
    result, waited = run_and_strike(
        worker, lambda: os.killpg(worker.ctx.supervisor.process.pid, signal.SIGKILL)
    )
    error = error_of(result)
    assert error.type == "comfy_unavailable" and error.retryable
    assert waited <= NOTICED_WITHIN_S, f"noticed after {waited:.1f} s"
    assert "error" not in worker.run(TXT2IMG), "the next job runs on a fresh ComfyUI"
    assert worker.ctx.supervisor.starts == 2


def test_an_attached_comfyui_killed_mid_job_is_noticed_within_10_s(
    start_worker: WorkerFactory, attached_double: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = attached_double
    worker = start_worker(attach_url=url, ws_inactivity_s=60)
    result, waited = run_and_strike(worker, process.kill)
    error = error_of(result)
    assert error.type == "comfy_unavailable" and error.retryable
    assert waited <= NOTICED_WITHIN_S, f"noticed after {waited:.1f} s"


def test_a_frozen_comfyui_is_noticed_within_10_s_and_replaced(
    start_worker: WorkerFactory,
) -> None:
    worker = start_worker("--step-time", "0.2", ws_inactivity_s=60)
    result, waited = run_and_strike(
        worker, lambda: os.killpg(worker.ctx.supervisor.process.pid, signal.SIGSTOP)
    )
    error = error_of(result)
    assert error.type == "comfy_unavailable" and error.retryable
    assert waited <= NOTICED_WITHIN_S, f"noticed after {waited:.1f} s"
    assert "error" not in worker.run(TXT2IMG), "the frozen one was replaced"
    assert worker.ctx.supervisor.starts == 2


def test_a_frozen_attached_comfyui_fails_the_job_and_the_worker_reports_it(
    start_worker: WorkerFactory, attached_double: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = attached_double
    worker = start_worker(attach_url=url, ws_inactivity_s=60)
    port = free_port()
    serve_in_thread(worker.ctx.supervisor, "127.0.0.1", port)
    health = f"http://127.0.0.1:{port}"
    assert requests.get(f"{health}/healthz", timeout=10).status_code == 200
    result, waited = run_and_strike(worker, lambda: os.killpg(process.pid, signal.SIGSTOP))
    assert error_of(result).type == "comfy_unavailable" and waited <= NOTICED_WITHIN_S
    assert not worker.ctx.supervisor.healthy
    answer = requests.get(f"{health}/healthz", timeout=10)
    assert answer.status_code == 503 and "does not answer" in answer.text
    assert "stillhouse_worker_comfy_up 0" in requests.get(f"{health}/metrics", timeout=10).text
    os.killpg(process.pid, signal.SIGCONT)
    assert wait_until(lambda: requests.get(f"{health}/healthz", timeout=10).status_code == 200, 10)


def test_a_job_never_outlives_its_deadline_whatever_comfyui_does(
    start_worker: WorkerFactory,
) -> None:
    # The watchdog told to wait for ever: only the job's own deadline can end it.
    worker = start_worker("--step-time", "0.2", ws_inactivity_s=60, comfy_dead_after_s=3600)
    began = time.monotonic()
    result, _ = run_and_strike(
        worker,
        lambda: os.killpg(worker.ctx.supervisor.process.pid, signal.SIGSTOP),
        timeout_s=8,
    )
    elapsed = time.monotonic() - began
    assert error_of(result).type == "timeout"
    # ComfyUI's start, the 8 s, and at most INTERRUPT_LIMIT_S asking a frozen one to stop.
    assert elapsed <= 8 + INTERRUPT_LIMIT_S + 3, f"ran {elapsed:.1f} s for a job of 8 s"
    worker.ctx.supervisor.kill()


def test_the_wait_for_a_comfyui_that_is_down_ends_at_the_jobs_deadline(
    start_worker: WorkerFactory,
) -> None:
    worker = start_worker(attach_url=f"http://127.0.0.1:{free_port()}", startup_timeout_s=900)
    began = time.monotonic()
    error = error_of(worker.run(TXT2IMG, timeout_s=3))
    assert error.type in ("comfy_unavailable", "timeout") and error.retryable
    assert time.monotonic() - began <= 3 + 2


def comfy_folder(tmp_path: Path, main: str, *, venv: bool) -> Path:
    """A ComfyUI folder: its main.py and (optionally) venv/bin/python."""
    folder = tmp_path / "ComfyUI"
    folder.mkdir()
    (folder / "main.py").write_text(main)
    if venv:
        (folder / "venv" / "bin").mkdir(parents=True)
        (folder / "venv" / "bin" / "python").symlink_to(sys.executable)
    return folder


def test_comfy_dir_runs_main_py_with_that_folders_own_python(
    start_worker: WorkerFactory, tmp_path: Path
) -> None:
    main = (
        "import runpy, sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, *{site.getsitepackages()!r}]\n"
        "open('python-used', 'w').write(sys.executable)\n"
        "sys.argv = ['comfy', *sys.argv[1:]]\n"
        "runpy.run_module('tests.doubles.comfy', run_name='__main__')\n"
    )
    folder = comfy_folder(tmp_path, main, venv=True)
    port = free_port()
    worker = start_worker(comfy_command="", comfy_dir=folder, comfy_url=f"http://127.0.0.1:{port}")
    assert "error" not in worker.run(TXT2IMG)
    assert (folder / "python-used").read_text() == str(folder / "venv" / "bin" / "python")


def test_a_comfyui_that_cannot_start_as_configured_is_not_retried(
    start_worker: WorkerFactory, tmp_path: Path
) -> None:
    folder = comfy_folder(tmp_path, "import torch\n", venv=False)
    worker = start_worker(comfy_command="", comfy_dir=folder, comfy_python=sys.executable)
    error = error_of(worker.run(TXT2IMG))
    assert error.type == "comfy_misconfigured" and not error.retryable
    assert "No module named 'torch'" in error.message
    assert "STILLHOUSE_WORKER__COMFY_PYTHON" in error.message


def test_comfyuis_output_goes_to_a_rotating_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stillhouse.config import WorkerSettings
    from worker.comfy import supervisor as supervision

    monkeypatch.setattr(supervision, "LOG_BYTES", 2000)
    chatty = f"{sys.executable} -c \"[print('x' * 99) for _ in range(200)]\""
    settings = WorkerSettings(comfy_command=chatty, comfy_args="")
    keeper = supervision.Supervisor(settings, tmp_path)
    keeper.boot()
    assert keeper.process is not None
    keeper.process.wait(30)
    wait_until(lambda: (tmp_path / "comfyui.log.2").exists(), 10, what="rotation")
    logs = sorted(p.name for p in tmp_path.iterdir())
    assert logs == ["comfyui.log", "comfyui.log.1", "comfyui.log.2"], logs
    assert all(p.stat().st_size <= 2100 for p in tmp_path.iterdir())
