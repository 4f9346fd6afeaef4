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

    python bench/gpu_duty_cycle.py --comfy-url URL [--ckpt NAME] [--size 512] [--steps 20]

attaches the worker to that ComfyUI instead of the double (e.g. a real one on a GPU with
the random SD1.5 of ../shared/comfy/make_random_sd15.py): the same two runs, at that
ComfyUI's own speed. It says what it is doing as it goes; --worker-log FILE gets the
worker processes' logs (each run's, one after the other) at the end of each run, also
when a run fails or the bench is stopped (SIGTERM). A warm-up that does not end within
--warm-timeout, no job ending for --stall-timeout, or the worker process exiting, fails
the bench at once with the tail of the worker's log.

The runpod SDK's start-up fitness checks are turned off for the worker (RUNPOD_SKIP_*):
one of them opens a connection to 8.8.8.8:53 and, where there is no network (a sealed
benchmark machine), the SDK os._exit(1)s the worker before it takes a job.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _shared import start_moto  # noqa: E402

from tests.doubles.runpod.server import RunPodDouble  # noqa: E402
from tests.master.cluster import Cluster  # noqa: E402
from tests.worker.harness import captured  # noqa: E402

TARGET = 0.98
STEPS, STEP_S, DECODE_S, SIZE = 20, 0.020, 0.050, 512
COMFY = ("--step-time", str(STEP_S), "--decode-time", str(DECODE_S), "--textured")
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
# the SDK's fitness checks (memory, disk, a TCP connection to 8.8.8.8:53, CUDA, a GPU
# benchmark) kill the worker with os._exit(1) on a machine without network
NO_FITNESS_CHECKS = {"RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "RUNPOD_SKIP_GPU_CHECK": "true"}
BEGAN = time.monotonic()


def say(line: str) -> None:
    """A progress line, out at once."""
    print(f"[{time.monotonic() - BEGAN:6.1f} s] {line}", flush=True)


class Stuck(Exception):
    """A run that cannot end: the worker gone, or nothing moving."""


def job_input(number: int, args: argparse.Namespace) -> dict[str, Any]:
    graph = captured("txt2img_64_s1")
    graph["4"]["inputs"]["ckpt_name"] = args.ckpt
    graph["5"]["inputs"].update(width=args.size, height=args.size)
    graph["3"]["inputs"].update(steps=args.steps, seed=number)
    return {
        "job_id": f"duty{number:05d}",
        "workflow": graph,
        "output": {"bucket": "bench", "prefix": "duty/"},
        "timeout_s": 600,
    }


def submit(double: RunPodDouble, number: int, args: argparse.Namespace) -> str:
    """A job on the endpoint's hosted API, as a master submits it."""
    answer = requests.post(
        f"{double.base_url}/{double.endpoint_id}/run",
        json={"input": job_input(number, args)},
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


def tail(cluster: Cluster, name: str = "w", lines: int = 40) -> str:
    try:
        text = cluster.log(name)
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def await_jobs(
    double: RunPodDouble,
    cluster: Cluster,
    ids: list[str],
    what: str,
    limit_s: float,
    stall_s: float,
) -> None:
    """Until every job in `ids` ended; Stuck (with the worker's log tail) when the worker
    exits, no job ends for `stall_s`, or `limit_s` passes. A progress line every 10 s."""
    started = changed = said = time.monotonic()
    ended = -1
    while True:
        statuses = Counter(double.state.jobs[i].status for i in ids)
        now_ended = sum(n for status, n in statuses.items() if status in ENDED)
        if now_ended == len(ids):
            return
        now = time.monotonic()
        if now_ended != ended:
            ended, changed = now_ended, now
        worker = cluster.processes["w"]
        trouble = ""
        if worker.poll() is not None:
            trouble = f"the worker process exited (code {worker.returncode})"
        elif now - changed > stall_s:
            trouble = f"no job ended for {stall_s:.0f} s"
        elif now - started > limit_s:
            trouble = f"not done after {limit_s:.0f} s"
        if trouble:
            raise Stuck(
                f"{what}: {trouble}; {ended}/{len(ids)} ended, {dict(statuses)}\n"
                f"--- the worker's log, last lines:\n{tail(cluster)}"
            )
        if now - said >= 10:
            say(f"  {what}: {ended}/{len(ids)} ended, {dict(statuses)}")
            said = now
        time.sleep(0.05)


def save_logs(tmp: Path, concurrency: int, into: Path | None) -> None:
    """Every log the run's processes wrote (worker, its ComfyUI if it started one),
    appended to `into`."""
    if into is None:
        return
    with into.open("a", errors="replace") as out:
        for log in sorted(tmp.rglob("*.log")):
            text = log.read_text(errors="replace")
            out.write(f"\n===== holding {concurrency}: {log.relative_to(tmp)}\n")
            out.write(text[-400_000:])


def run(
    storage: Any, args: argparse.Namespace, concurrency: int
) -> tuple[float, float, list[float]]:
    """(sum of ComfyUI execution s, wall s, per-job gap s) for `args.jobs` jobs on one
    worker holding `concurrency` jobs at once."""
    jobs = args.jobs
    env = {"STILLHOUSE_WORKER__CONCURRENCY": str(concurrency), **NO_FITNESS_CHECKS}
    if args.comfy_url:  # attach to it: no command, no folder
        env.update(STILLHOUSE_WORKER__COMFY_URL=args.comfy_url, STILLHOUSE_WORKER__COMFY_COMMAND="")
    double = RunPodDouble().start()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), double, storage, database_url="")
        try:
            say(f"holding {concurrency}: worker starting, a warm-up job")
            cluster.start_worker("w", *COMFY, env=env)
            started = time.monotonic()
            warm = submit(double, 0, args)  # starts (or warms) ComfyUI; not counted
            await_jobs(double, cluster, [warm], "warm-up", args.warm_timeout, args.warm_timeout)
            assert double.state.jobs[warm].status == "COMPLETED", double.state.jobs[warm].error
            warm_s = time.monotonic() - started
            say(f"holding {concurrency}: warm-up done {warm_s:.1f} s after the worker's start")
            ids = [submit(double, n, args) for n in range(1, jobs + 1)]
            say(f"holding {concurrency}: {jobs} jobs submitted")
            await_jobs(
                double,
                cluster,
                ids,
                f"holding {concurrency}",
                30 + jobs * args.job_timeout,
                args.stall_timeout,
            )
            done = [double.state.jobs[i] for i in ids]
            failed = [j.error for j in done if j.status != "COMPLETED"]
            assert not failed, f"{len(failed)} jobs failed: {failed[:3]}"
            timings = [j.output["timings"] for j in done]
            executed = sum(t["execute_ms"] for t in timings) / 1000
            began = min(float(j.started_wall or 0) for j in done)
            ended = max(float(j.finished_wall or 0) for j in done)
            say(
                f"holding {concurrency}: done, {executed:.2f} s executing in "
                f"{ended - began:.2f} s wall"
            )
            return executed, ended - began, [t["queue_ms"] / 1000 for t in timings]
        finally:
            try:
                cluster.stop_all()
                double.stop()
            finally:
                save_logs(Path(tmp), concurrency, args.worker_log)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--comfy-url", help="attach to this ComfyUI instead of the double")
    parser.add_argument("--ckpt", default="rand-sd15.safetensors")
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--check", action="store_true")
    parser.add_argument(
        "--warm-timeout", type=float, default=90, help="seconds the warm-up job may take"
    )
    parser.add_argument(
        "--stall-timeout", type=float, help="seconds with no job ending before giving up"
    )
    parser.add_argument("--worker-log", type=Path, help="the worker processes' logs go here")
    args = parser.parse_args()
    # seconds a job may take at most, for the run's deadline
    args.job_timeout = 120 if args.comfy_url else 3
    if args.stall_timeout is None:
        args.stall_timeout = 60 if args.comfy_url else 30
    if args.worker_log:
        args.worker_log.write_text("")

    def stopped(signum: int, _frame: Any) -> None:
        say(f"stopped by signal {signum}")
        sys.exit(128 + signum)  # the runs' `finally`: logs saved, processes killed

    signal.signal(signal.SIGTERM, stopped)
    say(f"GPU duty cycle bench: {args.jobs} jobs per run, holding 1 then 2")
    moto, storage = start_moto()
    try:
        results = {held: run(storage, args, held) for held in (1, 2)}
    except (Stuck, AssertionError) as exc:
        say(f"FAIL: {exc}")
        return 1
    finally:
        moto.stop()
    if args.comfy_url:
        against = f"ComfyUI at {args.comfy_url}"
    else:
        per_job = args.steps * STEP_S + DECODE_S
        against = f"ComfyUI double at {per_job * 1000:.0f} ms per image"
    print(
        f"GPU duty cycle: {args.jobs} jobs back to back on one worker, {against}, "
        f"{args.size}x{args.size}, {args.steps} steps, S3 uploads"
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
