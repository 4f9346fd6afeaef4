"""Backoff arithmetic and identifiers."""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from stillhouse.ids import new_owner, new_public_id, partition_of
from stillhouse.queue.timing import backoff_delay


@given(
    attempt=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0, max_value=100),
    spread=st.floats(min_value=0, max_value=1000),
    rand=st.floats(min_value=0, max_value=1),
)
def test_backoff_stays_between_half_and_all_of_the_capped_exponential(
    attempt: int, base: float, spread: float, rand: float
) -> None:
    cap = base + spread
    delay = backoff_delay(attempt, base, cap, lambda: rand).total_seconds()
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 - 1e-6 <= delay <= ceiling + 1e-6


def test_backoff_grows_until_the_cap() -> None:
    delays = [backoff_delay(n, 1, 16, lambda: 1.0).total_seconds() for n in range(1, 8)]
    assert delays == [1, 2, 4, 8, 16, 16, 16]


def test_partition_is_the_same_in_every_process_and_in_range() -> None:
    ids = [new_public_id() for _ in range(200)]
    assert {partition_of(i, 8) for i in ids} == set(range(8))
    assert partition_of("fixed-id", 1) == 0
    script = (
        "import sys; from stillhouse.ids import partition_of; print(partition_of(sys.argv[1], 16))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", script, "fixed-id"],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert seen == {str(partition_of("fixed-id", 16))}


def test_owner_names_are_unique_and_fit_the_column() -> None:
    owners = {new_owner("master") for _ in range(1000)}
    assert len(owners) == 1000
    assert len(new_owner("a-very-long-role-name" * 3)) <= 64
