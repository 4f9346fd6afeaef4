"""Fetch the job's input images (only from allowed hosts, within size limits), check
they are images, and place them in ComfyUI's input folder under the names the graph uses.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket

import aiohttp
from PIL import Image

from stillhouse import inputs as rules
from stillhouse.config import Settings
from stillhouse.schemas.worker_io import InputImage
from worker.comfy.client import ComfyClient
from worker.errors import JobFailure, invalid_input

FETCH_TIMEOUT_S = 60


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """Configured hosts plus the storage endpoint (the fronts check the same list)."""
    return rules.allowed_hosts(settings.worker, settings.storage)


def storage_host(settings: Settings) -> str:
    """The host presigned URLs of our own bucket point at."""
    return rules.storage_host(settings.storage)


def check_sources(images: list[InputImage], settings: Settings) -> None:
    """Refuse, before anything starts, an input whose host is not allowed."""
    hosts = allowed_hosts(settings)
    for image in images:
        _check_host(str(image.url), hosts)


def _check_host(url: str, hosts: frozenset[str]) -> None:
    problem = rules.refused_source(url, hosts)
    if problem is not None:
        raise invalid_input(problem)


async def stage_inputs(client: ComfyClient, images: list[InputImage], settings: Settings) -> None:
    """Download every input and upload it to ComfyUI; JobFailure naming the bad one."""
    hosts = allowed_hosts(settings)
    for image in images:
        data = await _fetch(client.session, str(image.url), hosts, settings)
        _check_image(image.name, data, settings.worker.max_input_pixels)
        await client.upload_input(image.name, data)


async def _fetch(
    session: aiohttp.ClientSession, url: str, hosts: frozenset[str], settings: Settings
) -> bytes:
    _check_host(url, hosts)
    host = rules.host_of(url)
    await _refuse_internal_address(host, trusted=host == storage_host(settings))
    limit = settings.worker.max_input_bytes
    try:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with session.get(url, timeout=timeout, allow_redirects=False) as response:
            if response.status >= 500 or response.status == 429:
                raise JobFailure(
                    "input_unavailable", f"{host} answered {response.status}", retryable=True
                )
            if response.status != 200:
                raise invalid_input(f"input image not found at {host} ({response.status})")
            if (response.content_length or 0) > limit:
                raise invalid_input(f"input image is larger than {limit // 2**20} MiB")
            data = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                data += chunk
                if len(data) > limit:
                    raise invalid_input(f"input image is larger than {limit // 2**20} MiB")
            return bytes(data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise JobFailure(
            "input_unavailable",
            f"could not fetch the input image from {host}: {exc}",
            retryable=True,
        ) from None


async def _refuse_internal_address(host: str, *, trusted: bool) -> None:
    """An allowed public name must not resolve to a loopback, private or link-local
    (cloud metadata) address. Our own storage endpoint and hosts listed as IP literals
    may be internal (MinIO in a cluster, a local test endpoint)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return  # the fetch reports the failure
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        internal = address.is_private or address.is_loopback or address.is_link_local
        if internal and not (trusted or _is_literal_or_local(host)):
            raise invalid_input(f"input images may not come from an internal address ({host})")


def _is_literal_or_local(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return True


def _check_image(name: str, data: bytes, max_pixels: int) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise invalid_input(f"input image {width}x{height} has too many pixels")
            image.verify()
    except JobFailure:
        raise
    except Image.DecompressionBombError:
        # Pillow refuses to even open a header this large; nothing was decoded.
        raise invalid_input(f"input {name} claims far too many pixels") from None
    except Exception:
        raise invalid_input(f"input {name} is not an image this worker can read") from None
