"""One of the processes racing for a memcached lock (tests/service/test_lock_exclusion.py).

    python -m tests.service.lock_contender SERVERS COUNTER_FILE TRIES

Each try asks for the lock; a granted lock increments a counter kept in a file by a
plain read-modify-write (not atomic on purpose: two holders at once lose an increment)
and records the time it was held. Prints one JSON line: grants, degraded grants and the
[start, end] of every hold on the machine-wide monotonic clock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from stillhouse.config import MemcachedSettings
from stillhouse.locks import MemcachedLocks

KEY = "contended"


def bump(counter: Path) -> None:
    """Read, yield the CPU, write: a window for a second holder to lose an update."""
    value = int(counter.read_text() or "0")
    os.sched_yield()
    counter.write_text(str(value + 1))


def main() -> None:
    servers, counter_file, tries = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    locks = MemcachedLocks(MemcachedSettings(servers=servers))
    grants, degraded, holds = 0, 0, []
    for _ in range(tries):
        lock = locks.acquire(KEY, ttl_s=30)
        if lock is None:
            continue
        began = time.monotonic()
        bump(counter_file)
        ended = time.monotonic()
        locks.release(lock)
        grants += 1
        degraded += lock.degraded
        holds.append((began, ended))
    locks.close()
    print(json.dumps({"grants": grants, "degraded": degraded, "holds": holds}))


if __name__ == "__main__":
    main()
