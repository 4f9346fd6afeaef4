"""Start the ComfyUI double as its own process (what the worker's supervisor starts)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def double_command(port: int, *switches: str) -> str:
    """The command line a supervisor runs to start the double."""
    parts = [sys.executable, "-m", "tests.doubles.comfy", "--port", str(port), *switches]
    return shlex.join(parts)


def answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/system_stats", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def running_double(*switches: str) -> Iterator[str]:
    """A double already running (for attach mode and protocol tests); its base URL."""
    port = free_port()
    process = subprocess.Popen(shlex.split(double_command(port, *switches)), cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url), timeout_s=20, what="the ComfyUI double")
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)
