"""`stillhouse up` with a local worker behaves as production does on RunPod: progress
reaches the API within 2 s of ComfyUI's first step, a cancelled running job is stopped on
ComfyUI within 2 s, and the next job starts at once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import wait_until
from tests.system.up_process import Up, start_up

pytestmark = pytest.mark.slow
STEP_S = "0.25"  # a sampler step of the double


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    process, running = start_up(tmp_path, "--step-time", STEP_S)
    yield running
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def comfy_events(history: dict[str, Any], kind: str) -> list[float]:
    """When ComfyUI recorded `kind` for each prompt (epoch seconds)."""
    return [
        float(data["timestamp"]) / 1000
        for entry in history.values()
        for name, data in entry["status"]["messages"]
        if name == kind
    ]


def test_progress_reaches_the_api_within_2_s_of_comfyuis_first_step(up: Up) -> None:
    generation = up.post(steps=20)
    progressed = wait_until(
        lambda: up.view(generation)["progress"] is not None and time.time(), 30, 0.02
    )
    done = wait_until(lambda: up.view(generation)["status"] == "succeeded", 60, 0.1)
    assert done
    [started] = comfy_events(up.history(), "execution_start")
    first_step = started + float(STEP_S)  # the sampler's first step ends one step in
    assert progressed - first_step <= 2.0, f"progress {progressed - first_step:.2f} s late"


def test_a_cancelled_running_job_stops_within_2_s_and_the_next_starts_at_once(up: Up) -> None:
    first = up.post(steps=60)  # 15 s unless stopped
    wait_until(lambda: up.view(first)["status"] == "running", 60, 0.05, what="running")
    wait_until(lambda: up.view(first)["progress"] is not None, 30, 0.05, what="a step")
    cancelled = time.time()
    answer = requests.delete(f"{up.api}/v1/generations/{first}", timeout=10)
    assert answer.status_code == 200, answer.text
    second = up.post(steps=2)
    [stopped] = wait_until(
        lambda: comfy_events(up.history(), "execution_interrupted"), 10, 0.05, what="stopped"
    )
    assert stopped - cancelled <= 2.0, f"ComfyUI stopped {stopped - cancelled:.2f} s later"
    wait_until(lambda: up.view(second)["status"] == "succeeded", 30, 0.1, what="the next job")
    assert up.view(first)["status"] == "cancelled"
    starts = sorted(comfy_events(up.history(), "execution_start"))
    assert len(starts) == 2 and starts[1] - stopped <= 2.0, "the next job waited"
