"""Hostile job input: addresses inside the network (loopback, private ranges, cloud
metadata), path traversal in file names and prefixes, and decompression bombs — each
refused with a clear, non-retryable error before it can do harm."""

from __future__ import annotations

import asyncio
import asyncio.base_events
import socket
import struct
import zlib
from typing import Any

import pytest

from stillhouse.schemas.worker_io import parse_error
from tests.worker.conftest import WorkerFactory
from tests.worker.test_handler import TXT2IMG
from worker import inputs
from worker.errors import JobFailure
from worker.handler import handle

INTERNAL = [
    "127.0.0.1",  # loopback
    "::1",
    "10.0.0.7",  # private ranges
    "172.16.3.4",
    "192.168.1.20",
    "169.254.169.254",  # cloud metadata (link-local)
    "fd00::1",
]


def resolving_to(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """DNS, as an attacker who controls a name would answer it."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    async def getaddrinfo(*_args: Any, **_kwargs: Any) -> list[Any]:
        return [(family, socket.SOCK_STREAM, 6, "", (address, 443))]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("address", INTERNAL)
def test_an_allowed_name_that_resolves_inside_the_network_is_refused(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    resolving_to(monkeypatch, address)
    with pytest.raises(JobFailure) as refused:
        asyncio.run(inputs._refuse_internal_address("cdn.example.com", trusted=False))
    assert refused.value.info.type == "invalid_input" and not refused.value.info.retryable
    assert "internal address (cdn.example.com)" in refused.value.info.message


def test_a_public_address_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving_to(monkeypatch, "93.184.216.34")
    asyncio.run(inputs._refuse_internal_address("cdn.example.com", trusted=False))


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://10.0.0.1/admin.png",
        "http://[::1]:8188/view?filename=x.png",
        "https://attacker.example/x.png",
    ],
)
def test_input_urls_outside_the_allowed_hosts_are_refused(
    start_worker: WorkerFactory, url: str
) -> None:
    worker = start_worker()
    job = {
        "job_id": "hostile",
        "workflow": TXT2IMG,
        "inputs": [{"name": "in.png", "url": url}],
        "output": {"bucket": worker.ctx.storage.bucket, "prefix": "p/"},
    }
    error = parse_error(asyncio.run(handle({"id": "h", "input": job}, worker.ctx))["error"])
    assert error.type == "invalid_input" and not error.retryable
    assert "may not come from" in error.message
    assert worker.ctx.supervisor.starts == 0, "nothing was fetched, ComfyUI never started"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input name", "../../comfyui/main.py"),
        ("input name", "/etc/passwd"),
        ("input name", "a/../../b.png"),
        ("output prefix", "../../outside/"),
        ("output prefix", "/absolute/"),
        ("job id", "../job"),
    ],
)
def test_path_traversal_in_names_and_prefixes_is_refused(
    start_worker: WorkerFactory, field: str, value: str
) -> None:
    worker = start_worker()
    job: dict[str, Any] = {
        "job_id": "job",
        "workflow": TXT2IMG,
        "inputs": [],
        "output": {"bucket": worker.ctx.storage.bucket, "prefix": "p/"},
    }
    if field == "input name":
        job["inputs"] = [{"name": value, "url": "http://127.0.0.1:9/x.png"}]
    elif field == "output prefix":
        job["output"]["prefix"] = value
    else:
        job["job_id"] = value
    error = parse_error(asyncio.run(handle({"id": "t", "input": job}, worker.ctx))["error"])
    assert error.type == "invalid_input" and not error.retryable, error
    assert worker.ctx.supervisor.starts == 0


def bomb_png(width: int, height: int) -> bytes:
    """A few hundred bytes that claim an enormous image (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1024)  # the rest would inflate to gigabytes
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    data = bomb_png(50_000, 50_000)
    assert len(data) < 1000
    with pytest.raises(JobFailure) as refused:
        inputs._check_image("bomb.png", data, max_pixels=4096 * 4096)
    assert refused.value.info.type == "invalid_input"
    assert "claims far too many pixels" in refused.value.info.message


def test_an_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    with pytest.raises(JobFailure) as refused:
        inputs._check_image("big.png", bomb_png(6000, 6000), max_pixels=4096 * 4096)
    assert "6000x6000 has too many pixels" in refused.value.info.message
