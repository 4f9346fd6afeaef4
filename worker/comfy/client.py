"""ComfyUI's HTTP API, as typed calls (aiohttp)."""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import BaseModel

from stillhouse.schemas.graph import ComfyGraph
from worker.errors import JobFailure, comfy_unavailable


class OutputImage(BaseModel):
    """One image ComfyUI reports for an output node (`executed` / `/history`)."""

    filename: str
    subfolder: str = ""
    type: str = "output"


class ComfyClient:
    """One ComfyUI server; the session belongs to the caller (one per job)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")

    @property
    def ws_url(self) -> str:
        """The websocket endpoint."""
        return self.base_url.replace("http", "ws", 1) + "/ws"

    async def system_stats(self) -> dict[str, Any]:
        """`GET /system_stats`: answers once ComfyUI is ready."""
        async with self.session.get(f"{self.base_url}/system_stats") as response:
            response.raise_for_status()
            stats: dict[str, Any] = await response.json()
            return stats

    async def queue_prompt(self, graph: ComfyGraph, client_id: str) -> str:
        """`POST /prompt`; a 400 becomes a structured, non-retryable JobFailure."""
        body = {"prompt": graph.model_dump(mode="json", by_alias=True), "client_id": client_id}
        async with self.session.post(f"{self.base_url}/prompt", json=body) as response:
            if response.status == 400:
                raise rejection(await response.json(content_type=None))
            if response.status >= 500:
                raise comfy_unavailable(f"ComfyUI answered {response.status} to the prompt")
            response.raise_for_status()
            answer = await response.json()
        return str(answer["prompt_id"])

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """`GET /history/{id}`: the finished prompt, or None while ComfyUI has no entry."""
        async with self.session.get(f"{self.base_url}/history/{prompt_id}") as response:
            response.raise_for_status()
            entries: dict[str, Any] = await response.json()
        entry = entries.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def queue_holds(self, prompt_id: str) -> bool:
        """Whether `GET /queue` still lists the prompt as running or pending."""
        async with self.session.get(f"{self.base_url}/queue") as response:
            response.raise_for_status()
            queue = await response.json()
        items = list(queue.get("queue_running", [])) + list(queue.get("queue_pending", []))
        return any(len(item) > 1 and item[1] == prompt_id for item in items)

    async def view(self, image: OutputImage) -> bytes:
        """`GET /view`: an output image's bytes."""
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        async with self.session.get(f"{self.base_url}/view", params=params) as response:
            if response.status == 404:
                raise JobFailure(
                    "output_missing", f"ComfyUI has no file {image.filename}", retryable=True
                )
            response.raise_for_status()
            return await response.read()

    async def upload_input(self, name: str, data: bytes) -> None:
        """`POST /upload/image`: place an input image in ComfyUI's input folder."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="application/octet-stream")
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        async with self.session.post(f"{self.base_url}/upload/image", data=form) as response:
            response.raise_for_status()

    async def interrupt(self) -> None:
        """`POST /interrupt`: stop what ComfyUI is running (it has one job: ours)."""
        async with self.session.post(f"{self.base_url}/interrupt") as response:
            response.raise_for_status()


def rejection(body: dict[str, Any]) -> JobFailure:
    """ComfyUI's 400 answer as one clear error naming the first bad node and input."""
    node_errors = body.get("node_errors") or {}
    for node_id, node in node_errors.items():
        for error in node.get("errors", []):
            details = f": {error['details']}" if error.get("details") else ""
            return JobFailure(
                "invalid_graph",
                f"{error.get('message', 'invalid')}{details}",
                retryable=False,
                node_id=str(node_id),
                node_type=node.get("class_type"),
            )
    error = body.get("error") or {}
    details = f": {error['details']}" if error.get("details") else ""
    return JobFailure(
        "invalid_graph",
        f"{error.get('message', 'ComfyUI refused the graph')}{details}",
        retryable=False,
    )
