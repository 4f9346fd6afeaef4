"""Queue throughput on MariaDB: enqueue -> claim -> complete, stillhouse vs bare pymysql.

For 1, 2, 4 and 8 processes, each process loops over one job's life (enqueue, claim one,
complete with its result row) for a fixed time; the baseline issues the same statements
through a bare pymysql connection in the same run. Prints jobs/s for both and the ratio.

    python bench/queue_throughput.py [--seconds 5] [--rounds 2] [--check]

--check exits 1 unless the ratio is >= 0.7 at 4 processes and stillhouse's throughput
at 4 processes beats 1 process. Uses its own database (`<test db>_bench`), dropped first.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _shared import bench_database_url, fresh_database
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PROCESS_COUNTS = (1, 2, 4, 8)
GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
    },
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "b"}},
}
IMAGE = {
    "key": "stillhouse/job/x.png",
    "bucket": "b",
    "content_type": "image/png",
    "width": 512,
    "height": 512,
    "bytes": 1000,
    "sha256": "0" * 64,
    "node_id": "9",
}
PARAMS = {"prompt": "a lighthouse at dawn", "seed": 1, "steps": 20}


def database_url() -> str:
    return bench_database_url("bench")


def empty(url: str) -> None:
    """Both queues emptied by TRUNCATE: a DELETE would leave InnoDB purging thousands of
    rows in the background while the next measurement runs."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
        conn.execute(text("TRUNCATE TABLE send_queue"))
        conn.execute(text("TRUNCATE TABLE generation_queue"))
        conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
    engine.dispose()


# -- the two loops ----------------------------------------------------------------------


def stillhouse_loop(url: str, ready: Any, seconds: float) -> int:
    """One job's life through stillhouse's queue API, repeated until stop_at."""
    from stillhouse.config import make_settings
    from stillhouse.db.engine import make_engine
    from stillhouse.ids import new_owner
    from stillhouse.queue import GenerationQueue
    from stillhouse.schemas.graph import ComfyGraph
    from stillhouse.schemas.jobs import JobParams, JobResult, NewJob, Routing
    from stillhouse.schemas.worker_io import ImageRef

    settings = make_settings(database={"url": url})
    queue = GenerationQueue(make_engine(settings), settings.queue)
    owner = new_owner("bench")
    job = NewJob(
        routing=Routing(
            user_id=1, guild_id=2, channel_id=3, shard_id=0, interaction_token="t" * 150
        ),
        workflow_name="sd15-txt2img",
        params=JobParams(PARAMS),
        graph=ComfyGraph.model_validate(GRAPH),
    )
    result = JobResult(images=[ImageRef(**IMAGE)])
    queue.counts()  # connect before the clock starts
    done = 0
    stop_at = _start_together(ready, seconds)
    while time.time() < stop_at:
        queue.enqueue(job)
        for claimed in queue.claim(owner, limit=1):
            queue.complete(claimed, result)
            done += 1
    return done


