"""The worker's job loop as it runs on RunPod (`python -m worker`: the real runpod SDK
polling the endpoint double, our handler, a ComfyUI double): the GPU goes from one prompt
to the next without waiting for the worker, and the worker holds no more jobs than its
concurrency."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from stillhouse.config import StorageSettings
from tests.doubles.runpod.server import RunPodDouble
from tests.doubles.runpod.state import Job
from tests.master.cluster import Cluster
from tests.support import wait_until
from tests.worker.harness import captured

STEPS, STEP_S = 10, 0.03  # about 0.3 s a prompt
GAP_S = 0.05  # ComfyUI idle between two prompts (the SDK alone used to leave 0.1 to 1 s)


@pytest.fixture
def endpoint() -> Iterator[RunPodDouble]:
    double = RunPodDouble().start()
    yield double
    double.stop()


def submit(double: RunPodDouble, bucket: str, number: int) -> str:
    graph = captured("txt2img_64_s1")
    graph["3"]["inputs"].update(steps=STEPS, seed=number)
    job_input = {
        "job_id": f"loop{number:03d}",
        "workflow": graph,
        "output": {"bucket": bucket, "prefix": "loop/"},
        "timeout_s": 60,
    }
    answer = requests.post(
        f"{double.base_url}/{double.endpoint_id}/run", json={"input": job_input}, timeout=10
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


def run_jobs(
    tmp_path: Path, double: RunPodDouble, storage: StorageSettings, count: int, concurrency: int
) -> tuple[list[Job], list[dict[str, Any]], int]:
    """`count` jobs submitted at once to one worker: the endpoint's records of them, the
    ComfyUI history entries of their prompts in order, the most jobs held at once."""
    cluster = Cluster(tmp_path, double, storage, database_url="")
    try:
        comfy = cluster.start_worker(
            "w",
            "--step-time",
            str(STEP_S),
            env={"STILLHOUSE_WORKER__CONCURRENCY": str(concurrency)},
        )
        assert storage.s3_bucket
        warm = submit(double, storage.s3_bucket, 0)  # starts ComfyUI
        wait_until(lambda: double.state.jobs[warm].status == "COMPLETED", 60, 0.05)
        ids = [submit(double, storage.s3_bucket, n) for n in range(1, count + 1)]
        most_held = 0

        def all_done() -> bool:
            nonlocal most_held
            most_held = max(most_held, len(double.state.workers["w"].current))
            return all(double.state.jobs[i].status == "COMPLETED" for i in ids)

        wait_until(all_done, 60, 0.01, what="every job")
        jobs = [double.state.jobs[i] for i in ids]
        history = requests.get(f"{comfy}/history", timeout=5).json()
        prompts = [history[j.output["comfy"]["prompt_id"]] for j in jobs]
        return jobs, prompts, most_held
    finally:
        cluster.stop_all()


def stamp(entry: dict[str, Any], kind: str) -> float:
    """When ComfyUI says the prompt started or succeeded (seconds)."""
    for message, data in entry["status"]["messages"]:
        if message == kind:
            return float(data["timestamp"]) / 1000
    raise AssertionError(f"no {kind} in {entry['status']}")


def test_holding_two_jobs_the_next_prompt_waits_on_comfyui_and_starts_without_a_gap(
    tmp_path: Path, endpoint: RunPodDouble, s3_settings: StorageSettings
) -> None:
    jobs, prompts, most_held = run_jobs(tmp_path, endpoint, s3_settings, 6, concurrency=2)
    assert most_held <= 2, f"the worker held {most_held} jobs at once"
    gaps = [
        stamp(later, "execution_start") - stamp(earlier, "execution_success")
        for earlier, later in itertools.pairwise(prompts)
    ]
    assert max(gaps) <= GAP_S, f"ComfyUI idle between prompts: {gaps}"
    waited = [j.output["timings"]["queue_ms"] / 1000 for j in jobs[1:]]
    # Queued on ComfyUI while the prompt before it ran, not after it ended.
    assert min(waited) >= STEPS * STEP_S / 3, waited


def test_holding_one_job_the_worker_takes_the_next_as_soon_as_one_ends(
    tmp_path: Path, endpoint: RunPodDouble, s3_settings: StorageSettings
) -> None:
    jobs, _, most_held = run_jobs(tmp_path, endpoint, s3_settings, 4, concurrency=1)
    assert most_held == 1
    handovers = [
        float(later.started_wall or 0) - float(earlier.finished_wall or 0)
        for earlier, later in itertools.pairwise(jobs)
    ]
    assert max(handovers) <= 0.1, f"seconds from a result to the next job taken: {handovers}"
