"""Three masters, ten real runpod workers, hundreds of jobs: each ends exactly once,
also while masters and workers are SIGKILLed at random."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from sqlalchemy import Engine

from stillhouse.queue import GenerationQueue
from stillhouse.schemas.states import JobStatus
from tests.conftest import MemcachedServer
from tests.master.cluster import Cluster, enqueue
from tests.master.outcomes import assert_exactly_one_visible_outcome, unfinished

JOBS = 300
WORKERS = [f"w{n}" for n in range(10)]
MASTERS = ["m0", "m1", "m2"]


def start_all(cluster: Cluster) -> None:
    for name in WORKERS:
        cluster.start_worker(name)
    for name in MASTERS:
        cluster.start_master(name)


@pytest.mark.slow
def test_three_masters_and_ten_workers_finish_300_jobs_each_with_one_result(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine
) -> None:
    ids = enqueue(queue, JOBS)
    start_all(cluster)
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=150)
    jobs = assert_exactly_one_visible_outcome(mariadb_engine, ids)
    assert Counter(jobs.values()) == {JobStatus.SUCCEEDED: JOBS}
    submitted = Counter(job_id for _, job_id in cluster.double.state.submissions)
    assert set(submitted) == set(ids)
    # A master that loses a lease between submitting and recording the backend job (a
    # stalled event loop on this crowded machine) makes the next holder submit again;
    # the result is still written once. It must stay rare.
    resubmitted = sum(submitted.values()) - JOBS
    assert resubmitted <= JOBS // 100, f"{resubmitted} jobs went to the GPUs twice"
    assert all(cluster.double.state.workers[w].taken > 0 for w in WORKERS), "idle workers"


@pytest.mark.slow
def test_chaos_kill_masters_and_workers_nothing_lost_nothing_twice(
    cluster: Cluster, queue: GenerationQueue, mariadb_engine: Engine, memcached: MemcachedServer
) -> None:
    cluster.memcached = memcached.address  # the reaper lock lives there
    ids = enqueue(queue, JOBS)
    start_all(cluster)
    chaos = random.Random(20261122)
    kills = Counter[str]()
    deadline = time.monotonic() + 25
    blows = 0
    while time.monotonic() < deadline and unfinished(mariadb_engine) > JOBS // 5:
        # Every third blow at a master: on a fast machine the jobs are four-fifths done
        # after a dozen blows, and a free draw once hit a master only once in 19.
        victim = chaos.choice(MASTERS if blows % 3 == 0 else WORKERS)
        blows += 1
        cluster.kill(victim)  # SIGKILL, whole process group
        kills[victim[0]] += 1
        time.sleep(chaos.uniform(0.3, 1.0))  # let the cluster run between blows
        if victim in MASTERS:
            cluster.start_master(victim)
        else:
            cluster.start_worker(victim)
    assert kills["m"] >= 2 and kills["w"] >= 4, f"too little chaos: {kills}"
    cluster.wait_for_outcomes(queue, mariadb_engine, timeout_s=200)
    jobs = assert_exactly_one_visible_outcome(mariadb_engine, ids)
    ended = Counter(jobs.values())
    assert ended[JobStatus.SUCCEEDED] + ended[JobStatus.FAILED] == JOBS
    assert ended[JobStatus.SUCCEEDED] >= JOBS * 0.9, ended
    print(f"\nchaos: {dict(kills)} kills, outcomes {dict(ended)}")
