"""A queue process for the multi-process tests: a real OS process on its own
connections, using only the public queue and lock operations.

  drain    claim batches and complete them until nothing is queued; print each id claimed
  hold     claim one job, print its id, then wait on stdin until killed (SIGKILL tests)
  replica  enqueue interactions 1..N (--reverse: N..1) like one replica of a shard,
           after a "go" line on stdin; print "<interaction> <public id> <created>"
"""

from __future__ import annotations

import argparse
import random
import sys

from stillhouse.config import MemcachedSettings, QueueSettings, make_settings
from stillhouse.db.engine import make_engine
from stillhouse.ids import new_owner
from stillhouse.locks import LockService, held, make_locks
from stillhouse.queue import GenerationQueue
from stillhouse.schemas.jobs import JobResult
from stillhouse.schemas.states import JobStatus
from tests.support import IMAGE, new_job


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drain", "hold", "replica"])
    parser.add_argument("--interactions", type=int, default=0)
    parser.add_argument("--reverse", action="store_true")
    parser.add_argument("--url", required=True)
    parser.add_argument("--lease-s", type=float, default=30)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--memcached", default="")
    args = parser.parse_args()

    settings = make_settings(
        database={"url": args.url},
        queue=QueueSettings(lease_s=args.lease_s, backoff_base_s=0, backoff_max_s=0),
        memcached=MemcachedSettings(servers=args.memcached),
    )
    queue = GenerationQueue(make_engine(settings), settings.queue)
    owner = new_owner("claimer")
    if args.mode == "replica":
        interactions = range(1, args.interactions + 1)
        queue.counts()  # connect before the start line, so both replicas start level
        print("ready", flush=True)
        sys.stdin.readline()
        for interaction in reversed(interactions) if args.reverse else interactions:
            result = queue.enqueue(new_job(f"from {owner}", interaction_id=interaction))
            print(interaction, result.job.public_id, int(result.created), flush=True)
        return
    if args.mode == "hold":
        [job] = queue.claim(owner, limit=1)
        print(job.id, flush=True)
        sys.stdin.read()  # the test SIGKILLs us while we "work"
        return
    locks = make_locks(settings.memcached)
    drain(queue, owner, args.max_batch, locks)
    locks.close()


def drain(queue: GenerationQueue, owner: str, max_batch: int, locks: LockService) -> None:
    while True:
        with held(locks, "reaper", ttl_s=5) as lock:
            if lock is not None:
                queue.reap_expired()
        locks.hit(f"claims:{owner}", limit=10**9, window_s=1)
        jobs = queue.claim(owner, limit=random.randint(1, max_batch))
        for job in jobs:
            print(job.id, flush=True)
            queue.complete(job, JobResult(images=[IMAGE]))
        if not jobs and queue.counts().get(JobStatus.QUEUED, 0) == 0:
            return


if __name__ == "__main__":
    main()
