"""GPU duty cycle: how much of a worker's time its ComfyUI spends executing prompts, with
the worker holding a second job (pipelined: the next prompt queued on ComfyUI behind the
running one, uploads off its path) and, as the baseline in the same run, holding one.

    python bench/gpu_duty_cycle.py [--jobs 200] [--check]

Everything runs as on RunPod: the real runpod worker SDK loop in its own process (`python
-m worker`) taking jobs from the RunPod-compatible endpoint double's worker API (long
polls, job-done posts), our handler, the ComfyUI double at a GPU's speed (20 sampler steps
of 20 ms plus a 50 ms VAE decode, 512x512 PNGs of about 400 KB saved as ComfyUI saves
them), uploads to moto's S3. The jobs are all submitted at once, so the worker never waits
for work. Duty cycle = sum of ComfyUI's own execution times (execution_start to
execution_success, as ComfyUI stamps them) / wall time from the first job taken to the
last job's result posted. --check fails below 0.98 pipelined.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _shared import start_moto  # noqa: E402

from tests.doubles.runpod.server import RunPodDouble  # noqa: E402
from tests.master.cluster import Cluster  # noqa: E402
from tests.support import wait_until  # noqa: E402
from tests.worker.harness import captured  # noqa: E402

TARGET = 0.98
STEPS, STEP_S, DECODE_S, SIZE = 20, 0.020, 0.050, 512
COMFY = ("--step-time", str(STEP_S), "--decode-time", str(DECODE_S), "--textured")


def job_input(number: int) -> dict[str, Any]:
    graph = captured("txt2img_64_s1")
    graph["5"]["inputs"].update(width=SIZE, height=SIZE)
    graph["3"]["inputs"].update(steps=STEPS, seed=number)
    return {
        "job_id": f"duty{number:05d}",
        "workflow": graph,
        "output": {"bucket": "bench", "prefix": "duty/"},
        "timeout_s": 600,
    }


def submit(double: RunPodDouble, number: int) -> str:
    """A job on the endpoint's hosted API, as a master submits it."""
    answer = requests.post(
        f"{double.base_url}/{double.endpoint_id}/run",
        json={"input": job_input(number)},
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


def run(storage: Any, jobs: int, concurrency: int) -> tuple[float, float, list[float]]:
    """(sum of ComfyUI execution s, wall s, per-job gap s) for `jobs` jobs on one worker
    holding `concurrency` jobs at once."""
    double = RunPodDouble().start()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), double, storage, database_url="")
        try:
            cluster.start_worker(
                "w", *COMFY, env={"STILLHOUSE_WORKER__CONCURRENCY": str(concurrency)}
            )
            warm = submit(double, 0)  # starts ComfyUI; not counted
            wait_until(lambda: double.state.jobs[warm].status == "COMPLETED", 120, 0.05)
            ids = [submit(double, n) for n in range(1, jobs + 1)]
            wait_until(
                lambda: all(double.state.jobs[i].status in ("COMPLETED", "FAILED") for i in ids),
                30 + jobs * 3,
                0.05,
                what="every job",
            )
            done = [double.state.jobs[i] for i in ids]
            failed = [j.error for j in done if j.status != "COMPLETED"]
            assert not failed, f"{len(failed)} jobs failed: {failed[:3]}"
            timings = [j.output["timings"] for j in done]
            executed = sum(t["execute_ms"] for t in timings) / 1000
            began = min(float(j.started_wall or 0) for j in done)
            ended = max(float(j.finished_wall or 0) for j in done)
            return executed, ended - began, [t["queue_ms"] / 1000 for t in timings]
        finally:
            cluster.stop_all()
            double.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    moto, storage = start_moto()
    try:
        results = {held: run(storage, args.jobs, held) for held in (1, 2)}
    finally:
        moto.stop()
    per_job = STEPS * STEP_S + DECODE_S
    print(
        f"GPU duty cycle: {args.jobs} jobs back to back on one worker, ComfyUI double at "
        f"{per_job * 1000:.0f} ms per {SIZE}x{SIZE} image ({STEPS} steps), S3 uploads"
    )
    print(f"{'worker holds':<14} {'executing s':>12} {'wall s':>8} {'duty cycle':>11}")
    duty = {}
    for held, (executed, wall, _) in results.items():
        duty[held] = executed / wall
        label = "1 job" if held == 1 else f"{held} jobs"
        print(f"{label:<14} {executed:>12.2f} {wall:>8.2f} {duty[held]:>11.3f}")
    print(
        f"pipelined duty cycle {duty[2]:.3f} against {duty[1]:.3f} holding one job "
        f"({duty[2] / duty[1]:.2f}x); target >= {TARGET}"
    )
    if args.check and duty[2] < TARGET:
        print("FAIL: target missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
