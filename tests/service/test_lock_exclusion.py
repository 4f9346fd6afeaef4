"""A memcached lock is exclusive while memcached answers: four processes racing 2,000
times each for one lock never hold it at once, and no grant is degraded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import MemcachedServer
from tests.service.processes import ROOT

PROCESSES = 4
TRIES = 2000


def test_four_processes_never_hold_one_lock_at_once(
    memcached: MemcachedServer, tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    command = [sys.executable, "-m", "tests.service.lock_contender", memcached.address]
    contenders = [
        subprocess.Popen(
            [*command, str(counter), str(TRIES)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(PROCESSES)
    ]
    reports = []
    for process in contenders:
        out, _ = process.communicate(timeout=240)
        assert process.returncode == 0
        reports.append(json.loads(out))

    grants = sum(r["grants"] for r in reports)
    overlaps, latest_end = 0, 0.0
    for start, end in sorted((start, end) for r in reports for start, end in r["holds"]):
        overlaps += start < latest_end  # began before an earlier hold had ended
        latest_end = max(latest_end, end)
    print(f"\nlock: {PROCESSES} x {TRIES} tries, {grants} grants, {overlaps} overlapping")
    assert all(r["grants"] > 0 for r in reports), "a contender never got the lock"
    assert sum(r["degraded"] for r in reports) == 0, "degraded grants with memcached up"
    assert overlaps == 0
    assert int(counter.read_text()) == grants, "increments lost: two holders at once"
