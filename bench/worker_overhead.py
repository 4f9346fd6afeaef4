"""Worker overhead: the handler's wall time per job against ComfyUI's own execution time
for the same job (execution_start -> execution_success, as ComfyUI stamps them).

    python bench/worker_overhead.py [--comfy-url URL --ckpt NAME] [--size 512] [--jobs 5] [--check]

Without --comfy-url the worker starts the ComfyUI double (20 sampler steps of 50 ms);
with it, the worker attaches to that ComfyUI (e.g. one loaded with the random SD1.5 from
../shared/comfy/make_random_sd15.py). Images go to moto's S3, started here. The first job
is a warm-up (model load) and is not counted. --check fails above 5 % overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _shared import start_moto

from stillhouse.config import WorkerSettings, make_settings
from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.worker_io import OutputTarget, WorkerInput, WorkerOutput
from worker.handler import handle
from worker.main import make_context

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "tests" / "fixtures" / "comfy" / "workflows" / "txt2img_64_s1.json"


def graph(size: int, steps: int, seed: int, ckpt: str) -> ComfyGraph:
    g = ComfyGraph.model_validate_json(GRAPH.read_text())
    g.root["4"].inputs["ckpt_name"] = ckpt
    g.root["5"].inputs.update(width=size, height=size)
    g.root["3"].inputs.update(steps=steps, seed=seed)
    return g


def worker_settings(args: argparse.Namespace) -> WorkerSettings:
    if args.comfy_url:
        return WorkerSettings(comfy_url=args.comfy_url, ws_inactivity_s=300)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "tests.doubles.comfy",
        "--port",
        str(port),
        "--step-time",
        "0.05",
        "--models",
        args.ckpt,
    ]
    return WorkerSettings(comfy_url=f"http://127.0.0.1:{port}", comfy_command=shlex.join(command))


async def one_job(ctx: Any, job_graph: ComfyGraph, number: int) -> tuple[float, WorkerOutput]:
    request = WorkerInput(
        job_id=f"bench{number}",
        workflow=job_graph,
        output=OutputTarget(bucket="bench", prefix="bench/"),
        timeout_s=3600,
    )
    began = time.perf_counter()
    result = await handle({"id": f"b{number}", "input": request.model_dump(mode="json")}, ctx)
    wall = time.perf_counter() - began
    if "error" in result:
        raise SystemExit(f"job {number} failed: {result['error']}")
    return wall, WorkerOutput.model_validate(result)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--comfy-url")
    parser.add_argument("--ckpt", default="rand-sd15.safetensors")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    moto, storage = start_moto()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = make_settings(data_dir=data_dir, storage=storage, worker=worker_settings(args))
        ctx = make_context(settings)
        ctx.report_progress = lambda _job, _update: None
        against = args.comfy_url or "the ComfyUI double"
        print(f"worker overhead against {against}: {args.size}x{args.size}, {args.steps} steps")
        print(
            f"{'job':>4} {'handler s':>10} {'comfy s':>9} {'overhead s':>11} {'ratio':>7}"
            f" {'queue s':>8} {'upload s':>9}"
        )
        ratios, walls, executes = [], [], []
        try:
            for number in range(args.jobs + 1):
                wall, output = asyncio.run(
                    one_job(ctx, graph(args.size, args.steps, number, args.ckpt), number)
                )
                execute = output.timings.execute_ms / 1000
                ratio = (wall - execute) / execute if execute else float("inf")
                label = "warm" if number == 0 else str(number)
                overhead = wall - execute
                queued, uploaded = output.timings.queue_ms / 1000, output.timings.upload_ms / 1000
                print(
                    f"{label:>4} {wall:>10.3f} {execute:>9.3f} {overhead:>11.3f} {ratio:>7.2%}"
                    f" {queued:>8.3f} {uploaded:>9.3f}"
                )
                if number:
                    ratios.append(ratio)
                    walls.append(wall)
                    executes.append(execute)
        finally:
            ctx.supervisor.stop()
            moto.stop()
    median = statistics.median(ratios)
    overheads = [wall - execute for wall, execute in zip(walls, executes, strict=True)]
    print(
        f"handler p50 {statistics.median(walls):.3f} s, ComfyUI p50 "
        f"{statistics.median(executes):.3f} s, overhead p50 "
        f"{statistics.median(overheads) * 1000:.1f} ms (max {max(overheads) * 1000:.1f} ms),"
        f" duty cycle {sum(executes) / sum(walls):.3f}"
    )
    print(f"median overhead {median:.2%} of ComfyUI's execution time (target <= 5.00%)")
    return 1 if args.check and median > 0.05 else 0


if __name__ == "__main__":
    sys.exit(main())
