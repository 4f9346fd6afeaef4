"""Priority lanes under saturation: a tier's head start against a plain first-come queue.

Jobs arrive at 1.25x the rate one claimer takes them (the queue grows all run), a fifth of
them from a tier with a head start (stillhouse.tiers: queued as if they came H seconds
earlier); the claimer takes one job at a fixed pace, through the real GenerationQueue on
MariaDB. The same arrivals run twice: with the head start, and without (the baseline,
first come first served). Prints each lane's queue wait (created -> claimed) p50 and p99,
the high lane's p50 over the normal lane's, and how much longer each normal job waited
than the same job in the baseline, against the bound stillhouse.tiers states: the
head-started jobs that arrive in the H seconds after it, at the claimer's pace.

    python bench/priority_lanes.py [--seconds 16] [--rate 40] [--head-start 4] [--check]

--check fails unless the high lane's p50 is at most a third of the normal lane's and no
normal job waited longer than its bound (plus 0.25 s for timers on a loaded machine).
Uses its own database (`<test db>_lanes`), dropped first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

from _shared import bench_database_url, fresh_database
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stillhouse.config import QueueSettings, make_settings  # noqa: E402
from stillhouse.db.engine import make_engine  # noqa: E402
from stillhouse.db.models import GenerationJob  # noqa: E402
from stillhouse.queue import GenerationQueue  # noqa: E402
from tests.support import new_job  # noqa: E402

HIGH_EVERY = 5  # every fifth arrival is from the head-started tier
OVERLOAD = 1.25
SLACK_S = 0.25


def run(
    url: str, seconds: float, rate: float, head_start_s: float
) -> dict[int, tuple[bool, float]]:
    """Arrival number -> (high lane, queue wait s) for the jobs claimed in the run."""
    fresh_database(url)
    engine = make_engine(make_settings(database={"url": url}))
    queue = GenerationQueue(engine, QueueSettings())
    arrivals = int(seconds * rate * OVERLOAD)
    numbers: dict[str, int] = {}
    began = time.monotonic() + 0.5

    def produce() -> None:
        for n in range(arrivals):
            delay = began + n / (rate * OVERLOAD) - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # arrivals on a schedule (open loop)
            high = n % HIGH_EVERY == 0
            job = new_job(f"lane {n}", user_id=1 if high else 2).model_copy(
                update={"head_start_s": head_start_s if high else 0.0}
            )
            numbers[queue.enqueue(job).job.public_id] = n

    producer = threading.Thread(target=produce)
    producer.start()
    taken = 0
    while time.monotonic() < began + seconds:
        delay = began + taken / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the claimer's fixed pace: one job per 1/rate s
        taken += len(queue.claim("lanes", 1))
    producer.join()
    with engine.connect() as conn:
        rows = conn.execute(
            select(GenerationJob.public_id, GenerationJob.created_at, GenerationJob.dispatched_at)
        ).all()
    engine.dispose()
    return {
        numbers[public_id]: (numbers[public_id] % HIGH_EVERY == 0, (sent - made).total_seconds())
        for public_id, made, sent in rows
        if sent is not None and public_id in numbers
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=16.0)
    parser.add_argument("--rate", type=float, default=40.0, help="jobs the claimer takes a second")
    parser.add_argument("--head-start", type=float, default=4.0, help="the high tier's, seconds")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    url = bench_database_url("lanes")
    lanes = run(url, args.seconds, args.rate, args.head_start)
    fifo = run(url, args.seconds, args.rate, 0.0)
    high = [w for is_high, w in lanes.values() if is_high]
    normal = [w for is_high, w in lanes.values() if not is_high]
    base_normal = [w for is_high, w in fifo.values() if not is_high]
    # The bound: the head-started arrivals in the H seconds after a job, at the claimer's pace.
    bound = args.head_start * args.rate * OVERLOAD / HIGH_EVERY / args.rate
    extra = [lanes[n][1] - fifo[n][1] for n in lanes if n in fifo and not lanes[n][0]]
    ratio = statistics.median(high) / statistics.median(normal)
    print(
        f"priority lanes: {args.rate * OVERLOAD:g} arrivals/s against {args.rate:g} claimed/s "
        f"for {args.seconds:g} s, every {HIGH_EVERY}th with a {args.head_start:g} s head start"
    )
    print(f"{'lane':<24} {'jobs':>5} {'p50 s':>7} {'p99 s':>7}")
    for name, waits in (
        ("high (head start)", high),
        ("normal", normal),
        ("normal, no lanes (base)", base_normal),
    ):
        print(f"{name:<24} {len(waits):>5} {pct(waits, 0.5):>7.2f} {pct(waits, 0.99):>7.2f}")
    print(f"high p50 / normal p50: {ratio:.2f} (target <= 0.33)")
    print(
        f"a normal job's wait beyond the same job's without lanes: max {max(extra):.2f} s, "
        f"p50 {statistics.median(extra):.2f} s; bound {bound:.2f} s "
        f"(head start x the head-started share of arrivals / the claim rate)"
    )
    if args.check and (ratio > 1 / 3 or max(extra) > bound + SLACK_S):
        print("CHECK FAILED")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
