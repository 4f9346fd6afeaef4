"""Bare ComfyUI: what a plain websocket client gets from a real ComfyUI, the baseline the
worker's figures (bench/worker_overhead.py, bench/gpu_duty_cycle.py --comfy-url) are read
against in the same run.

    python bench/comfy_baseline.py --comfy-url URL [--ckpt NAME] [--size 512] [--steps 20]
                                   [--jobs 20] [--json FILE] [--warm-only]

One after another: per job, a websocket of its own, POST /prompt, wait for
execution_success, then GET /view of the image it saved (as the worker does); the
client's wall time against ComfyUI's own execution time (execution_start ->
execution_success, as ComfyUI stamps them). The first job is a warm-up (model load) and
is not counted. All at once: --jobs prompts queued together on one websocket, images/s
and duty cycle (sum of execution times / wall time from the first POST to the last
execution_success): the most any client can get out of this ComfyUI. --warm-only runs
the warm-up job alone (the model loaded for what comes next) and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "tests" / "fixtures" / "comfy" / "workflows" / "txt2img_64_s1.json"


def graph(size: int, steps: int, seed: int, ckpt: str) -> dict[str, Any]:
    g: dict[str, Any] = json.loads(GRAPH.read_text())
    g["4"]["inputs"]["ckpt_name"] = ckpt
    g["5"]["inputs"].update(width=size, height=size)
    g["3"]["inputs"].update(steps=steps, seed=seed)
    return g


def ws_url(comfy: str, client_id: str) -> str:
    return f"{comfy.replace('http', 'ws', 1)}/ws?clientId={client_id}"


async def queue(
    session: aiohttp.ClientSession, comfy: str, prompt: dict[str, Any], client_id: str
) -> str:
    async with session.post(
        f"{comfy}/prompt", json={"prompt": prompt, "client_id": client_id}
    ) as answer:
        body = await answer.json()
        if answer.status != 200 or "prompt_id" not in body:
            raise SystemExit(f"ComfyUI refused the prompt ({answer.status}): {body}")
        return str(body["prompt_id"])


Done = dict[str, tuple[float, float, list[dict[str, str]]]]


async def follow(ws: aiohttp.ClientWebSocketResponse, waiting: set[str], timeout_s: float) -> Done:
    """Until every prompt in `waiting` succeeded: {prompt_id: (execution s, monotonic
    time its execution_success arrived, the images its nodes said they saved)}."""
    started: dict[str, int] = {}
    images: dict[str, list[dict[str, str]]] = {}
    done: Done = {}
    deadline = time.monotonic() + timeout_s
    while waiting - done.keys():
        message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if message.type != aiohttp.WSMsgType.TEXT:
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                raise SystemExit("ComfyUI closed the websocket")
            continue  # previews are binary
        event = json.loads(message.data)
        kind, data = event.get("type"), event.get("data") or {}
        prompt_id = str(data.get("prompt_id"))
        if kind == "execution_start":
            started[prompt_id] = data["timestamp"]
        elif kind == "executed":  # a node's output, e.g. SaveImage's files
            images.setdefault(prompt_id, []).extend((data.get("output") or {}).get("images", []))
        elif kind == "execution_success" and prompt_id in waiting:
            execute = (data["timestamp"] - started.get(prompt_id, data["timestamp"])) / 1000
            done[prompt_id] = (execute, time.monotonic(), images.get(prompt_id, []))
        elif kind in ("execution_error", "execution_interrupted") and prompt_id in waiting:
            raise SystemExit(f"prompt {prompt_id} failed: {json.dumps(data)[:2000]}")
    return done


async def fetch_images(
    session: aiohttp.ClientSession, comfy: str, images: list[dict[str, str]]
) -> int:
    """GET /view of every image; the bytes read."""
    read = 0
    for image in images:
        async with session.get(f"{comfy}/view", params=image) as view:
            view.raise_for_status()
            read += len(await view.read())
    return read


async def one_by_one(args: argparse.Namespace) -> list[dict[str, float]]:
    rows = []
    async with aiohttp.ClientSession() as session:
        for number in range(args.jobs + 1):
            client_id = uuid.uuid4().hex
            prompt = graph(args.size, args.steps, 1000 + number, args.ckpt)
            began = time.monotonic()
            async with session.ws_connect(ws_url(args.comfy_url, client_id)) as ws:
                prompt_id = await queue(session, args.comfy_url, prompt, client_id)
                done = await follow(ws, {prompt_id}, args.timeout)
            execute, succeeded, images = done[prompt_id]
            if not images:
                raise SystemExit(f"prompt {prompt_id} saved no image")
            size = await fetch_images(session, args.comfy_url, images)
            ended = time.monotonic()
            row = {
                "wall_s": ended - began,
                "success_s": succeeded - began,
                "execute_s": execute,
                "fetch_s": ended - succeeded,
                "bytes": size,
            }
            label = "warm" if number == 0 else str(number)
            print(
                f"{label:>4} {row['wall_s']:>8.3f} {row['success_s']:>10.3f}"
                f" {execute:>9.3f} {row['wall_s'] - execute:>11.3f} {row['fetch_s']:>8.3f}"
                f" {size // 1024:>6}",
                flush=True,
            )
            if number:
                rows.append(row)
    return rows


async def all_at_once(args: argparse.Namespace) -> dict[str, float]:
    client_id = uuid.uuid4().hex
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url(args.comfy_url, client_id)) as ws,
    ):
        began = time.monotonic()
        waiting = set()
        for number in range(args.jobs):
            prompt = graph(args.size, args.steps, 5000 + number, args.ckpt)
            waiting.add(await queue(session, args.comfy_url, prompt, client_id))
        done = await follow(ws, waiting, args.timeout * args.jobs)
    wall = max(at for _, at, _ in done.values()) - began
    executed = sum(execute for execute, _, _ in done.values())
    return {
        "jobs": args.jobs,
        "wall_s": wall,
        "executed_s": executed,
        "images_per_s": args.jobs / wall,
        "duty_cycle": executed / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--comfy-url", required=True)
    parser.add_argument("--ckpt", default="rand-sd15.safetensors")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per job at most")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--warm-only", action="store_true", help="the warm-up job alone")
    args = parser.parse_args()
    args.comfy_url = args.comfy_url.rstrip("/")
    if args.warm_only:
        args.jobs = 0
        print(
            f"warming ComfyUI at {args.comfy_url} up: {args.size}x{args.size}, {args.steps} steps"
        )
    else:
        print(
            f"bare ComfyUI client against {args.comfy_url}: {args.size}x{args.size}, "
            f"{args.steps} steps, {args.jobs} jobs one after another after a warm-up"
        )
    print(
        f"{'job':>4} {'wall s':>8} {'success s':>10} {'comfy s':>9} {'overhead s':>11}"
        f" {'fetch s':>8} {'KiB':>6}"
    )
    rows = asyncio.run(one_by_one(args))
    if args.warm_only:
        return 0

    def median(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    overheads = [row["wall_s"] - row["execute_s"] for row in rows]
    sequential = {
        "wall_s_p50": median("wall_s"),
        "execute_s_p50": median("execute_s"),
        "overhead_s_p50": statistics.median(overheads),
        "overhead_s_max": max(overheads),
        "overhead_ratio_p50": statistics.median(
            (row["wall_s"] - row["execute_s"]) / row["execute_s"] for row in rows
        ),
        "duty_cycle": sum(row["execute_s"] for row in rows) / sum(row["wall_s"] for row in rows),
    }
    print(
        f"one after another: wall p50 {sequential['wall_s_p50']:.3f} s, ComfyUI p50 "
        f"{sequential['execute_s_p50']:.3f} s, client overhead p50 "
        f"{sequential['overhead_s_p50'] * 1000:.1f} ms ({sequential['overhead_ratio_p50']:.2%}),"
        f" duty cycle {sequential['duty_cycle']:.3f}"
    )
    burst = asyncio.run(all_at_once(args))
    print(
        f"all {args.jobs} at once: {burst['wall_s']:.2f} s wall, {burst['images_per_s']:.2f} "
        f"images/s, duty cycle {burst['duty_cycle']:.3f} (sum of ComfyUI execution "
        f"{burst['executed_s']:.2f} s)"
    )
    if args.json:
        figures = {"size": args.size, "steps": args.steps, "jobs": rows}
        figures.update(sequential=sequential, all_at_once=burst)
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
