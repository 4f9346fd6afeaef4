"""Dispatch overhead: what the master adds on top of the queue, with a backend that
completes every job at once.

    python bench/dispatch_overhead.py [--jobs 2000] [--check]

For 1 and 3 processes it drains a pre-filled MariaDB queue twice: through real
Dispatchers (claim in batches, submit, poll, complete with the result row, lease
renewal) and through the queue-only baseline (claim in batches, complete) measured in the
same run. It prints jobs/s for both, the ratio, and the added latency per job (claim to
outcome written, p50 and p99), and whether the goal holds: one master at 0.8 of the
baseline or better (the median of --rounds paired rounds) and 3 masters faster than 1.
A master's own writes per job (mark the submit, store the backend id, write the outcome)
are committed in groups (master.writes) with precompiled statements; on 2026-11-30 that
took one master from 0.45-0.52 to 0.81-0.91 of the baseline on this 2-core machine, and 3
masters from 431 to 995 jobs/s.

--check fails when one master's median ratio is below 0.65 or 3 masters are not faster
than 1: a regression guard below the measured range. On the evening of 2026-11-30 the
queue-only baseline alone swung between 700 and 1,150 jobs/s from one round to the next on
this 2-core machine and one master's medians over 3 rounds read 0.61-0.76 (the guard was
lowered to 0.55 then). A master's writer was the limit: one group committing at a time,
the event loop idle while it waited on the database's replies (py-spy). With two groups
committing at once (master.writes.WRITERS), three runs of 5 paired rounds on 2026-12-01
read medians of 0.86, 0.89 and 0.86 (single rounds 0.75-1.18), 3 masters 946-978 jobs/s
against 1 master's 698-722, and 0.78 in that night's CI rehearsal. With a group's submit
marks and backend ids each written by one statement (GenerationQueue.begin_submits,
.mark_runnings: 1.24 UPDATEs a job instead of 3.07, 2.6 statements a job against the
queue-only loop's 3.2), three runs read medians of 0.88, 0.93 and 0.94 (1 master 834-860
jobs/s, 3 masters 1,098-1,221). The guard is back at 0.65.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from typing import Any

from _shared import bench_database_url, fresh_database
from sqlalchemy import text

POLL_INTERVAL_S = 0.01
MIN_RATIO = 0.65
GOAL_RATIO = 0.8
BATCH = 16


def database_url() -> str:
    return bench_database_url("dispatch")


def settings(url: str) -> Any:
    from stillhouse.config import make_settings

    return make_settings(
        database={"url": url},
        master={
            "poll_interval_s": POLL_INTERVAL_S,
            "claim_interval_s": 0.05,
            "claim_batch": BATCH,
            "max_in_flight": 64,
            "http_port": 0,
        },
    )


def fill(url: str, jobs: int) -> None:
    """Empty both queues, then queue `jobs` small jobs."""
    from stillhouse.db.engine import make_engine
    from stillhouse.queue import GenerationQueue
    from stillhouse.schemas.graph import ComfyGraph
    from stillhouse.schemas.jobs import NewJob

    engine = make_engine(settings(url))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM send_queue"))
        conn.execute(text("DELETE FROM generation_queue"))
    queue = GenerationQueue(engine, settings(url).queue)
    graph = ComfyGraph.model_validate(
        {"9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "b"}}}
    )
    for _ in range(jobs):
        queue.enqueue(NewJob(workflow_name="bench", graph=graph))
    engine.dispose()


class InstantBackend:
    """Every job is done by the first look."""

    name = "instant"
    capacity = None

    def __init__(self) -> None:
        from stillhouse.schemas.worker_io import ImageRef, WorkerOutput

        self.output = WorkerOutput.model_validate(
            {
                "images": [
                    ImageRef(
                        key="k/x.png",
                        bucket="b",
                        content_type="image/png",
                        width=1,
                        height=1,
                        bytes=1,
                        sha256="0" * 64,
                        node_id="9",
                    )
                ],
                "comfy": {"prompt_id": "p"},
            }
        )
        self.count = 0

    async def submit(self, request: Any) -> str:
        self.count += 1
        return f"instant-{self.count}"

    async def poll(self, backend_job_id: str) -> Any:
        from master.backends.base import Phase, Poll

        return Poll(phase=Phase.COMPLETED, output=self.output)

    async def cancel(self, backend_job_id: str) -> None:
        return None

    async def health(self) -> dict[str, Any]:
        return {}

    def watch(self, notify: Any) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def run_master(url: str, ready: Any) -> None:
    from master.dispatcher import Dispatcher
    from master.metrics import MasterMetrics
    from stillhouse.db.engine import make_engine
    from stillhouse.ids import new_owner
    from stillhouse.queue import GenerationQueue
    from stillhouse.storage import make_storage

    config = settings(url)
    queue = GenerationQueue(make_engine(config), config.queue)
    queue.counts()
    dispatcher = Dispatcher(
        config,
        queue,
        InstantBackend(),
        make_storage(config),  # type: ignore[arg-type]
        MasterMetrics(),
        new_owner("bench"),
    )
    ready.wait()
    asyncio.run(dispatcher.run(until_idle=True))


def run_baseline(url: str, ready: Any) -> None:
    """The queue alone: claim a batch, complete each; the floor any master stands on."""
    from stillhouse.db.engine import make_engine
    from stillhouse.ids import new_owner
    from stillhouse.queue import GenerationQueue
    from stillhouse.schemas.jobs import JobResult

    config = settings(url)
    queue = GenerationQueue(make_engine(config), config.queue)
    result = JobResult(images=InstantBackend().output.images)
    owner = new_owner("base")
    queue.counts()
    ready.wait()
    while jobs := queue.claim(owner, BATCH):
        for job in jobs:
            queue.complete(job, result)


def measure(target: str, url: str, processes: int, jobs: int) -> tuple[float, list[float]]:
    """(jobs/s, per-job claim-to-outcome seconds)."""
    fill(url, jobs)
    spawn = mp.get_context("spawn")
    ready = spawn.Barrier(processes + 1)
    workers = [spawn.Process(target=globals()[target], args=(url, ready)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    ready.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    from stillhouse.db.engine import make_engine

    engine = make_engine(settings(url))
    with engine.connect() as conn:
        rows = (
            conn.execute(
                text(
                    "SELECT TIMESTAMPDIFF(MICROSECOND, dispatched_at, finished_at)"
                    " FROM generation_queue WHERE status = 'succeeded'"
                )
            )
            .scalars()
            .all()
        )
    engine.dispose()
    if len(rows) != jobs:
        raise SystemExit(f"{target}: {len(rows)} of {jobs} jobs succeeded")
    return jobs / elapsed, [r / 1e6 for r in rows]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds for one master")
    args = parser.parse_args()
    url = database_url()
    fresh_database(url)
    print(
        f"dispatch overhead, {args.jobs} jobs, instant backend, poll interval "
        f"{POLL_INTERVAL_S * 1000:g} ms, batches of {BATCH}"
    )
    print(
        f"{'procs':>5} {'queue-only jobs/s':>18} {'master jobs/s':>14} {'ratio':>6} "
        f"{'added p50 ms':>13} {'added p99 ms':>13} {'queue p50 ms':>13}"
    )
    ratios: dict[int, list[float]] = {1: [], 3: []}
    rates: dict[int, list[float]] = {1: [], 3: []}
    for processes in (1, 3):
        # The baseline alone swings by a third between runs on a 2-core machine: the guard
        # takes the median of paired rounds (baseline, then master) rather than one pair.
        for _ in range(args.rounds if processes == 1 else 1):
            base_rate, base_latency = measure("run_baseline", url, processes, args.jobs)
            rate, latency = measure("run_master", url, processes, args.jobs)
            ratios[processes].append(rate / base_rate)
            rates[processes].append(rate)
            print(
                f"{processes:>5} {base_rate:>18.0f} {rate:>14.0f} {rate / base_rate:>6.2f} "
                f"{percentile(latency, 0.5) * 1000:>13.1f} "
                f"{percentile(latency, 0.99) * 1000:>13.1f} "
                f"{statistics.median(base_latency) * 1000:>13.1f}"
            )
    one = statistics.median(ratios[1])
    one_rate, three_rate = statistics.median(rates[1]), statistics.median(rates[3])
    scales = three_rate > one_rate
    print(f"one master: median ratio {one:.2f} over {len(ratios[1])} rounds")
    print(
        f"3 masters: {three_rate:.0f} jobs/s against 1 master's {one_rate:.0f} "
        f"({three_rate / one_rate:.2f}x); goal (ratio >= {GOAL_RATIO}, 3 masters faster): "
        f"{'met' if one >= GOAL_RATIO and scales else 'missed'}"
    )
    if args.check and (one < MIN_RATIO or not scales):
        print(f"FAIL: ratio {one:.2f} (guard {MIN_RATIO}) or 3 masters not faster than 1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
