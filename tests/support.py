"""Shared test helpers: polling with a deadline, ports, a minimal valid job."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.jobs import JobParams, NewJob, Routing
from stillhouse.schemas.worker_io import ImageRef

T = TypeVar("T")

IMAGE = ImageRef(
    key="stillhouse/abc/x.png",
    bucket="images",
    content_type="image/png",
    width=64,
    height=64,
    bytes=123,
    sha256="0" * 64,
    node_id="9",
)

TINY_GRAPH = ComfyGraph.model_validate(
    {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "t"}},
    }
)


def wait_until(
    probe: Callable[[], T], timeout_s: float = 20.0, interval_s: float = 0.02, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or probe}")
        time.sleep(interval_s)


_GIVEN: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now, below the kernel's ephemeral range: a port
    from that range (what binding port 0 gives) can be taken by any outgoing connection
    between this check and the server's own bind ("address already in use" seen in CI).
    Never the same port twice in one process."""
    low = _ephemeral_low()
    for _ in range(500):
        port = random.randrange(PORTS_FROM, low)
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as sock:  # a crowded machine: the kernel's choice after all
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORTS_FROM = 20_000


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux), or 32768."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    return max(low, PORTS_FROM + 1000)


def new_job(
    prompt: str = "a lighthouse at dawn",
    *,
    interaction_id: int | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    user_id: int = 42,
    token: str | None = "interaction-token-secret",
) -> NewJob:
    """A minimal job as a bot shard would queue it."""
    return NewJob(
        routing=Routing(
            user_id=user_id, guild_id=7, channel_id=99, shard_id=0, interaction_token=token
        ),
        interaction_id=interaction_id,
        workflow_name="sd15-txt2img",
        params=JobParams({"prompt": prompt, "seed": 1234, "steps": 20}),
        graph=TINY_GRAPH,
        priority=priority,
        max_attempts=max_attempts,
    )


class FakeClock:
    """A clock tests move by hand, so lease and backoff tests never sleep."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
