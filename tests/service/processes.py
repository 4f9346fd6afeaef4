"""Start and read the claimer processes used by the multi-process tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_queue_process(mode: str, url: str, *extra: str) -> subprocess.Popen[str]:
    """A queue process (see queue_process.py for the modes)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.service.queue_process", mode, "--url", url, *extra],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def output_lines(process: subprocess.Popen[str], timeout_s: float = 240) -> list[str]:
    """Wait for a process to end; its stdout lines. Fails loudly on a crash."""
    out, err = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, f"queue process exited {process.returncode}: {err[-3000:]}"
    return out.splitlines()


def finish(process: subprocess.Popen[str], timeout_s: float = 240) -> list[int]:
    """Wait for a draining claimer; the job ids it claimed."""
    return [int(line) for line in output_lines(process, timeout_s)]


def read_claimed_id(process: subprocess.Popen[str]) -> int:
    """The id a holding claimer printed (blocks until it claimed)."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, (
        f"claimer ended without claiming: {process.stderr.read() if process.stderr else ''}"
    )
    return int(line)
