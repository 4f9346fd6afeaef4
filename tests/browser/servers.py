"""`stillhouse up` for the browser tests: as the README runs it (preview mode, a fresh
data folder), or with a local worker whose ComfyUI is the double (jobs that take time)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def preview_up(data: Path) -> Iterator[str]:
    """A preview-mode `stillhouse up`; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STILLHOUSE_", "COMFYUI_"))}
    env.pop("DISCORD_TOKEN", None)
    env["STILLHOUSE_DATA_DIR"] = str(data)
    stillhouse = Path(sys.executable).with_name("stillhouse")
    data.mkdir(parents=True, exist_ok=True)
    with (data / "up.log").open("ab") as log:
        process = subprocess.Popen(
            [str(stillhouse), "up", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(base), 60, 0.1, what="stillhouse up")
        yield base
    finally:
        stop(process)


def healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/v1/health", timeout=2).ok
    except requests.RequestException:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