def baseline_loop(url: str, ready: Any, seconds: float) -> int:
    """The same statements and transactions through one bare pymysql connection."""
    import secrets
    import zlib

    import pymysql

    parsed = make_url(url)
    conn = pymysql.connect(
        host=parsed.host,
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=parsed.database,
        autocommit=False,
    )
    cur = conn.cursor(pymysql.cursors.DictCursor)
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    owner = f"base-{os.getpid()}-{secrets.token_hex(3)}"
    graph, params, image = json.dumps(GRAPH), json.dumps(PARAMS), json.dumps({"images": [IMAGE]})
    done = 0
    stop_at = _start_together(ready, seconds)
    while time.time() < stop_at:
        now = datetime.now(UTC).replace(tzinfo=None)
        public_id = secrets.token_urlsafe(12)
        cur.execute(
            "INSERT INTO generation_queue (public_id, partition_id, status, priority, source,"
            " user_id, guild_id, channel_id, shard_id, interaction_token, interaction_expires_at,"
            " interaction_id, workflow_name, workflow_version, params, graph, inputs, attempts,"
            " max_attempts, run_after, cancel_requested, created_at, updated_at) VALUES"
            " (%s, %s, 'queued', 0, 'discord', 1, 2, 3, 0, %s, NULL, NULL, 'sd15-txt2img', '1',"
            " %s, %s, '[]', 0, 3, %s, 0, %s, %s)",
            (
                public_id,
                zlib.crc32(public_id.encode()) % 1,
                "t" * 150,
                params,
                graph,
                now,
                now,
                now,
            ),
        )
        conn.commit()
        cur.execute(
            "SELECT * FROM generation_queue WHERE status = 'queued' AND partition_id = 0"
            " AND run_after <= %s ORDER BY priority, run_after, id LIMIT 1"
            " FOR UPDATE SKIP LOCKED",
            (now,),
        )
        rows = cur.fetchall()
        if rows:
            row = rows[0]
            cur.execute(
                "UPDATE generation_queue SET claims = claims + 1, status = 'dispatched',"
                " lease_owner = %s, lease_expires_at = %s, dispatched_at = %s, updated_at = %s"
                " WHERE id IN (%s)",
                (owner, now + timedelta(seconds=60), now, now, row["id"]),
            )
        conn.commit()
        if not rows:
            continue
        json.loads(row["graph"])
        cur.execute(
            "UPDATE generation_queue SET status = 'succeeded', lease_owner = NULL,"
            " lease_expires_at = NULL, finished_at = %s, updated_at = %s, result = %s,"
            " progress = 1.0 WHERE id = %s AND lease_owner = %s AND claims = %s"
            " AND status IN ('dispatched', 'running') AND cancel_requested = 0",
            (now, now, image, row["id"], owner, row["claims"] + 1),
        )
        cur.execute(
            "INSERT INTO send_queue (job_id, job_public_id, partition_id, kind, dedupe_key,"
            " status, source, user_id, guild_id, channel_id, interaction_token,"
            " interaction_expires_at, payload, attempts, max_attempts, run_after, created_at,"
            " updated_at) VALUES (%s, %s, 0, 'result', %s, 'pending', 'discord', 1, 2, 3, %s,"
            " NULL, %s, 0, 6, %s, %s, %s)",
            (
                row["id"],
                row["public_id"],
                f"outcome:{row['id']}",
                row["interaction_token"],
                json.dumps({"kind": "result", "images": [IMAGE], "params": PARAMS}),
                now,
                now,
                now,
            ),
        )
        conn.commit()
        done += 1
    conn.close()
    return done


def _start_together(ready: Any, seconds: float) -> float:
    """Wait until every process has imported and connected; the shared stop time."""
    ready.wait()
    return time.time() + seconds


def _child(loop: str, url: str, ready: Any, seconds: float, out: Any) -> None:
    out.put(globals()[loop](url, ready, seconds))


def measure(loop: str, url: str, processes: int, seconds: float) -> float:
    """Jobs/s of `processes` processes running `loop` for `seconds`."""
    empty(url)
    spawn = mp.get_context("spawn")
    results: Any = spawn.Queue()
    ready = spawn.Barrier(processes)
    workers = [
        spawn.Process(target=_child, args=(loop, url, ready, seconds, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=seconds + 120) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    url = database_url()
    fresh_database(url)
    where = make_url(url).render_as_string()
    print(f"queue throughput on {where}, {args.seconds:g} s x {args.rounds} rounds")
    print(f"{'procs':>5} {'baseline jobs/s':>16} {'stillhouse jobs/s':>18} {'ratio':>6}")
    ours: dict[int, float] = {}
    ratios: dict[int, float] = {}
    for n in PROCESS_COUNTS:
        base_runs, our_runs = [], []
        for _ in range(args.rounds):  # back to back, so drift hits both sides of a pair alike
            base_runs.append(measure("baseline_loop", url, n, args.seconds))
            our_runs.append(measure("stillhouse_loop", url, n, args.seconds))
        base, mine = statistics.median(base_runs), statistics.median(our_runs)
        # The ratio is the median of the paired rounds' ratios: each pair shares the
        # machine's state of the moment, which a ratio of medians would not.
        ours[n] = mine
        ratios[n] = statistics.median(o / b for o, b in zip(our_runs, base_runs, strict=True))
        print(f"{n:>5} {base:>16.0f} {mine:>18.0f} {ratios[n]:>6.2f}")
    grows = ours[4] > ours[1]
    ok = ratios[4] >= 0.7 and grows
    print(
        f"ratio at 4 processes {ratios[4]:.2f} (target >= 0.70); stillhouse 1 -> 4 processes: "
        f"{ours[1]:.0f} -> {ours[4]:.0f} jobs/s ({'grows' if grows else 'does NOT grow'}); "
        f"{os.cpu_count()} CPUs for clients and server together"
    )
    if args.check and not ok:
        print("FAIL: target missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
