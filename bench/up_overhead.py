"""`stillhouse up` overhead: POST /v1/generations until GET says succeeded, minus the time
ComfyUI itself ran the prompt, for jobs one after another through the embedded API,
master, local worker (the real runpod worker loop) and the ComfyUI double; beside a bare
client of the same double (queue the prompt, wait for it, fetch the image) in the same run.

    python bench/up_overhead.py [--jobs 20] [--check]

--check fails unless the added time is at most 300 ms at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import wait_until  # noqa: E402
from tests.system.up_process import start_up  # noqa: E402
from tests.worker.comfy_double import answers  # noqa: E402
from tests.worker.harness import captured  # noqa: E402

STEP_S = "0.02"
STEPS = 12
TARGET_P50_S = 0.300


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[
        min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))
    ]


def executed_s(history: dict[str, Any], prompt_id: str) -> float:
    """ComfyUI's own execution time for a prompt (execution_start -> execution_success)."""
    stamps = {kind: data["timestamp"] for kind, data in history[prompt_id]["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000


def through_up(comfy: str, api: str, jobs: int) -> list[float]:
    """Added seconds per job through `stillhouse up`."""
    wait_until(lambda: answers(comfy), 120, 0.2, what="the local worker's ComfyUI")
    added = []
    for n in range(jobs + 1):  # the first warms ComfyUI and the worker up
        before = set(requests.get(f"{comfy}/history", timeout=10).json())
        began = time.monotonic()
        body = {"prompt": f"bench {n}", "params": {"steps": STEPS}}
        answer = requests.post(f"{api}/v1/generations", json=body, timeout=10)
        assert answer.status_code == 202, answer.text
        generation = answer.json()["id"]
        while requests.get(f"{api}/v1/generations/{generation}", timeout=10).json()[
            "status"
        ] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.005)  # a client polling as fast as it reasonably can
        wall = time.monotonic() - began
        history = requests.get(f"{comfy}/history", timeout=10).json()
        [prompt_id] = set(history) - before
        if n:
            added.append(wall - executed_s(history, prompt_id))
    return added


async def bare_client(comfy: str, jobs: int) -> list[float]:
    """Added seconds per job for a bare websocket client of the same ComfyUI."""
    import aiohttp

    graph = captured("txt2img_64_s1")
    graph["3"]["inputs"]["steps"] = STEPS
    added = []
    async with aiohttp.ClientSession() as session:
        for n in range(jobs):
            graph["3"]["inputs"]["seed"] = n + 1000  # no cache hits
            client_id = uuid.uuid4().hex
            began = time.monotonic()
            async with session.ws_connect(
                f"{comfy.replace('http', 'ws')}/ws?clientId={client_id}"
            ) as ws:
                async with session.post(
                    f"{comfy}/prompt", json={"prompt": graph, "client_id": client_id}
                ) as answer:
                    prompt_id = (await answer.json())["prompt_id"]
                async for message in ws:
                    data = message.json() if message.type.name == "TEXT" else {}
                    if data.get("type") == "execution_success":
                        break
            async with session.get(f"{comfy}/history/{prompt_id}") as answer:
                history = await answer.json()
            for images in history[prompt_id]["outputs"].values():
                for image in images["images"]:
                    async with session.get(f"{comfy}/view", params=image) as view:
                        await view.read()
            added.append(time.monotonic() - began - executed_s(history, prompt_id))
    return added


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, up = start_up(Path(tmp), "--step-time", STEP_S, intake__per_minute="10000")
        try:
            system = through_up(up.comfy, up.api, args.jobs)
            bare = asyncio.run(bare_client(up.comfy, args.jobs))
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)
    print(
        f"stillhouse up overhead: {args.jobs} jobs one after another, "
        f"ComfyUI double {STEPS} steps x {STEP_S} s"
    )
    print(f"{'path':<30} {'added p50':>10} {'added p99':>10}")
    for name, values in (("bare ComfyUI client", bare), ("POST -> succeeded via up", system)):
        p50, p99 = percentiles(values)
        print(f"{name:<30} {p50 * 1000:>8.0f}ms {p99 * 1000:>8.0f}ms")
    p50, _ = percentiles(system)
    bare_p50, _ = percentiles(bare)
    print(
        f"added by up beyond a bare client: p50 {(p50 - bare_p50) * 1000:.0f} ms "
        f"({p50 / max(bare_p50, 1e-3):.1f}x the bare client's); "
        f"target p50 <= {TARGET_P50_S * 1000:.0f} ms"
    )
    if args.check and p50 > TARGET_P50_S:
        print(f"FAIL: p50 {p50 * 1000:.0f} ms > {TARGET_P50_S * 1000:.0f} ms")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
